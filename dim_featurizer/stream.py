"""Streaming, resumable, sharded featurisation into parquet parts (``dim-featurize --out-dir``).

An output folder holds:

- ``manifest.json``: what the parts are made from (inputs, structure column,
  chunk size, weights and their sha256, readout, encoding). A run with other
  settings refuses the folder instead of mixing vectors.
- ``parts/part-000007.parquet``: chunk 7, the input's entries
  ``[7 * chunk_size, 8 * chunk_size)`` in input order, indexed by id, with the
  D feature columns and an ``error`` column (null for good rows). A part is
  written to a hidden temporary file and renamed, so it exists whole or not
  at all, and a rerun never redoes it.
- ``shards/shard-1-of-4.json``: written when shard 1 of 4 finishes, with the
  input's size, its chunks, counts, seconds and machine.

Chunk k belongs to shard ``k mod n``, so shards are disjoint and cover the
input whatever order they run in. ``pd.read_parquet(out / "parts")`` reads the
parts as one dataset; :func:`read_parts` and :func:`merge_parts` also check
that none is missing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import count, islice
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.errors import FeaturizationError, one_line
from dim_featurizer.featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.files import write_atomically, write_json
from dim_featurizer.parts import PartStore
from dim_featurizer.readers import Entry, iter_entries

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
    featurizer: DeepInfoMaxFeaturizer, entries: list[Entry], ignore_errors: bool = False
) -> pd.DataFrame:
    """Read and featurise ``(id, load)`` entries into a table.

    Returns:
        A frame indexed by id (name ``id``): the D feature columns (float64) and ``error`` (None for a
        good row; an unreadable entry's is ``"cannot read: ..."``).

    Raises:
        FeaturizationError: without ``ignore_errors``, the first entry that cannot be read or featurised,
            named by its id.
    """
    ids = [key for key, _ in entries]
    values = [load() for _, load in entries]
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
    table = pd.DataFrame(vectors, index=pd.Index(ids, name="id"), columns=labels)
    table["error"] = pd.Series(errors, index=table.index, dtype=object)
    return table


def _describe_input(path: Path) -> dict:
    # Name and size, not the absolute path: shards on machines that mount the data elsewhere still agree.
    return {"name": path.name, "bytes": path.stat().st_size if path.is_file() else None}


def build_manifest(
    featurizer: DeepInfoMaxFeaturizer,
    inputs: list[str | os.PathLike],
    column: str,
    id_column: str | None,
    chunk_size: int,
) -> dict:
    """What makes two runs' parts interchangeable: inputs, chunking, weights (by hash), readout, encoding."""
    from dim_featurizer import __version__

    runner = featurizer.runner()
    return {
        "format": FORMAT,
        "inputs": [_describe_input(Path(p)) for p in inputs],
        "column": column,
        "id_column": id_column,
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


@dataclass
class ShardReport:
    """What one shard did: its chunks (written now or found done), the input's size, rows and failures."""

    shard: int
    n_shards: int
    n_entries: int
    n_chunks: int
    written: list[int]
    skipped: list[int]
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
) -> ShardReport:
    """Featurise the inputs chunk by chunk into parquet parts under ``out_dir``; resumable and shardable.

    Args:
        inputs: as for :func:`dim_featurizer.readers.iter_entries` (files, folders, archives, frames, parquet).
        out_dir: the output folder (created; reused when its manifest matches).
        featurizer: the featuriser (its weights are loaded once).
        column, id_column: the structure and id columns of frames and parquet files.
        chunk_size: entries per part; memory grows with it, not with the input.
        shard: ``(i, n)``: write only chunks ``k`` with ``k % n == i``.
        ignore_errors: NaN rows with the reason in ``error`` for bad entries, instead of stopping.
        pbar: show a progress bar over entries.

    Returns:
        The :class:`ShardReport`, also written to ``shards/shard-i-of-n.json``.

    Raises:
        FeaturizationError: without ``ignore_errors``, the first bad entry, named by id and chunk;
            the parts finished before it are kept.
    """
    from tqdm.auto import tqdm

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    index, count = shard
    out_dir = Path(out_dir)
    open_output(out_dir, build_manifest(featurizer, inputs, column, id_column, chunk_size))
    start = time.perf_counter()
    report = ShardReport(index, count, 0, 0, [], [], 0, 0, 0.0, str(featurizer.runner().device))
    parts = part_store(out_dir)
    with tqdm(desc=f"dim-featurize shard {index}/{count}", unit="structure", disable=not pbar) as progress:
        for number, chunk in chunked(iter_entries(inputs, column, id_column), chunk_size):
            report.n_entries += len(chunk)
            report.n_chunks = number + 1
            if number % count != index:
                continue
            if parts.done(chunk_key(number)):
                report.skipped.append(number)
                progress.update(len(chunk))
                continue
            try:
                table = featurize_entries(featurizer, chunk, ignore_errors)
            except FeaturizationError as e:
                first = number * chunk_size
                raise type(e)(f"chunk {number} (entries {first}-{first + len(chunk) - 1}): {e}") from e
            parts.write(chunk_key(number), table.to_parquet)
            report.written.append(number)
            report.rows += len(table)
            report.failed += int(table["error"].notna().sum())
            progress.update(len(chunk))
    report.seconds = time.perf_counter() - start
    from dim_featurizer.provenance import run_record

    write_json(out_dir / SHARDS / f"shard-{index}-of-{count}.json", run_record(**asdict(report)))
    return report


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


def read_parts(out_dir: str | os.PathLike) -> pd.DataFrame:
    """All parts of a finished output folder as one frame, in input order (checked complete)."""
    paths = finished_parts(out_dir)
    return pd.concat([pd.read_parquet(p) for p in paths]) if paths else pd.DataFrame()


def merge_parts(out_dir: str | os.PathLike, output: str | os.PathLike) -> int:
    """Write the parts of a finished folder into one ``.parquet`` or ``.csv`` file, one part in memory at a time.

    Returns:
        The number of rows written.
    """
    import pyarrow.parquet as pq

    paths, output = finished_parts(out_dir), Path(output)
    if not paths:
        raise ValueError(f"{out_dir}: the input had no entries")
    if str(output).endswith(".parquet"):

        def write(target: Path) -> None:
            with pq.ParquetWriter(target, pq.read_schema(paths[0])) as writer:
                for p in paths:
                    writer.write_table(pq.read_table(p))

    else:

        def write(target: Path) -> None:
            for number, p in enumerate(paths):
                pd.read_parquet(p).to_csv(target, mode="a" if number else "w", header=number == 0)

    write_atomically(output, write)
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
