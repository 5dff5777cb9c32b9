"""The inference core: one loaded encoder, its encoding, device and pool, and batched forward passes.

Every face of the package runs through a :class:`Runner`: the matminer featuriser, the fine-tuning
regressor, streaming, Dask and the benchmark harness. A runner owns

- the encoder and where it came from (:class:`~dim_featurizer.weights.WeightsInfo`);
- the encoding of entries into crystals, with errors per entry, in a lasting process pool;
- batching under a unique-site budget, on one device;
- running a forward function over encoded crystals, returning arrays and named errors.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import replace
from itertools import islice
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dim_featurizer.batching import Batch, collate, plan_batches
from dim_featurizer.devices import resolve_device
from dim_featurizer.encoding import Encoded, EncodedCrystal, EncodingConfig
from dim_featurizer.model import SiteNetEncoder
from dim_featurizer.pool import EncodingPool, encode_many, encoding_workers
from dim_featurizer.validation import name_errors
from dim_featurizer.weights import WeightsInfo, load_weights

#: Entries encoded before their vectors are computed: bounds memory on huge inputs.
CHUNK = 2048
#: The options of :meth:`Runner.load`, which the featuriser and the regressor share by name.
LOAD_OPTIONS = (
    "weights",
    "revision",
    "seed",
    "cache_dir",
    "device",
    "readout",
    "max_atoms",
    "oxidation",
    "max_sites",
    "batch_sites",
    "n_jobs",
    "compile_network",
)

#: Load options that are set on a runner per call, not fixed when it loads.
CALL_OPTIONS = ("n_jobs", "batch_sites")

#: Maps a batch to one row of values per crystal.
Forward = Callable[[Batch], torch.Tensor]

#: Every live runner, so that a forked child can drop the encoding workers it inherits (they are the parent's).
_LIVE: weakref.WeakSet = weakref.WeakSet()
#: Runners by load options, for processes forked from the one that loaded them (see :meth:`Runner.shared`).
_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _after_fork_in_child() -> None:
    """Run in a process forked from one that imported this module (a matminer or multiprocessing fork pool).

    The parent's OpenMP thread pool does not survive a fork: the child's first parallel torch op would wait
    forever on threads that do not exist. One intra-op thread runs ops inline, never touching that pool; a
    pool of forked workers has one process per core anyway. Inherited encoding workers belong to the parent.
    """
    torch.set_num_threads(1)
    for runner in list(_LIVE):
        runner.detach_pool()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Runner:
    """A loaded encoder that turns entries into rows of values, batched, on one device.

    Args:
        model: the encoder (moved to ``device`` and put in eval mode).
        encoding: how entries become crystals.
        device: where the network runs.
        info: where the weights came from.
        batch_sites: most unique sites per forward pass (docs/method.md §1.7).
        n_jobs: encoding processes (``-1``: all cores); the network always runs in this process.
        compile_network: run the per-pair work through ``torch.compile`` (see
            :meth:`~dim_featurizer.model.LocalEncoder.compile_pairs`): a faster network on CPU after a
            one-off compile of ~10-30 s per process; vectors agree to 1e-5.
    """

    def __init__(
        self,
        model: SiteNetEncoder,
        encoding: EncodingConfig,
        device: torch.device,
        info: WeightsInfo,
        batch_sites: int = 1200,
        n_jobs: int = 1,
        compile_network: bool = False,
    ) -> None:
        self.model = model.to(device).eval()
        self.compile_network = compile_network
        self.model.local.compile_pairs(compile_network)
        self.encoding, self.device, self.info = encoding, device, info
        self.batch_sites, self.n_jobs = batch_sites, n_jobs
        self._pool: EncodingPool | None = None
        self.owner_pid = os.getpid()
        _LIVE.add(self)

    @classmethod
    def load(
        cls,
        weights: str | os.PathLike | None = None,
        revision: str | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        device: str = "auto",
        readout: str | None = None,
        max_atoms: int | None = None,
        oxidation: str | None = None,
        max_sites: int | None = None,
        batch_sites: int = 1200,
        compile_network: bool = False,
        n_jobs: int = 1,
    ) -> Runner:
        """Load weights (see :func:`~dim_featurizer.weights.load_weights`) into a runner.

        ``readout``, ``max_atoms``, ``oxidation`` and ``max_sites`` override the weights' own values
        when not None; the other arguments are those of :func:`load_weights` and :class:`Runner`.

        Raises:
            WeightsError: the weights cannot be found, verified or loaded.
        """
        model, info = load_weights(weights, revision=revision, seed=seed, cache_dir=cache_dir)
        overrides = {"max_atoms": max_atoms, "oxidation": oxidation, "max_sites": max_sites}
        encoding = replace(model.config.encoding, **{k: v for k, v in overrides.items() if v is not None})
        if readout is not None:
            model.config = replace(model.config, readout=readout)
        return cls(model, encoding, resolve_device(device), info, batch_sites, n_jobs, compile_network=compile_network)

    @classmethod
    def shared(cls, **options: Any) -> Runner:
        """A runner for :meth:`load`'s ``options``, loaded once per family of forked processes.

        In a process forked from one that holds a CPU runner with the same options (matminer's and
        multiprocessing's fork pools, which unpickle a fresh featuriser for every task), that runner is
        returned: no reload, and its weights stay shared with the parent until written. Anywhere else (the
        loading process itself, spawned workers, CUDA or compiled runners, which do not survive a fork) a new
        runner is loaded. ``n_jobs`` and ``batch_sites`` are per-call settings, not part of the match.

        Raises:
            WeightsError: the weights cannot be found, verified or loaded.
        """
        key = tuple((name, str(options.get(name))) for name in LOAD_OPTIONS if name not in CALL_OPTIONS)
        runner = _SHARED.get(key)
        inherited = runner is not None and runner.owner_pid != os.getpid()
        if inherited and runner.device.type == "cpu" and not runner.compile_network:
            runner.n_jobs, runner.batch_sites = options.get("n_jobs", 1), options.get("batch_sites", 1200)
            return runner
        runner = cls.load(**options)
        _SHARED[key] = runner
        return runner

    def with_model(self, model: SiteNetEncoder) -> Runner:
        """A runner with another encoder (e.g. a fine-tuned one) and this one's encoding, device and options."""
        return type(self)(
            model, self.encoding, self.device, self.info, self.batch_sites, self.n_jobs, self.compile_network
        )

    @property
    def width(self) -> int:
        """The length of the encoder's feature vector."""
        return self.model.config.feature_width

    # -- encoding ----------------------------------------------------------------
    def stream(self, items: Sequence[Any]) -> Iterator[Encoded]:
        """``(encoded, error)`` per item, in order; with ``n_jobs > 1`` from this runner's lasting pool."""
        n_jobs = encoding_workers(self.n_jobs, len(items))
        if n_jobs > 1 and (self._pool is None or self._pool.n_jobs != n_jobs):
            self.close()
            self._pool = EncodingPool(n_jobs)
            weakref.finalize(self, self._pool.close)
        return encode_many(items, self.encoding, n_jobs, pool=self._pool if n_jobs > 1 else None)

    def encode(self, items: Sequence[Any], progress: tqdm | None = None) -> tuple[list, list]:
        """(encoded crystals, errors) for ``items``: one of the two is None for each entry."""
        with closing(self.stream(items)) as stream:
            return _take(stream, len(items), progress)

    def close(self) -> None:
        """Stop the encoding workers, if any (a later call starts new ones)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def pool(self) -> EncodingPool | None:
        """The lasting pool of encoding workers, None until ``n_jobs > 1`` needs one (and after :meth:`close`)."""
        return self._pool

    def detach_pool(self) -> None:
        """Forget the encoding workers without stopping them: in a forked child they are the parent's."""
        if self._pool is not None:
            self._pool.detach()
            self._pool = None

    # -- the network -------------------------------------------------------------
    def forward(
        self, encoded: Sequence[EncodedCrystal | None], errors: list, forward: Forward | None = None
    ) -> list[np.ndarray | None]:
        """``forward``'s row (float64) for each encoded crystal, None where it is None.

        Crystals run in width-grouped batches of at most ``batch_sites`` unique sites. A failing batch is
        retried crystal by crystal, and a failing crystal's error is put in ``errors``.

        Args:
            encoded: crystals (None for entries that failed to encode).
            errors: one slot per crystal, updated in place.
            forward: maps a batch to values per crystal; default the encoder's feature vectors.
        """
        forward = forward or self.model.embed
        vectors: list[np.ndarray | None] = [None] * len(encoded)
        good = [i for i, e in enumerate(encoded) if e is not None]
        batches = plan_batches(
            [encoded[i].n_sites for i in good], self.batch_sites, widths=[encoded[i].n_atoms for i in good]
        )
        for batch in batches:
            members = [good[b] for b in batch]
            try:
                out = self._embed([encoded[i] for i in members], forward)
            except Exception:  # noqa: BLE001 - isolate the failing crystal, keep the rest
                for i in members:
                    try:
                        vectors[i] = self._embed([encoded[i]], forward)[0]
                    except Exception as e:  # noqa: BLE001
                        errors[i] = e
                continue
            for i, vector in zip(members, out):
                vectors[i] = vector
        return vectors

    def _embed(self, crystals: list[EncodedCrystal], forward: Forward) -> np.ndarray:
        with torch.inference_mode():
            return forward(collate(crystals).to(self.device)).double().cpu().numpy()

    def run(
        self,
        items: Sequence[Any],
        keys: Sequence[Any] | None = None,
        ignore_errors: bool = False,
        pbar: bool | dict = False,
        forward: Forward | None = None,
        width: int | None = None,
        single: bool = False,
        desc: str | None = None,
    ) -> tuple[np.ndarray, list[BaseException | None]]:
        """Encode and run ``items`` in chunks, the workers encoding ahead while the network runs.

        Args:
            items: the entries (anything that is not a good structure gets its error).
            keys: ids of the items, used to name errors (ignored unless one per item).
            ignore_errors: return errors instead of raising the first.
            pbar: show a tqdm bar (a dict is passed to tqdm).
            forward: maps a batch to ``width`` values per crystal (default: the feature vectors).
            width: values per crystal of ``forward``.
            single: the input is one structure: errors name no position.
            desc: the progress bar's label.

        Returns:
            ``(values, errors)``: an (n, width) float64 array with NaN rows for failures, and the named
            error of each item (None for good ones).

        Raises:
            FeaturizationError: without ``ignore_errors``, the first bad entry, named.
        """
        if keys is not None and len(keys) != len(items):
            keys = None
        width = width or self.width
        values = np.full((len(items), width), np.nan)
        errors: list[BaseException | None] = [None] * len(items)
        options = pbar if isinstance(pbar, dict) else {}
        progress = tqdm(total=len(items), desc=desc or "DIM", disable=not pbar, **options)
        stream = self.stream(items)
        with progress, closing(stream):
            for start in range(0, len(items), CHUNK):
                chunk = items[start : start + CHUNK]
                encoded, chunk_errors = _take(stream, len(chunk), progress)
                vectors = self.forward(encoded, chunk_errors, forward)
                named = name_errors(chunk_errors, chunk, start, keys, single, ignore_errors)
                for offset, (vector, error) in enumerate(zip(vectors, named)):
                    errors[start + offset] = error
                    if error is None:
                        values[start + offset] = vector
        return values, errors


def _take(stream: Iterator[Encoded], n: int, progress: tqdm | None = None) -> tuple[list, list]:
    """The next ``n`` results of ``stream`` as (encoded crystals, errors): one of the two is None for each."""
    encoded, errors = [], []
    for crystal, error in islice(stream, n):
        encoded.append(crystal)
        errors.append(error)
        if progress is not None:
            progress.update(1)
    return encoded, errors
