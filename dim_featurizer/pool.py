"""Encode many structures, in this process or in a lasting pool of spawned, torch-free worker processes."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from dim_featurizer.encoding import Encoded, EncodingConfig, check_entry, encode_or_error

DAEMON_HINT = (
    "n_jobs > 1 is ignored in a daemonic process (a Dask worker, by default): encoding runs in this process. "
    "Start more worker processes instead, or set Dask's distributed.worker.daemon to False."
)
SPAWN_HINT = (
    "With n_jobs > 1 the structures are encoded in spawned processes, and each one imports your "
    'script\'s main module: put the code that featurises under `if __name__ == "__main__":` '
    "(see the multiprocessing docs, 'safe importing of main module'), or use n_jobs=1."
)


def encoding_workers(n_jobs: int | None, n_entries: int) -> int:
    """The number of worker processes ``encode_many`` starts (1: none, encode in this process).

    Raises:
        RuntimeError: workers are needed but this process is itself a spawned
            worker importing a main script that has no ``__main__`` guard;
            failing here, at once, beats a pool that breaks minutes later.
    """
    n_jobs = (os.cpu_count() or 1) if n_jobs in (None, -1) else int(n_jobs)
    if n_jobs <= 1 or n_entries < 2 * n_jobs:
        return 1
    if multiprocessing.current_process().daemon:
        # A daemonic process (a Dask worker by default) may not start children: encode here instead.
        warnings.warn(DAEMON_HINT, RuntimeWarning, stacklevel=3)
        return 1
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(SPAWN_HINT)
    return n_jobs


def _encode_block(cells: Sequence[Any], config: EncodingConfig) -> list[Encoded]:
    """Encode checked cells (or undecoded entries, parsed here); an error stays an error."""
    return [(None, c) if isinstance(c, Exception) else encode_or_error(c, config) for c in cells]


class EncodingPool:
    """Spawned, torch-free encoding processes, started on first use and reused by every later call.

    Spawning a worker imports numpy, spglib and pymatgen (seconds); a featuriser keeps one pool so that
    it pays this once, not once per call or chunk.
    """

    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self._executor: ProcessPoolExecutor | None = None

    def map(self, entries: Sequence[Any], config: EncodingConfig) -> Iterator[Encoded]:
        """Encode ``entries`` in order, at most ``4 * n_jobs`` blocks ahead of the consumer.

        The bound keeps memory flat on long inputs, while the lead lets the workers encode the next
        crystals as the caller runs the network on the last ones. Workers receive checked arrays
        (:class:`~dim_featurizer.encoding.Cell`), not pickled structures.
        """
        if self._executor is None:
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(max_workers=self.n_jobs, mp_context=context)
        block = max(1, min(64, len(entries) // (4 * self.n_jobs)))
        pending: deque = deque()
        try:
            for start in range(0, len(entries), block):
                cells = [check_entry(x, config) for x in entries[start : start + block]]
                pending.append(self._executor.submit(_encode_block, cells, config))
                if len(pending) >= 4 * self.n_jobs:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool as e:
            self.close()
            raise RuntimeError(f"the encoding worker processes died ({e}). {SPAWN_HINT}") from e
        finally:
            for future in pending:  # a consumer that stops early (an error) leaves no work queued
                future.cancel()

    def detach(self) -> None:
        """Forget the workers without stopping them (a forked child's copy of its parent's pool)."""
        self._executor = None

    def close(self) -> None:
        """Stop the workers (a later :meth:`map` starts new ones)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def encode_many(
    entries: Sequence[Any], config: EncodingConfig, n_jobs: int | None = 1, pool: EncodingPool | None = None
) -> Iterator[Encoded]:
    """Encode entries in order, yielding ``(encoded, None)`` or ``(None, error)`` for each.

    Args:
        entries: structures (anything else yields its error).
        config: encoding options.
        n_jobs: processes; ``-1`` or None means all cores. Workers are spawned,
            and the encoding never imports torch, so they cannot deadlock torch
            or touch a CUDA context.
        pool: reuse this pool's workers (its size wins over ``n_jobs``); without one, a pool lives for this call.
    """
    n_jobs = encoding_workers(n_jobs if pool is None else pool.n_jobs, len(entries))
    if n_jobs <= 1:
        yield from (encode_or_error(x, config) for x in entries)
        return
    own = pool is None
    pool = EncodingPool(n_jobs) if own else pool
    try:
        yield from pool.map(entries, config)
    finally:
        if own:
            pool.close()
