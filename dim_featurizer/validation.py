"""Input validation shared by every face: entries, their ids, targets, and errors named after their entry.

In the spirit of scikit-learn's ``utils/validation.py``: each check takes what a user passed and
returns it in the one form the rest of the package uses, or raises an error that names the item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dim_featurizer.errors import name_entry


def check_entries(entries: Any) -> list[Any]:
    """``entries`` as a plain list of items.

    Args:
        entries: a list-like of structures, one-element tuples of them (matminer's form), a Series, or a
            one-column DataFrame.

    Returns:
        The items in order (one-element tuples unwrapped).

    Raises:
        ValueError: a DataFrame with more than one column.
        TypeError: a string, bytes, or anything without a length.
    """
    if isinstance(entries, pd.DataFrame):
        if entries.shape[1] != 1:
            raise ValueError(f"expected one column of structures, got columns {list(entries.columns)}")
        entries = entries.iloc[:, 0]
    if isinstance(entries, (str, bytes)) or not hasattr(entries, "__len__"):
        raise TypeError(f"entries must be a list-like of structures, got {type(entries).__name__}")
    items = list(entries.values if isinstance(entries, pd.Series) else entries)
    return [x[0] if isinstance(x, (tuple, list, np.ndarray)) and len(x) == 1 else x for x in items]


def entry_keys(entries: Any) -> pd.Index | None:
    """The ids of ``entries``: the index of a Series or DataFrame, else None."""
    return entries.index if isinstance(entries, (pd.Series, pd.DataFrame)) else None


def check_targets(y: Any, n: int, keys: pd.Index | None = None) -> np.ndarray:
    """``y`` as a float array of length ``n``, in the order of the structures.

    A pandas ``y`` whose index holds the same ids as the structures' (``keys``) in another order is aligned
    to them by id, with a warning; positions are used only when either side has no ids.

    Raises:
        ValueError: more than one target per structure, a length other than ``n``, ids that differ from
            the structures', fewer than 2 values, or a missing or infinite value (named by position and id).
    """
    shape = np.shape(y)
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise ValueError(f"y must hold one target per structure (1-D, or one column), got shape {shape}")
    if (len(shape) and shape[0]) != n:
        raise ValueError(f"X has {n} structures but y has {shape[0] if shape else 0} values")
    if isinstance(y, (pd.Series, pd.DataFrame)) and keys is not None and not y.index.equals(keys):
        y = _aligned(y, keys)
    target = np.asarray(y, dtype=np.float64).ravel()
    if n < 2:
        raise ValueError(f"fine-tuning needs at least 2 labelled structures, got {n}")
    bad = np.flatnonzero(~np.isfinite(target))
    if len(bad):
        i = int(bad[0])
        label = f" (id {keys[i]!r})" if keys is not None else ""
        raise ValueError(f"y entry {i}{label} is {target[i]}: every target must be finite ({len(bad)} are not)")
    return target


def _aligned(y: pd.Series | pd.DataFrame, keys: pd.Index) -> pd.Series | pd.DataFrame:
    """``y`` in the order of ``keys`` when it holds exactly their ids; ValueError naming an id otherwise."""
    import warnings

    if y.index.has_duplicates or set(y.index) != set(keys):
        missing = next((k for k in keys if k not in set(y.index)), None)
        raise ValueError(
            f"y's index does not hold the structures' ids (e.g. {missing!r} is missing, or ids repeat): "
            "align them, or pass y.to_numpy() to match by position"
        )
    warnings.warn("y's index is in another order than the structures': y was aligned to them by id", stacklevel=3)
    return y.loc[keys]


def name_errors(
    errors: Sequence[BaseException | None],
    entries: Sequence[Any],
    start: int = 0,
    keys: Sequence[Any] | None = None,
    single: bool = False,
    ignore_errors: bool = False,
) -> list[BaseException | None]:
    """Each error re-made to name its entry (position ``start + offset``, id, formula).

    Args:
        errors: one error or None per entry of ``entries``.
        entries: the entries, a window of the whole input starting at position ``start``.
        keys: ids of the whole input (None: positions only).
        single: the input was one structure: name it without a position.
        ignore_errors: return the named errors; otherwise raise the first.

    Returns:
        The named errors (None where there was none).
    """
    named = []
    for offset, error in enumerate(errors):
        if error is not None:
            i = start + offset
            error = name_entry(error, entries[offset], None if single else i, None if keys is None else keys[i])
            if not ignore_errors:
                raise error
        named.append(error)
    return named
