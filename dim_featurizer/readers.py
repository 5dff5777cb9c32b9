"""Read crystal structures: structure files, folders and archives of CIFs, matminer JSON frames, parquet, splits.

The one place where paths become pymatgen ``Structure`` objects; the CLI,
pretraining and the benchmark all read through it. A file that cannot be
parsed becomes the exception met while reading it, so that callers can
report it against its name instead of losing the row.

:func:`iter_entries` reads any input lazily, as ``(id, load)`` pairs whose
``load()`` parses one structure, so that a streaming run holds one chunk in
memory whatever the input's size and a shard parses only its own chunks.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from dim_featurizer.errors import one_line

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


def _cif_archive(path: Path) -> tuple[list[str], Callable[[str], str]]:
    """(sorted CIF member names, a function from member name to its text) for a zip or tar archive."""
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if n.lower().endswith(".cif")]
        return sorted(names), lambda name: archive.read(name).decode()
    if tarfile.is_tarfile(path):
        tar = tarfile.open(path)
        members = {m.name: m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".cif")}
        return sorted(members), lambda name: tar.extractfile(members[name]).read().decode()
    raise ValueError(f"{path} is not a folder, zip or tar of CIF files")


def _cif_reader(path: Path) -> Callable[[str], str | None]:
    """A function from id to the text of ``<id>.cif`` in a folder, zip or tar (None when absent)."""
    if path.is_dir():
        files = {p.stem: p for p in path.rglob("*.cif")}
        return lambda i: files[i].read_text() if i in files else None
    names, read = _cif_archive(path)
    by_id = {Path(n).stem: n for n in names}
    return lambda i: read(by_id[i]) if i in by_id else None


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


#: Suffixes of archives of CIF files.
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")

#: One lazily read entry: its id and a function returning its Structure, or the exception met reading it.
Entry = tuple[str, Callable[[], Any]]


def structure_from_value(value: Any) -> Any:
    """A ``Structure`` from a pymatgen dict or its JSON text (a Structure passes through); else the exception."""
    from pymatgen.core import Structure

    if isinstance(value, Structure):
        return value
    try:
        return Structure.from_dict(json.loads(value) if isinstance(value, (str, bytes)) else value)
    except Exception as e:  # noqa: BLE001 - kept as this entry's error
        text = isinstance(value, str) and not value.lstrip().startswith("{")
        hint = "; expected Structure.to_json() text, not the printed structure" if text else ""
        return ValueError(f"not a pymatgen Structure dict ({type(e).__name__}: {one_line(e)[:200]}){hint}")


def _frame_columns(path: Path) -> list[str]:
    import ijson
    from monty.io import zopen

    with zopen(str(path), "rb") as f:
        return next(ijson.items(f, "columns"), [])


def _frame_entries(path: Path, column: str) -> Iterator[Entry]:
    """Rows of a split-orient JSON frame, streamed: the index and the data arrays are read side by side."""
    import ijson
    from monty.io import zopen

    columns = _frame_columns(path)
    if column not in columns:
        raise KeyError(f"{path} has no column {column!r} (columns: {columns})")
    position = columns.index(column)
    with zopen(str(path), "rb") as keys, zopen(str(path), "rb") as rows:
        for key, row in zip(ijson.items(keys, "index.item"), ijson.items(rows, "data.item", use_float=True)):
            yield str(key), partial(structure_from_value, row[position])


def _parquet_entries(path: Path, column: str, id_column: str | None) -> Iterator[Entry]:
    """Rows of a parquet file whose ``column`` holds pymatgen dicts or their JSON, read in record batches.

    Ids come from ``id_column``, else from the pandas index stored in the file, else from the row number.
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    if column not in schema.names:
        raise KeyError(f"{path} has no column {column!r} (columns: {schema.names})")
    if id_column is None:
        stored = [c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
        id_column = stored[0] if len(stored) == 1 else None
    elif id_column not in schema.names:
        raise KeyError(f"{path} has no id column {id_column!r} (columns: {schema.names})")
    read = [column] + ([id_column] if id_column else [])
    offset = 0
    for batch in parquet.iter_batches(batch_size=1024, columns=read):
        values = batch.column(column).to_pylist()
        ids = batch.column(id_column).to_pylist() if id_column else range(offset, offset + len(values))
        offset += len(values)
        for key, value in zip(ids, values):
            yield str(key), partial(structure_from_value, value)


def _archive_entries(path: Path) -> Iterator[Entry]:
    """The CIF files of a zip or tar archive, in name order; each is read only when loaded."""
    names, read = _cif_archive(path)
    if not names:
        raise FileNotFoundError(f"no CIF files in {path}")
    for name in names:
        yield f"{path}/{name}", partial(lambda n: parse_cif(read(n), n), name)


def iter_entries(
    inputs: Iterable[str | Path], column: str = "structure", id_column: str | None = None
) -> Iterator[Entry]:
    """Every entry of the inputs, lazily, in a fixed order (the same on every machine).

    Args:
        inputs: structure files (CIF, POSCAR, ...), folders of them (searched recursively, sorted),
            zip/tar archives of CIFs, matminer JSON frames, and ``.parquet`` files.
        column: the structure column of frames and parquet files.
        id_column: parquet column holding the ids (default: the stored pandas index, else row numbers).

    Yields:
        ``(id, load)``: the id is the file path, ``archive/member``, or the frame's index label;
        ``load()`` returns the Structure or the exception met while reading it.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder or archive with no structure file.
        KeyError: a frame or parquet file without ``column``.
    """
    for raw in inputs:
        path = Path(raw)
        name = path.name.lower()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_structure_file(p))
            if not files:
                raise FileNotFoundError(f"no structure files (CIF, POSCAR, .vasp) under {path}")
            yield from ((str(p), partial(read_structure_file, p)) for p in files)
        elif not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        elif is_frame(path):
            yield from _frame_entries(path, column)
        elif name.endswith(".parquet"):
            yield from _parquet_entries(path, column, id_column)
        elif name.endswith(ARCHIVE_SUFFIXES):
            yield from _archive_entries(path)
        else:
            yield str(path), partial(read_structure_file, path)
