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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

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


def read_frame(
    path: str | Path, ids: Iterable[str] | None = None, structure_column: str = "structure", pbar: bool = False
) -> pd.DataFrame:
    """Read a pandas split-orient JSON frame (gzip or plain), as matminer writes them.

    Args:
        path: the ``.json`` / ``.json.gz`` file.
        ids: index labels to keep, in this order (None: all rows).
        structure_column: column whose dicts become pymatgen ``Structure`` objects.
        pbar: show a progress bar while the structures are built (a large frame takes minutes).

    Returns:
        The frame indexed by the file's index. Only kept rows are decoded, which
        is several times faster than ``load_dataframe_from_json`` for a subset.

    Raises:
        KeyError: naming ids absent from the file.
        ValueError: a truncated or invalid frame, named.
    """
    from monty.io import zopen
    from pymatgen.core import Structure
    from tqdm.auto import tqdm

    with _json_errors(Path(path)), zopen(str(path), "rt") as f:
        raw = json.load(f)
    if not isinstance(raw, dict) or not {"index", "data", "columns"} <= set(raw):
        raise ValueError(f"{path}: not a matminer JSON frame (split orient: columns, index, data)")
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
        dicts = tqdm(frame[structure_column], desc=f"reading {Path(path).name}", unit="structure", disable=not pbar)
        frame[structure_column] = [Structure.from_dict(d) for d in dicts]
    return frame


def read_split(path: str | Path) -> dict[str, list[str]]:
    """Read a split file ``{"train": [...ids], "test": [...ids], ...}``; keys that are not lists are dropped."""
    raw = json.loads(Path(path).read_text())
    return {k: list(v) for k, v in raw.items() if isinstance(v, list)}


def read_structure_file(path: str | Path) -> Any:
    """Return the ``Structure`` in one file, or a ValueError naming the file and what was wrong with it."""
    from pymatgen.core import Structure

    try:
        return Structure.from_file(path)
    except Exception as e:  # noqa: BLE001 - reported as this row's error, naming the file
        return ValueError(f"{Path(path).name}: {one_line(e)}")


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
#: Suffixes of extended-XYZ files (read through ASE; one entry per frame).
XYZ_SUFFIXES = (".xyz", ".extxyz")
#: Suffixes of CSV tables whose ``column`` holds CIF text (or pymatgen JSON).
CSV_SUFFIXES = (".csv", ".csv.gz")


class Entry(NamedTuple):
    """One lazily read entry.

    Attributes:
        id: the input's own id: a frame's index label, an id column, a file's name without its suffix
            (relative to the folder given), or ``file#k`` for frame ``k`` of a multi-frame file.
        load: returns the Structure, or the exception met while reading it.
        columns: values of the input's other columns asked for (``keep``), as text; None where the
            input has no columns (structure files).
        value: the undecoded structure (a pymatgen dict or its JSON text) where the input holds one, so
            that encoding workers can parse it instead of the main process; None otherwise.
    """

    id: str
    load: Callable[[], Any]
    columns: dict[str, str | None] | None = None
    value: Any = None


def structure_from_value(value: Any) -> Any:
    """A ``Structure`` from a pymatgen dict, its JSON text or CIF text (a Structure passes through); else the
    exception."""
    from pymatgen.core import Structure

    if isinstance(value, Structure):
        return value
    if isinstance(value, str) and "_cell_length_a" in value and not value.lstrip().startswith("{"):
        return parse_cif(value, "CIF text")
    try:
        return Structure.from_dict(json.loads(value) if isinstance(value, (str, bytes)) else value)
    except Exception as e:  # noqa: BLE001 - kept as this entry's error
        text = isinstance(value, str) and not value.lstrip().startswith("{")
        hint = "; expected Structure.to_json() text or CIF text, not the printed structure" if text else ""
        return ValueError(f"not a pymatgen Structure dict ({type(e).__name__}: {one_line(e)[:200]}){hint}")


def _text(value: Any) -> str | None:
    """A kept column's value as text (None stays None): one schema whatever the input holds."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _undecoded(value: Any) -> Any:
    """``value`` when it is a pymatgen dict or JSON text (workers can parse it), else None."""
    return value if isinstance(value, dict) or (isinstance(value, str) and value.lstrip().startswith("{")) else None


def composition_of(value: Any) -> Any:
    """The pymatgen ``Composition`` of a Structure, or of an undecoded pymatgen dict or its JSON text, without
    building the Structure; None when there is none."""
    from pymatgen.core import Composition

    if hasattr(value, "composition"):
        return value.composition if len(value) else None
    try:
        data = json.loads(value) if isinstance(value, (str, bytes)) else value
        amounts: dict[str, float] = {}
        for site in data["sites"]:
            for species in site["species"]:
                amounts[species["element"]] = amounts.get(species["element"], 0.0) + species.get("occu", 1.0)
        return Composition(amounts) if amounts else None
    except Exception:  # noqa: BLE001 - no composition: the row's error says why
        return None


def _missing_columns(path: Path, wanted: Sequence[str], have: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        raise KeyError(f"{path} has no column {missing[0]!r} (columns: {list(have)})")


@contextmanager
def _json_errors(path: Path) -> Iterator[None]:
    """Turn a truncated or invalid JSON frame into one ValueError naming the file."""
    import ijson

    try:
        yield
    except (ijson.JSONError, EOFError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a complete JSON frame ({type(e).__name__}: {one_line(e)})") from e


def _frame_columns(path: Path) -> list[str]:
    import ijson
    from monty.io import zopen

    with _json_errors(path), zopen(str(path), "rb") as f:
        columns = next(ijson.items(f, "columns"), None)
    if columns is None:
        raise ValueError(f"{path}: not a matminer JSON frame (no 'columns')")
    return columns


def _frame_entries(path: Path, column: str, keep: Sequence[str]) -> Iterator[Entry]:
    """Rows of a split-orient JSON frame, streamed: the index and the data arrays are read side by side."""
    import ijson
    from monty.io import zopen

    columns = _frame_columns(path)
    _missing_columns(path, [column, *keep], columns)
    position, kept = columns.index(column), [(c, columns.index(c)) for c in keep]
    with _json_errors(path), zopen(str(path), "rb") as keys, zopen(str(path), "rb") as rows:
        for key, row in zip(ijson.items(keys, "index.item"), ijson.items(rows, "data.item", use_float=True)):
            extra = {c: _text(row[i]) for c, i in kept} if keep else None
            yield Entry(str(key), partial(structure_from_value, row[position]), extra, _undecoded(row[position]))


def _parquet_entries(path: Path, column: str, id_column: str | None, keep: Sequence[str]) -> Iterator[Entry]:
    """Rows of a parquet file whose ``column`` holds pymatgen dicts or their JSON, read in record batches.

    Ids come from ``id_column``, else from the pandas index stored in the file, else from the row number.
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    _missing_columns(path, [column, *keep], schema.names)
    if id_column is None:
        stored = [c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
        id_column = stored[0] if len(stored) == 1 else None
    elif id_column not in schema.names:
        raise KeyError(f"{path} has no id column {id_column!r} (columns: {schema.names})")
    read = list(dict.fromkeys([column, *keep] + ([id_column] if id_column else [])))
    offset = 0
    for batch in parquet.iter_batches(batch_size=1024, columns=read):
        values = batch.column(column).to_pylist()
        ids = batch.column(id_column).to_pylist() if id_column else range(offset, offset + len(values))
        extra = {c: batch.column(c).to_pylist() for c in keep}
        for k, (key, value) in enumerate(zip(ids, values)):
            columns = {c: _text(extra[c][k]) for c in keep} if keep else None
            yield Entry(str(key), partial(structure_from_value, value), columns, _undecoded(value))
        offset += len(values)


def _csv_entries(path: Path, column: str, id_column: str | None, keep: Sequence[str]) -> Iterator[Entry]:
    """Rows of a CSV whose ``column`` holds CIF text (or pymatgen JSON); ids from ``id_column`` or row numbers."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    _missing_columns(path, [column, *keep] + ([id_column] if id_column else []), list(frame.columns))
    ids = frame[id_column] if id_column else pd.Series(range(len(frame))).astype(str)
    for k, (key, value) in enumerate(zip(ids, frame[column])):
        columns = {c: frame[c].iloc[k] or None for c in keep} if keep else None
        yield Entry(str(key), partial(structure_from_value, value), columns)


def _read_xyz_frame(path: Path, index: int) -> Any:
    """Frame ``index`` of an extended-XYZ file as a Structure (through ASE), or the exception met."""
    try:
        from ase.io import read
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(read(path, index=index, format="extxyz"))
    except Exception as e:  # noqa: BLE001 - kept as this entry's error
        return ValueError(f"{path.name} frame {index}: cannot read extended XYZ ({one_line(e)})")


def _xyz_entries(path: Path) -> Iterator[Entry]:
    """One entry per frame of an extended-XYZ file, ``<stem>#<k>`` (``<stem>`` alone for one frame)."""
    try:
        from ase.io import iread
    except ImportError as e:
        raise ImportError(f"reading {path.name} needs ASE: pip install 'dim_featurizer[ase]'") from e
    n = sum(1 for _ in iread(path, index=":", format="extxyz"))
    for k in range(n):
        yield Entry(path.stem if n == 1 else f"{path.stem}#{k}", partial(_read_xyz_frame, path, k))


def _archive_entries(path: Path) -> Iterator[Entry]:
    """The CIF files of a zip or tar archive, in name order, named by member path without its suffix."""
    names, read = _cif_archive(path)
    if not names:
        raise FileNotFoundError(f"no CIF files in {path}")
    for name in names:
        yield Entry(str(Path(name).with_suffix("")), partial(lambda n: parse_cif(read(n), n), name))


def _no_columns(path: Path, keep: Sequence[str]) -> None:
    if keep:
        raise ValueError(f"{path} has no columns to keep ({', '.join(keep)}): only frames, parquet and CSV do")


def iter_entries(
    inputs: Iterable[str | Path],
    column: str = "structure",
    id_column: str | None = None,
    keep: Sequence[str] = (),
) -> Iterator[Entry]:
    """Every entry of the inputs, lazily, in a fixed order (the same on every machine).

    Args:
        inputs: structure files (CIF, POSCAR, ...), extended-XYZ files, folders of structure files
            (searched recursively, sorted), zip/tar archives of CIFs, matminer JSON frames, ``.parquet``
            files, and CSV files with a CIF-text column.
        column: the structure column of frames, parquet and CSV files.
        id_column: parquet or CSV column holding the ids (default: parquet's stored pandas index, else
            row numbers).
        keep: other columns of frames, parquet and CSV files to carry along (as text).

    Yields:
        :class:`Entry` ``(id, load, columns)``.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder or archive with no structure file.
        KeyError: a frame, parquet or CSV file without ``column`` or a ``keep`` column.
        ValueError: a truncated or invalid JSON frame.
    """
    for raw in inputs:
        path = Path(raw)
        name = path.name.lower()
        if path.is_dir():
            _no_columns(path, keep)
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_structure_file(p))
            if not files:
                raise FileNotFoundError(f"no structure files (CIF, POSCAR, .vasp) under {path}")
            yield from (Entry(str(p.relative_to(path).with_suffix("")), partial(read_structure_file, p)) for p in files)
        elif not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        elif is_frame(path):
            yield from _frame_entries(path, column, keep)
        elif name.endswith(".parquet"):
            yield from _parquet_entries(path, column, id_column, keep)
        elif name.endswith(CSV_SUFFIXES):
            yield from _csv_entries(path, column, id_column, keep)
        elif name.endswith(ARCHIVE_SUFFIXES):
            _no_columns(path, keep)
            yield from _archive_entries(path)
        elif name.endswith(XYZ_SUFFIXES):
            _no_columns(path, keep)
            yield from _xyz_entries(path)
        else:
            _no_columns(path, keep)
            stem = path.name if path.name.startswith(STRUCTURE_NAMES) else path.stem
            yield Entry(stem, partial(read_structure_file, path))


def count_entries(inputs: Iterable[str | Path], column: str = "structure") -> int | None:
    """How many entries :func:`iter_entries` will yield, when that is cheap to know (else None).

    Folders and archives are listed, parquet files read from their footer, and a frame's index is read
    (it comes before the data, so the structures are not parsed).
    """
    import ijson
    import pyarrow.parquet as pq
    from monty.io import zopen

    total = 0
    for raw in inputs:
        path = Path(raw)
        name = path.name.lower()
        if path.is_dir():
            total += sum(1 for p in path.rglob("*") if p.is_file() and is_structure_file(p))
        elif not path.is_file() or name.endswith(XYZ_SUFFIXES + CSV_SUFFIXES):
            return None
        elif is_frame(path):
            with _json_errors(path), zopen(str(path), "rb") as f:
                total += sum(1 for _ in ijson.items(f, "index.item"))
        elif name.endswith(".parquet"):
            total += pq.ParquetFile(path).metadata.num_rows
        elif name.endswith(ARCHIVE_SUFFIXES):
            total += len(_cif_archive(path)[0])
        else:
            total += 1
    return total
