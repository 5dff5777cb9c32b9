"""Featurise Dask collections of structures on a cluster (``featurize_dask``).

The featuriser travels to the workers as its parameters only (a small dict,
no tensors); each worker process builds and loads it on its first partition
and keeps it for every later one. Dask is imported only when this is used.

Dask turns object columns into text by default (``dataframe.convert-string``),
which would flatten ``Structure`` objects into their printed form. Store the
structures as ``Structure.to_json()`` text (what parquet holds) or as
pymatgen dicts; Bags and frames with that option off may hold ``Structure``
objects too.
"""

from __future__ import annotations

import json
import threading
from functools import partial
from typing import Any

import pandas as pd

from dim_featurizer.featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.readers import Entry, structure_from_value
from dim_featurizer.stream import featurize_entries

_FEATURIZERS: dict[str, DeepInfoMaxFeaturizer] = {}
_LOCK = threading.Lock()
#: How many times this process has loaded weights for a partition (one per distinct featuriser).
LOADS = 0


def worker_featurizer(params: dict[str, Any]) -> DeepInfoMaxFeaturizer:
    """This process's loaded featuriser for ``params`` (``get_params()`` of one), built on first use."""
    global LOADS
    key = json.dumps(params, sort_keys=True, default=str)
    with _LOCK:  # workers with several threads share one copy
        if key not in _FEATURIZERS:
            _FEATURIZERS[key] = DeepInfoMaxFeaturizer(**params).fit()
            LOADS += 1
        return _FEATURIZERS[key]


def featurize_partition(
    part: pd.DataFrame | pd.Series | list,
    params: dict[str, Any],
    column: str = "structure",
    ignore_errors: bool = False,
) -> pd.DataFrame:
    """Feature table of one partition: a frame with ``column``, a Series, or a list of structures.

    Values may be ``Structure`` objects, pymatgen dicts or their JSON text.

    Returns:
        D float64 columns (plus ``error`` with ``ignore_errors``), on the partition's own index.

    Raises:
        FeaturizationError: without ``ignore_errors``, the first bad entry, named by its index label.
    """
    values = part[column] if isinstance(part, pd.DataFrame) else pd.Series(part, dtype=object)
    entries = [Entry(str(key), partial(structure_from_value, value)) for key, value in values.items()]
    table = featurize_entries(worker_featurizer(params), entries, ignore_errors).drop(columns="formula")
    table.index = values.index
    return table if ignore_errors else table.drop(columns="error")


def _bag_partition(items: list, params: dict[str, Any], ignore_errors: bool) -> list[list]:
    return featurize_partition(list(items), params, ignore_errors=ignore_errors).to_numpy().tolist()


def featurize_dask(
    collection: Any,
    featurizer: DeepInfoMaxFeaturizer | None = None,
    column: str = "structure",
    ignore_errors: bool = False,
) -> Any:
    """Lazily featurise a Dask DataFrame (its ``column``) or Bag of structures, one task per partition.

    Args:
        collection: ``dask.dataframe.DataFrame`` or ``dask.bag.Bag``.
        featurizer: the settings to use (weights, device, readout...); default ``DeepInfoMaxFeaturizer()``.
            Only its parameters are sent to the workers.
        column: the structure column of a DataFrame.
        ignore_errors: NaN rows plus an ``error`` column (Bag: a last item) for bad entries.

    Returns:
        A Dask DataFrame of the D features on the input's index and divisions, or a Bag of rows.
    """
    try:
        import dask.bag
    except ImportError as e:
        raise ImportError("featurize_dask needs Dask: pip install 'dim_featurizer[dask]'") from e

    featurizer = featurizer if featurizer is not None else DeepInfoMaxFeaturizer()
    params = {**featurizer.get_params(), "pbar": False}
    if isinstance(collection, dask.bag.Bag):
        return collection.map_partitions(_bag_partition, params, ignore_errors)
    if column not in collection.columns:
        raise KeyError(f"no column {column!r} (columns: {list(collection.columns)})")
    meta = pd.DataFrame({label: pd.Series(dtype="float64") for label in featurizer.feature_labels()})
    if ignore_errors:
        meta["error"] = pd.Series(dtype=object)
    meta.index = collection._meta.index
    return collection.map_partitions(featurize_partition, params, column, ignore_errors, meta=meta)
