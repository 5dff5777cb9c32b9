"""``DeepInfoMaxFeaturizer``: the matminer and scikit-learn face of the package."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from contextvars import ContextVar
from dataclasses import replace
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd
import torch
from matminer.featurizers.base import BaseFeaturizer
from tqdm.auto import tqdm

from dim_featurizer.batching import Batch, collate, plan_batches
from dim_featurizer.devices import resolve_device
from dim_featurizer.encoding import (
    Encoded,
    EncodedCrystal,
    EncodingConfig,
    EncodingPool,
    encode_many,
    encoding_workers,
)
from dim_featurizer.errors import name_entry
from dim_featurizer.model import SiteNetEncoder
from dim_featurizer.weights import load_weights

# Entries encoded before their vectors are computed: bounds memory on huge inputs.
_CHUNK = 2048


# featurize_dataframe hands matminer's featurize_many bare values; this carries the frame's index
# into error messages without storing anything on the estimator.
_ENTRY_IDS: ContextVar[pd.Index | None] = ContextVar("entry_ids", default=None)


class DeepInfoMaxFeaturizer(BaseFeaturizer):
    """Site-Net Deep InfoMax feature vectors (μ_G) for pymatgen ``Structure`` objects.

    Args:
        weights: ``None`` for the package default, ``"untrained"`` for the
            seeded random control, a bundled name, a local folder, or a Hub
            repo id ``owner/name``.
        revision: Hub commit hash (40 hex), required with a Hub repo id.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        batch_sites: most unique sites per forward pass (docs/method.md §1.7).
        max_atoms: supercell size; None uses the value the weights were trained with.
        oxidation: ``"given"``, ``"guess"`` or ``"zero"``; None uses the weights'.
        max_sites: largest primitive cell accepted; None uses the weights'.
        seed: seed of the ``"untrained"`` initialisation.
        n_jobs: processes that encode structures (spawned, torch-free, so
            they cannot deadlock torch or touch CUDA); the network always runs
            in this process. ``-1`` means all cores.
        ignore_errors: what ``transform`` does with bad entries (NaN rows when True).
        pbar: whether ``transform`` shows a progress bar.
        cache_dir: Hub cache folder, None for huggingface_hub's default.
        readout: ``"global_mu"`` (μ_G) or ``"pooled"`` (the layer before the
            global bottleneck); None uses the weights' own.

    Learned state: ``model_`` (the encoder), ``weights_info_``, ``device_``
    and ``encoding_``, set by :meth:`fit` or on first use, never pickled.
    """

    n_jobs = None  # a plain attribute here, shadowing matminer's read-only property

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        revision: str | None = None,
        device: str = "auto",
        batch_sites: int = 1200,
        max_atoms: int | None = None,
        oxidation: str | None = None,
        max_sites: int | None = None,
        seed: int = 0,
        n_jobs: int = 1,
        ignore_errors: bool = False,
        pbar: bool = True,
        cache_dir: str | os.PathLike | None = None,
        readout: str | None = None,
    ) -> None:
        # Stored as given, under their own names (scikit-learn's estimator contract).
        self.weights, self.revision, self.seed, self.cache_dir = weights, revision, seed, cache_dir
        self.device, self.batch_sites, self.n_jobs = device, batch_sites, n_jobs
        self.max_atoms, self.oxidation, self.max_sites = max_atoms, oxidation, max_sites
        self.ignore_errors, self.pbar, self.readout = ignore_errors, pbar, readout

    # -- model state -------------------------------------------------------
    def set_n_jobs(self, n_jobs: int) -> None:
        """Set the number of encoding processes (matminer's API)."""
        self.n_jobs = n_jobs

    def _load(self) -> None:
        model, info = load_weights(self.weights, revision=self.revision, seed=self.seed, cache_dir=self.cache_dir)
        device = resolve_device(self.device)
        overrides = {
            k: v
            for k, v in {"max_atoms": self.max_atoms, "oxidation": self.oxidation, "max_sites": self.max_sites}.items()
            if v is not None
        }
        if self.readout is not None:
            model.config = replace(model.config, readout=self.readout)
        self._use(model, replace(model.config.encoding, **overrides), device, info)

    def _use(self, model: SiteNetEncoder, encoding: EncodingConfig, device: torch.device, info: Any) -> None:
        """Set the learned state: the encoder (moved to ``device``, eval mode), its encoding and source."""
        self.model_ = model.to(device).eval()
        self.encoding_, self.device_, self.weights_info_ = encoding, device, info

    def _loaded(self) -> bool:
        return getattr(self, "model_", None) is not None

    def fit(self, X: Any = None, y: Any = None, **fit_kwargs: Any) -> DeepInfoMaxFeaturizer:
        """Load the weights (nothing is learned from X). Returns self."""
        self._load()
        return self

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("model_", "weights_info_", "device_", "encoding_", "_encoding_pool"):
            state.pop(name, None)
        return state

    # -- matminer API --------------------------------------------------------
    def featurize(self, structure: Any) -> list[float]:
        """Return the feature vector of one ``Structure``; raise a named error for bad input."""
        return self._rows([structure], None, ignore_errors=False, return_errors=False, pbar=False, single=True)[0]

    def feature_labels(self) -> list[str]:
        """Return a new list of the D labels ``DIM_0`` … ``DIM_{D-1}``."""
        if not self._loaded():
            self._load()
        return [f"DIM_{i}" for i in range(self.model_.config.feature_width)]

    def citations(self) -> list[str]:
        """BibTeX for the Deep InfoMax pretraining paper and Site-Net."""
        return [
            "@article{moran2025deepinfomax,\n"
            "  title={Establishing Deep InfoMax as an effective self-supervised learning methodology "
            "in materials informatics},\n"
            "  author={Moran, Michael and Gaultois, Michael W. and Gusev, Vladimir V. and "
            "Antypov, Dmytro and Rosseinsky, Matthew J.},\n"
            "  journal={Digital Discovery},\n  volume={4},\n  pages={790--811},\n  year={2025},\n"
            "  doi={10.1039/D4DD00202D}\n}",
            "@article{moran2023sitenet,\n"
            "  title={Site-Net: using global self-attention and real-space supercells to capture "
            "long-range interactions in crystal structures},\n"
            "  author={Moran, Michael and Gaultois, Michael W. and Gusev, Vladimir V. and "
            "Rosseinsky, Matthew J.},\n"
            "  journal={Digital Discovery},\n  volume={2},\n  pages={1297--1310},\n  year={2023},\n"
            "  doi={10.1039/D3DD00005B}\n}",
        ]

    def implementors(self) -> list[str]:
        """The people responsible for this implementation."""
        return ["dim_featurizer developers"]

    def featurize_many(
        self,
        entries: Sequence[Any] | pd.Series | pd.DataFrame | np.ndarray,
        ignore_errors: bool = False,
        return_errors: bool = False,
        pbar: bool | dict = True,
    ) -> list[list[Any]]:
        """Featurise many structures in few batched forward passes.

        Args:
            entries: structures, or one-element tuples of structures (matminer's
                form), a Series, or a one-column DataFrame.
            ignore_errors: give a NaN row for a bad entry instead of raising.
            return_errors: append each row's error message (NaN when none);
                needs ``ignore_errors``.
            pbar: show a tqdm progress bar (a dict is passed to tqdm).

        Returns:
            One list of D floats per entry, in input order.

        Raises:
            FeaturizationError: (without ``ignore_errors``) the first bad entry, named.
        """
        if return_errors and not ignore_errors:
            raise ValueError("return_errors=True needs ignore_errors=True")
        keys = entries.index if isinstance(entries, (pd.Series, pd.DataFrame)) else _ENTRY_IDS.get()
        return self._rows(self._entries(entries), keys, ignore_errors, return_errors, pbar)

    def featurize_dataframe(self, df: pd.DataFrame, col_id: str | list[str], *args: Any, **kwargs: Any) -> pd.DataFrame:
        """matminer's ``featurize_dataframe``; error messages name each bad row by its index label too."""
        token = _ENTRY_IDS.set(df.index)
        try:
            return super().featurize_dataframe(df, col_id, *args, **kwargs)
        finally:
            _ENTRY_IDS.reset(token)

    def transform(self, X: Any) -> np.ndarray:
        """(n, D) float64 array for n structures (``ignore_errors`` and ``pbar`` from __init__)."""
        return np.asarray(self.featurize_many(X, ignore_errors=self.ignore_errors, pbar=self.pbar), dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Feature names for scikit-learn's ``set_output`` and pipelines."""
        return np.asarray(self.feature_labels(), dtype=object)

    # -- internals -----------------------------------------------------------
    @staticmethod
    def _entries(entries: Any) -> list[Any]:
        if isinstance(entries, pd.DataFrame):
            if entries.shape[1] != 1:
                raise ValueError(f"expected one column of structures, got columns {list(entries.columns)}")
            entries = entries.iloc[:, 0]
        if isinstance(entries, (str, bytes)) or not hasattr(entries, "__len__"):
            raise TypeError(f"entries must be a list-like of structures, got {type(entries).__name__}")
        items = list(entries.values if isinstance(entries, pd.Series) else entries)
        # matminer passes one-argument tuples; unwrap them.
        return [x[0] if isinstance(x, (tuple, list, np.ndarray)) and len(x) == 1 else x for x in items]

    def _rows(
        self,
        items: list[Any],
        keys: Sequence[Any] | None,
        ignore_errors: bool,
        return_errors: bool,
        pbar: bool | dict,
        single: bool = False,
        forward: Callable[[Batch], torch.Tensor] | None = None,
        width: int | None = None,
    ) -> list[list[Any]]:
        """Rows for ``items`` in order; bad entries raise, or give NaN rows, named by position, id and formula.

        ``forward`` maps a batch to ``width`` values per crystal (default: the encoder's feature vectors);
        the fine-tuning regressor passes its encoder and head.
        """
        if keys is not None and len(keys) != len(items):
            keys = None
        encoding_workers(self.n_jobs, len(items))  # a missing __main__ guard fails before the model loads
        if not self._loaded():
            self._load()
        forward = forward or self.model_.embed
        width = width or self.model_.config.feature_width
        rows: list[list[Any]] = []
        progress = tqdm(
            total=len(items), desc=type(self).__name__, disable=not pbar, **(pbar if isinstance(pbar, dict) else {})
        )
        # One encoding stream for all chunks: the workers encode ahead while the network runs.
        stream = self._encode_stream(items)
        with progress, closing(stream):
            for start in range(0, len(items), _CHUNK):
                chunk = items[start : start + _CHUNK]
                encoded, errors = self._take(stream, len(chunk), progress)
                vectors = self._forward_encoded(encoded, errors, forward)
                named = self._name_errors(errors, chunk, start, keys, single, ignore_errors)
                for vector, error in zip(vectors, named):
                    row = [float("nan")] * width if error is not None else vector.tolist()
                    if return_errors:
                        row.append(float("nan") if error is None else str(error))
                    rows.append(row)
        return rows

    @staticmethod
    def _name_errors(
        errors: list[BaseException | None],
        chunk: list[Any],
        start: int,
        keys: Sequence[Any] | None,
        single: bool,
        ignore_errors: bool,
    ) -> list[BaseException | None]:
        """Each error renamed after its entry (position ``start + offset``, id, formula); raise the first
        unless ``ignore_errors``."""
        named = []
        for offset, error in enumerate(errors):
            if error is not None:
                i = start + offset
                error = name_entry(error, chunk[offset], None if single else i, None if keys is None else keys[i])
                if not ignore_errors:
                    raise error
            named.append(error)
        return named

    def _encode_stream(self, items: list[Any]) -> Iterator[Encoded]:
        """``(encoded, error)`` per item, in order; with ``n_jobs > 1`` from this featuriser's lasting pool."""
        n_jobs = encoding_workers(self.n_jobs, len(items))
        pool = self.__dict__.get("_encoding_pool")
        if n_jobs > 1 and (pool is None or pool.n_jobs != n_jobs):
            if pool is not None:
                pool.close()
            pool = self._encoding_pool = EncodingPool(n_jobs)
            weakref.finalize(self, pool.close)
        return encode_many(items, self.encoding_, n_jobs, pool=pool if n_jobs > 1 else None)

    @staticmethod
    def _take(stream: Iterator[Encoded], n: int, progress: tqdm | None = None) -> tuple[list, list]:
        """The next ``n`` results of ``stream`` as (encoded crystals, errors): one of the two is None for each."""
        encoded, errors = [], []
        for crystal, error in islice(stream, n):
            encoded.append(crystal)
            errors.append(error)
            if progress is not None:
                progress.update(1)
        return encoded, errors

    def _encode_chunk(self, items: list[Any], progress: tqdm | None = None) -> tuple[list, list]:
        """(encoded crystals, errors) for ``items``: one of the two is None for each entry."""
        with closing(self._encode_stream(items)) as stream:
            return self._take(stream, len(items), progress)

    def _forward_encoded(
        self, encoded: list, errors: list[BaseException | None], forward: Callable[[Batch], torch.Tensor]
    ) -> list[np.ndarray | None]:
        """``forward``'s row for each encoded crystal (None where it is None), in width-grouped batches; a
        failing batch is retried crystal by crystal and a failing crystal's error is put in ``errors``."""
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

    def _embed(self, crystals: list[EncodedCrystal], forward: Callable[[Batch], torch.Tensor]) -> np.ndarray:
        with torch.no_grad():
            return forward(collate(crystals).to(self.device_)).double().cpu().numpy()
