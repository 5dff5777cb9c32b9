"""Read crystal structures: structure files, folders and archives of CIFs, matminer JSON frames, split files.

The one place where paths become pymatgen ``Structure`` objects; the CLI,
pretraining and the benchmark all read through it. A file that cannot be
parsed becomes the exception met while reading it, so that callers can
report it against its name instead of losing the row.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

#: Suffixes of matminer/Matbench JSON frames (pandas split orient, optionally compressed).
FRAME_SUFFIXES = (".json", ".json.gz", ".json.bz2", ".json.xz")
#: Suffixes and name prefixes of single-structure files pymatgen reads.
STRUCTURE_SUFFIXES = {".cif", ".vasp", ".poscar", ".cssr", ".xsf", ".mcif"}
STRUCTURE_NAMES = ("POSCAR", "CONTCAR")


def default_data_dir() -> Path:
    """``$DIM_DATA_DIR``, else ``../shared/data`` beside a source checkout of this project."""
    env = os.environ.get("DIM_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def is_frame(path: str | Path) -> bool:
    """True for a matminer JSON frame file name."""
    return Path(path).name.lower().endswith(FRAME_SUFFIXES)


def is_structure_file(path: str | Path) -> bool:
    """True for a file name pymatgen reads as one structure (CIF, POSCAR, ...)."""
    path = Path(path)
    return path.suffix.lower() in STRUCTURE_SUFFIXES or path.name.startswith(STRUCTURE_NAMES)


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
    from monty.io import zopen
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
    """Read a split file ``{"train": [...ids], "test": [...ids], ...}``; keys that are not lists are dropped."""
    raw = json.loads(Path(path).read_text())
    return {k: list(v) for k, v in raw.items() if isinstance(v, list)}


def read_structure_file(path: str | Path) -> Any:
    """Return the ``Structure`` in one file, or the exception met while reading it."""
    from pymatgen.core import Structure

    try:
        return Structure.from_file(path)
    except Exception as e:  # noqa: BLE001 - reported as this row's error
        return e


def parse_cif(text: str, name: str) -> Any:
    """Return the first ``Structure`` of a CIF text, or a ``ValueError`` naming the file."""
    from pymatgen.io.cif import CifParser

    try:
        return CifParser(io.StringIO(text)).parse_structures(primitive=False)[0]
    except Exception as e:  # noqa: BLE001 - kept as this entry's error
        return ValueError(f"{name}: cannot parse CIF ({e})")


def read_ids_csv(path: str | Path) -> list[str]:
    """The ids in the first column of a CSV (a header cell ``id`` is skipped); other columns are never read."""
    ids = pd.read_csv(path, header=None, usecols=[0], dtype=str)[0].str.strip()
    return [i for i in ids if i and i.lower() != "id"]


def _cif_reader(path: Path) -> Callable[[str], str | None]:
    """A function from id to the text of ``<id>.cif`` in a folder, zip or tar (None when absent)."""
    if path.is_dir():
        files = {p.stem: p for p in path.rglob("*.cif")}
        return lambda i: files[i].read_text() if i in files else None
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = {Path(n).stem: n for n in archive.namelist() if n.endswith(".cif")}
        return lambda i: archive.read(names[i]).decode() if i in names else None
    if tarfile.is_tarfile(path):
        tar = tarfile.open(path)
        members = {Path(m.name).stem: m for m in tar.getmembers() if m.name.endswith(".cif")}
        return lambda i: tar.extractfile(members[i]).read().decode() if i in members else None
    raise ValueError(f"{path} is not a folder, zip or tar of CIF files")


def read_cif_collection(path: str | Path, ids: list[str]) -> pd.Series:
    """Structures from ``<id>.cif`` files in a folder, zip or tar, one per id.

    Returns:
        A Series indexed by id; an id without a file or with an unreadable
        file holds the exception instead of a Structure.
    """
    path = Path(path)
    read = _cif_reader(path)
    values = []
    for i in ids:
        text = read(i)
        values.append(FileNotFoundError(f"no {i}.cif in {path}") if text is None else parse_cif(text, f"{i}.cif"))
    return pd.Series(values, index=pd.Index(ids, name="id"), dtype=object)


def read_paths(inputs: Iterable[str | Path], column: str = "structure") -> pd.Series:
    """Structures from files, folders of structure files, and matminer JSON frames.

    Args:
        inputs: paths.
        column: the structure column of JSON frames.

    Returns:
        A Series of Structures (or the exception met while reading one),
        indexed by file path or by frame index.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder with no structure file.
        KeyError: a frame without ``column``.
    """
    names: list[str] = []
    values: list[Any] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_structure_file(p))
            if not files:
                raise FileNotFoundError(f"no structure files (CIF, POSCAR, .vasp) under {path}")
            names += [str(p) for p in files]
            values += [read_structure_file(p) for p in files]
        elif path.is_file() and is_frame(path):
            frame = read_frame(path, structure_column=column)
            if column not in frame.columns:
                raise KeyError(f"{path} has no column {column!r} (columns: {list(frame.columns)})")
            names += [str(i) for i in frame.index]
            values += list(frame[column])
        elif path.is_file():
            names.append(str(path))
            values.append(read_structure_file(path))
        else:
            raise FileNotFoundError(f"{path} does not exist")
    return pd.Series(values, index=pd.Index(names, name="id"), dtype=object)
