"""Read matminer/Matbench JSON frames and split files, decoding only the rows asked for."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from monty.io import zopen


def default_data_dir() -> Path:
    """``$DIM_DATA_DIR``, else ``../shared/data`` beside a source checkout of this project."""
    env = os.environ.get("DIM_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def read_frame(path: str | Path, ids: Iterable[str] | None = None, structure_column: str = "structure") -> pd.DataFrame:
    """Read a pandas split-orient JSON frame (gzip or plain), as matminer writes them.

    Args:
        path: the ``.json`` / ``.json.gz`` file.
        ids: index labels to keep, in this order (None: all rows).
        structure_column: column whose dicts become pymatgen ``Structure`` objects.

    Returns:
        The frame indexed by the file's index. Only kept rows are decoded, which
        is several times faster than ``load_dataframe_from_json`` for a subset.

    Raises:
        KeyError: naming ids absent from the file.
    """
    from pymatgen.core import Structure

    with zopen(str(path), "rt") as f:
        raw = json.load(f)
    index = pd.Index(raw["index"])
    if ids is None:
        positions = range(len(index))
    else:
        ids = list(ids)
        positions = index.get_indexer(ids)
        if (positions < 0).any():
            missing = [i for i, p in zip(ids, positions) if p < 0]
            raise KeyError(f"{len(missing)} ids not in {path}, e.g. {missing[:5]}")
    frame = pd.DataFrame([raw["data"][p] for p in positions], columns=raw["columns"], index=index[list(positions)])
    if structure_column in frame.columns:
        frame[structure_column] = [Structure.from_dict(d) for d in frame[structure_column]]
    return frame


def read_split(path: str | Path) -> dict[str, list[str]]:
    """Read a split file ``{"train": [...ids], "test": [...ids], ...}``; other keys are dropped."""
    with open(path) as f:
        raw = json.load(f)
    return {k: list(v) for k, v in raw.items() if isinstance(v, list)}
