"""Streaming, resumable, sharded featurisation into parquet parts (``dim-featurize --out-dir``).

An output folder holds:

- ``manifest.json``: what the parts are made from (inputs by name, size and a
  content fingerprint, structure column, kept columns, chunk size, weights and
  their sha256, readout, encoding). A run with other settings refuses the
  folder instead of mixing vectors.
- ``parts/part-000007.parquet``: chunk 7, the input's entries
  ``[7 * chunk_size, 8 * chunk_size)`` in input order: ``id``, ``formula``,
  kept columns, the D feature columns and ``error`` (null for good rows), with
  one schema (:func:`part_schema`) whatever the chunk holds, so parts always
  merge. A part is written to a hidden temporary file and renamed, so it
  exists whole or not at all; a rerun checks each finished part (footer, row
  count, schema), keeps a good one and redoes a damaged one, saying so.
- ``shards/shard-1-of-4.lock``: held while shard 1 of 4 runs; a second
  writer of the same shard is refused.
- ``shards/shard-1-of-4.json``: written when shard 1 of 4 finishes: the
  input's size, the shard's rows and failures over all its parts, what this
  run wrote, found done or redid, seconds and machine.

Chunk k belongs to shard ``k mod n``, so shards are disjoint and cover the
input whatever order they run in. ``pd.read_parquet(out / "parts")`` reads the
parts as one dataset; :func:`read_parts` and :func:`merge_parts` also check
that none is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from itertools import count, islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dim_featurizer.errors import FeaturizationError, one_line
from dim_featurizer.featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.files import write_atomically, write_json
from dim_featurizer.parts import PartStore
from dim_featurizer.readers import Entry, composition_of, count_entries, iter_entries

MANIFEST = "manifest.json"
PARTS = "parts"
SHARDS = "shards"
#: Bumped when the layout of parts changes.
FORMAT = 1


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with ``0 <= i < n``; raises ValueError otherwise."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return index, count


def part_store(out_dir: str | os.PathLike) -> PartStore:
    """The parts of an output folder: ``parts/part-NNNNNN.parquet``, keyed by :func:`chunk_key`."""
    return PartStore(Path(out_dir) / PARTS, ".parquet")


def chunk_key(chunk: int) -> str:
    """The part key of chunk number ``chunk``."""
    return f"{chunk:06d}"


def chunked(entries: Iterable[Entry], size: int) -> Iterator[tuple[int, list[Entry]]]:
    """``(chunk number, entries)`` in groups of ``size`` (the last may be shorter)."""
    iterator = iter(entries)
    for number in count():
        chunk = list(islice(iterator, size))
        if not chunk:
            return
        yield number, chunk


def featurize_entries(
    featurizer: DeepInfoMaxFeaturizer,
    entries: list[Entry],
    ignore_errors: bool = False,
    keep: Sequence[str] = (),
    pbar: bool = False,
) -> pd.DataFrame:
    """Read and featurise entries into a table with one schema, whatever the entries hold.

    Args:
        featurizer: the featuriser.
        entries: :class:`~dim_featurizer.readers.Entry` items.
        ignore_errors: NaN rows with the reason in ``error`` instead of raising.
        keep: the entries' columns to carry along (as text).
        pbar: show a progress bar while the entries are read.

    Returns:
        A frame indexed by id (name ``id``): ``formula`` (the reduced formula; None when unreadable), the
        ``keep`` columns, the D feature columns (float64) and ``error`` (None for a good row; an unreadable
        entry's is ``"cannot read: ..."``).

    Raises:
        FeaturizationError: without ``ignore_errors``, the first entry that cannot be read or featurised,
            named by its id.
    """
    from tqdm.auto import tqdm

    ids = [entry.id for entry in entries]
    # Undecoded values (pymatgen dicts, JSON text) go to the encoding workers as they are: the workers parse.
    reading = tqdm(entries, desc="reading", unit="structure", disable=not pbar)
    values = [entry.value if entry.value is not None else entry.load() for entry in reading]
    unreadable = [isinstance(v, Exception) for v in values]
    if any(unreadable) and not ignore_errors:
        i = unreadable.index(True)
        raise FeaturizationError(f"cannot read {ids[i]}: {one_line(values[i])}")
    good = [i for i, bad in enumerate(unreadable) if not bad]
    labels = featurizer.feature_labels()
    vectors = np.full((len(values), len(labels)), np.nan)
    errors: list[str | None] = [f"cannot read: {one_line(v)}" if bad else None for v, bad in zip(values, unreadable)]
    if good:
        series = pd.Series([values[i] for i in good], index=[ids[i] for i in good], dtype=object)
        rows = featurizer.featurize_many(series, ignore_errors=ignore_errors, return_errors=ignore_errors, pbar=False)
        for i, row in zip(good, rows):
            vectors[i] = row[: len(labels)]
            if ignore_errors and isinstance(row[-1], str):
                errors[i] = row[-1]
    index = pd.Index(ids, name="id", dtype=object)
    table = pd.DataFrame({"formula": [None if bad else formula_of(v) for v, bad in zip(values, unreadable)]}, index)
    for column in keep:
        table[column] = [(entry.columns or {}).get(column) for entry in entries]
    table = pd.concat([table, pd.DataFrame(vectors, index=index, columns=labels)], axis=1)
    table["error"] = pd.Series(errors, index=index, dtype=object)
    return table


def formula_of(value: Any) -> str | None:
    """The reduced formula of a structure, or of an undecoded one (None when it has none)."""
    try:
        composition = composition_of(value)
        return composition.reduced_formula if composition is not None else None
    except Exception:  # noqa: BLE001 - a broken object gets no formula, and its row says why
        return None


def part_schema(n_features: int, keep: Sequence[str] = ()) -> Any:
    """The one parquet schema of every part and table: ``id``, ``formula`` and kept columns as strings,
    ``DIM_*`` as float64, and ``error`` as a string (null for good rows), whatever a chunk holds."""
    import pyarrow as pa

    text = ["id", "formula", *keep]
    fields = [pa.field(name, pa.string()) for name in text]
    fields += [pa.field(f"DIM_{i}", pa.float64()) for i in range(n_features)]
    return pa.schema([*fields, pa.field("error", pa.string())])


def write_table(table: pd.DataFrame, path: str | os.PathLike, keep: Sequence[str] = ()) -> None:
    """Write a :func:`featurize_entries` table as parquet with :func:`part_schema`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n_features = sum(str(c).startswith("DIM_") for c in table.columns)
    frame = table.reset_index()
    for column in ("id", "formula", *keep, "error"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
        frame[column] = [None if v is None else str(v) for v in frame[column]]
    schema = part_schema(n_features, keep)
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


def check_part(path: Path, rows: int, schema: Any) -> str | None:
    """Why the part at ``path`` cannot be used (unreadable footer, other row count, other schema), else None."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - any failure to read the footer means a damaged part
        return f"unreadable ({type(e).__name__}: {one_line(e)})"
    if metadata.metadata.num_rows != rows:
        return f"holds {metadata.metadata.num_rows} rows, the chunk has {rows}"
    if not metadata.schema_arrow.remove_metadata().equals(schema):
        return "has another schema"
    return None


def _fingerprint(path: Path) -> str:
    """sha256 of a file's size, first MiB and last MiB (cheap, and changes when the content does)."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, path.stat().st_size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return digest.hexdigest()


def _describe_input(path: Path) -> dict:
    """Name, size and a content fingerprint, not the absolute path: shards on machines that mount the data
    elsewhere still agree, and a changed file with the same name and size does not."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = "\n".join(f"{p.relative_to(path)}\t{p.stat().st_size}" for p in files)
        return {"name": path.name, "files": len(files), "sha256": hashlib.sha256(listing.encode()).hexdigest()}
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": _fingerprint(path)}


def build_manifest(
    featurizer: DeepInfoMaxFeaturizer,
    inputs: list[str | os.PathLike],
    column: str,
    id_column: str | None,
    chunk_size: int,
    keep: Sequence[str] = (),
) -> dict:
    """What makes two runs' parts interchangeable: inputs (by content), chunking, kept columns, weights (by
    hash), readout, encoding."""
    from dim_featurizer import __version__

    runner = featurizer.runner()
    return {
        "format": FORMAT,
        "inputs": [_describe_input(Path(p)) for p in inputs],
        "column": column,
        "id_column": id_column,
        "keep_columns": list(keep),
        "chunk_size": chunk_size,
        "weights": runner.info.record(seed=featurizer.seed),
        "readout": runner.model.config.readout,
        "encoding": runner.encoding.as_dict(),
        "n_features": len(featurizer.feature_labels()),
        "package_version": __version__,
    }


def open_output(out_dir: Path, manifest: dict) -> None:
    """Create ``out_dir`` with ``manifest``, or check that an existing one matches it (ValueError if not)."""
    path = Path(out_dir) / MANIFEST
    if path.is_file():
        existing = json.loads(path.read_text())
        differ = sorted(k for k in manifest.keys() | existing.keys() if manifest.get(k) != existing.get(k))
        if differ:
            details = "; ".join(f"{k}: folder has {existing.get(k)!r}, this run {manifest.get(k)!r}" for k in differ)
            raise ValueError(f"{out_dir} holds parts made with other settings ({details}); use another folder")
        return
    write_json(path, manifest)


class ShardLockedError(OSError):
    """Another process is writing the same shard of the same output folder."""


@contextmanager
def shard_lock(out_dir: Path, index: int, count: int) -> Iterator[None]:
    """Hold ``shards/shard-i-of-n.lock`` while a shard runs, so two writers never compute it twice.

    Raises:
        ShardLockedError: another process holds it.
    """
    import fcntl

    path = Path(out_dir) / SHARDS / f"shard-{index}-of-{count}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ShardLockedError(
                f"shard {index}/{count} of {out_dir} is being written by another process ({path}); "
                "wait for it, or run another shard"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class ShardReport:
    """What one shard holds (all its parts, whenever written) and what this run did.

    Attributes:
        n_entries, n_chunks: the input's size.
        written, skipped, redone: chunk numbers written now, found done, found damaged and redone now.
        rows, failed: rows and failed rows over all of this shard's parts.
        seconds: this run's time.
    """

    shard: int
    n_shards: int
    n_entries: int
    n_chunks: int
    written: list[int]
    skipped: list[int]
    redone: list[int]
    rows: int
    failed: int
    seconds: float
    device: str


def featurize_to_parts(
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    featurizer: DeepInfoMaxFeaturizer,
    column: str = "structure",
    id_column: str | None = None,
    chunk_size: int = 5000,
    shard: tuple[int, int] = (0, 1),
    ignore_errors: bool = False,
    pbar: bool = True,
    keep: Sequence[str] = (),
) -> ShardReport:
    """Featurise the inputs chunk by chunk into parquet parts under ``out_dir``; resumable and shardable.

    Args:
        inputs: as for :func:`dim_featurizer.readers.iter_entries` (files, folders, archives, frames, parquet,
            CSV).
        out_dir: the output folder (created; reused when its manifest matches).
        featurizer: the featuriser (its weights are loaded once).
        column, id_column: the structure and id columns of frames, parquet and CSV files.
        chunk_size: entries per part; memory grows with it, not with the input.
        shard: ``(i, n)``: write only chunks ``k`` with ``k % n == i``.
        ignore_errors: NaN rows with the reason in ``error`` for bad entries, instead of stopping.
        pbar: show a progress bar over entries (with a total when it is cheap to count).
        keep: input columns to carry into the parts (as text).

    Returns:
        The :class:`ShardReport`, also written to ``shards/shard-i-of-n.json``.

    Raises:
        FeaturizationError: without ``ignore_errors``, the first bad entry, named by id and chunk;
            the parts finished before it are kept.
        ShardLockedError: another process is writing this shard.
    """
    from tqdm.auto import tqdm

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    index, count = shard
    out_dir = Path(out_dir)
    open_output(out_dir, build_manifest(featurizer, inputs, column, id_column, chunk_size, keep))
    start = time.perf_counter()
    report = ShardReport(index, count, 0, 0, [], [], [], 0, 0, 0.0, str(featurizer.runner().device))
    parts, schema = part_store(out_dir), part_schema(len(featurizer.feature_labels()), keep)
    total = count_entries(inputs, column)
    mine: list[int] = []
    with (
        shard_lock(out_dir, index, count),
        tqdm(total=total, desc=f"dim-featurize shard {index}/{count}", unit="structure", disable=not pbar) as progress,
    ):
        for number, chunk in chunked(iter_entries(inputs, column, id_column, keep), chunk_size):
            report.n_entries += len(chunk)
            report.n_chunks = number + 1
            if number % count != index:
                progress.update(len(chunk))
                continue
            mine.append(number)
            if parts.done(chunk_key(number)):
                damage = check_part(parts.path(chunk_key(number)), len(chunk), schema)
                if damage is None:
                    report.skipped.append(number)
                    progress.update(len(chunk))
                    continue
                progress.write(f"dim-featurize: part {chunk_key(number)} {damage}: redoing it", file=sys.stderr)
                report.redone.append(number)
            try:
                table = featurize_entries(featurizer, chunk, ignore_errors, keep)
            except FeaturizationError as e:
                first = number * chunk_size
                raise type(e)(f"chunk {number} (entries {first}-{first + len(chunk) - 1}): {e}") from e
            parts.write(chunk_key(number), partial(write_table, table, keep=keep))
            report.written.append(number)
            progress.update(len(chunk))
    report.seconds = time.perf_counter() - start
    report.rows, report.failed = _count_rows(parts.path(chunk_key(k)) for k in mine)
    from dim_featurizer.provenance import run_record

    write_json(out_dir / SHARDS / f"shard-{index}-of-{count}.json", run_record(**asdict(report)))
    return report


def _count_rows(paths: Iterable[Path]) -> tuple[int, int]:
    """(rows, failed rows) over parts: a shard's record counts all its parts, however many runs wrote them."""
    import pyarrow.parquet as pq

    rows = failed = 0
    for path in paths:
        errors = pq.read_table(path, columns=["error"]).column("error")
        rows, failed = rows + len(errors), failed + len(errors) - errors.null_count
    return rows, failed


def finished_parts(out_dir: str | os.PathLike) -> list[Path]:
    """Every part of a finished output folder, in input order.

    Raises:
        FileNotFoundError: no manifest, no finished shard, or missing parts (listed, with their shards).
    """
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).is_file():
        raise FileNotFoundError(f"{out_dir} has no {MANIFEST}: not a dim-featurize --out-dir folder")
    records = [json.loads(p.read_text()) for p in sorted((out_dir / SHARDS).glob("shard-*.json"))]
    if not records:
        raise FileNotFoundError(f"no shard of {out_dir} has finished yet")
    n_chunks = max(r["n_chunks"] for r in records)
    parts = part_store(out_dir)
    paths = [parts.path(chunk_key(k)) for k in range(n_chunks)]
    missing = [k for k, p in enumerate(paths) if not p.is_file()]
    if missing:
        count = records[0]["n_shards"]
        shards = sorted({f"{k % count}/{count}" for k in missing})
        raise FileNotFoundError(
            f"{out_dir}: {len(missing)} of {n_chunks} parts missing (chunks {missing[:10]}); "
            f"run shard(s) {', '.join(shards)} (with the same settings) to finish them"
        )
    return paths


def _read_part(path: Path) -> Any:
    """One part as a pyarrow table; a damaged part is a ValueError naming it."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - any unreadable part is named, with what to do
        raise ValueError(f"{path}: damaged part ({one_line(e)}); rerun its shard to redo it") from e


def read_parts(out_dir: str | os.PathLike) -> pd.DataFrame:
    """All parts of a finished output folder as one frame indexed by id, in input order (checked complete)."""
    paths = finished_parts(out_dir)
    if not paths:
        return pd.DataFrame()
    return pd.concat([_read_part(p).to_pandas().set_index("id") for p in paths])


#: The table formats ``-o`` and ``--merge`` write, by file suffix.
OUTPUT_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def check_output(path: str | os.PathLike) -> None:
    """Refuse an output file whose suffix is not one of :data:`OUTPUT_SUFFIXES` (ValueError naming them)."""
    if not str(path).lower().endswith(OUTPUT_SUFFIXES):
        raise ValueError(f"cannot write {path}: the output must end in {', '.join(OUTPUT_SUFFIXES)} (or be - for CSV)")


def write_output(table: pd.DataFrame, path: str | os.PathLike, keep: Sequence[str] = ()) -> None:
    """Write a :func:`featurize_entries` table to ``path`` (.parquet with :func:`part_schema`, or CSV), atomically."""
    check_output(path)
    if str(path).lower().endswith(".parquet"):
        write_atomically(path, partial(write_table, table, keep=keep))
    else:
        write_atomically(path, lambda target: table.to_csv(target, compression="infer"))


def merge_parts(out_dir: str | os.PathLike, output: str | os.PathLike) -> int:
    """Write the parts of a finished folder into one ``.parquet`` or ``.csv`` file, one part in memory at a time.

    The merged file has the parts' columns: ``id``, ``formula``, kept columns, features and ``error``, the
    same as ``dim-featurize -o``.

    Returns:
        The number of rows written.
    """
    import pyarrow.parquet as pq

    check_output(output)
    paths, output = finished_parts(out_dir), Path(output)
    if not paths:
        raise ValueError(f"{out_dir}: the input had no entries")
    if str(output).lower().endswith(".parquet"):

        def write(target: Path) -> None:
            with pq.ParquetWriter(target, _read_part(paths[0]).schema) as writer:
                for p in paths:
                    writer.write_table(_read_part(p))

    else:

        def write(target: Path) -> None:
            for number, p in enumerate(paths):
                frame = _read_part(p).to_pandas().set_index("id")
                frame.to_csv(target, mode="a" if number else "w", header=number == 0, compression="infer")

    write_atomically(output, write)
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
