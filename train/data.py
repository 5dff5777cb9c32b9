"""Choose the pretraining structures: which ids of a source are read, and never a label.

Reading itself is :mod:`dim_featurizer.readers`; only ids and structures
leave this module.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dim_featurizer.readers import is_frame, read_cif_collection, read_frame, read_ids_csv, read_split


def load_structures(
    source: str | Path | pd.DataFrame | pd.Series,
    split: str | Path | None = None,
    subset: str = "train",
    ids_csv: str | Path | None = None,
    structure_column: str = "structure",
    pbar: bool = False,
) -> pd.Series:
    """Return pretraining structures as a Series indexed by id.

    Args:
        source: a matminer/Matbench JSON frame file, a folder/zip/tar of
            ``<id>.cif`` files, or a DataFrame (its ``structure_column``) or Series.
        split: optional split file; only ids in ``split[subset]`` are kept,
            so test structures are never read.
        subset: which list of the split file to use.
        ids_csv: for CIF collections, a CSV whose first column lists the ids.
        structure_column: the structure column of frames.
        pbar: show a progress bar while a frame's structures are built.

    Returns:
        Series of ``Structure`` (or the exception met reading one: it is
        counted as excluded later, never silently dropped).
    """
    keep = read_split(split)[subset] if split is not None else None
    if isinstance(source, pd.DataFrame):
        series = source[structure_column]
    elif isinstance(source, pd.Series):
        series = source
    elif is_frame(source):
        return read_frame(source, keep, structure_column, pbar=pbar)[structure_column]
    else:
        if ids_csv is None:
            raise ValueError(f"{source}: a CIF collection needs ids_csv (a CSV whose first column lists the ids)")
        ids = read_ids_csv(ids_csv)
        if keep is not None:
            wanted = set(keep)
            ids = [i for i in ids if i in wanted]
        return read_cif_collection(source, ids)
    if keep is not None:
        missing = pd.Index(keep).difference(series.index)
        if len(missing):
            raise KeyError(f"{len(missing)} split ids are not in the frame, e.g. {list(missing[:5])}")
        series = series.loc[keep]
    return series


def count_held_out(ids: list[str], split: str | Path | None) -> int | None:
    """How many of ``ids`` the split file lists outside ``train`` (its held-out ids); None without a split.

    Recorded with every run and shipped in the weights' config, so that the
    benchmark can refuse weights that saw a test structure.
    """
    if split is None:
        return None
    held_out = {i for key, values in read_split(split).items() if key != "train" for i in values}
    return len(held_out.intersection(map(str, ids)))
