"""``DeepInfoMaxFeaturizer``: the matminer and scikit-learn face of the package."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np
import pandas as pd
from matminer.featurizers.base import BaseFeaturizer

from dim_featurizer.inference import LOAD_OPTIONS, Runner
from dim_featurizer.pool import encoding_workers
from dim_featurizer.validation import check_entries

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
        compile_network: compile the network's per-pair work with ``torch.compile`` (needs a C++
            compiler on CPU): a faster network after a one-off ~10-30 s compile per process, for
            large inputs; vectors agree with the default's to ~1e-6.
        label_prefix: the feature labels are ``<label_prefix>_0`` …; give two featurisers in one
            ``MultipleFeaturizer`` (e.g. the weights and their ``untrained:`` control) different prefixes.

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
        compile_network: bool = False,
        label_prefix: str = "DIM",
    ) -> None:
        # Stored as given, under their own names (scikit-learn's estimator contract).
        self.weights, self.revision, self.seed, self.cache_dir = weights, revision, seed, cache_dir
        self.device, self.batch_sites, self.n_jobs = device, batch_sites, n_jobs
        self.max_atoms, self.oxidation, self.max_sites = max_atoms, oxidation, max_sites
        self.ignore_errors, self.pbar, self.readout = ignore_errors, pbar, readout
        self.compile_network, self.label_prefix = compile_network, label_prefix

    # -- model state -------------------------------------------------------
    def set_n_jobs(self, n_jobs: int) -> None:
        """Set the number of encoding processes (matminer's API)."""
        self.n_jobs = n_jobs

    def runner(self) -> Runner:
        """The inference core this featuriser runs on, loaded on first use (with its current ``n_jobs`` and
        ``batch_sites``).

        Raises:
            WeightsError: the weights cannot be found, verified or loaded.
        """
        if getattr(self, "runner_", None) is None:
            self.runner_ = Runner.shared(**{name: getattr(self, name) for name in LOAD_OPTIONS})
        self.runner_.n_jobs, self.runner_.batch_sites = self.n_jobs, self.batch_sites
        return self.runner_

    # The learned state, read from the runner (absent until loaded, as scikit-learn expects).
    model_ = property(lambda self: _loaded(self).model, doc="The encoder (a ``SiteNetEncoder``).")
    encoding_ = property(lambda self: _loaded(self).encoding, doc="The ``EncodingConfig`` in use.")
    device_ = property(lambda self: _loaded(self).device, doc="The torch device the network runs on.")
    weights_info_ = property(lambda self: _loaded(self).info, doc="Where the weights came from (``WeightsInfo``).")

    def fit(self, X: Any = None, y: Any = None, **fit_kwargs: Any) -> DeepInfoMaxFeaturizer:
        """Load the weights (nothing is learned from X). Returns self."""
        self.runner_ = None
        self.runner()
        return self

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("runner_", None)
        return state

    # -- matminer API --------------------------------------------------------
    def featurize(self, structure: Any) -> list[float]:
        """Return the feature vector of one ``Structure``; raise a named error for bad input."""
        return self._rows([structure], None, ignore_errors=False, return_errors=False, pbar=False, single=True)[0]

    def feature_labels(self) -> list[str]:
        """Return a new list of the D labels ``DIM_0`` … ``DIM_{D-1}`` (``label_prefix`` in place of ``DIM``)."""
        return [f"{self.label_prefix}_{i}" for i in range(self.runner().width)]

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
        return self._rows(check_entries(entries), keys, ignore_errors, return_errors, pbar)

    def featurize_dataframe(self, df: pd.DataFrame, col_id: str | list[str], *args: Any, **kwargs: Any) -> pd.DataFrame:
        """matminer's ``featurize_dataframe``; error messages name each bad row by its index label too, and the
        progress bar follows the featuriser's ``pbar`` unless ``pbar=`` is given."""
        token = _ENTRY_IDS.set(df.index)
        if len(args) < 5:  # matminer's pbar is its 5th option after col_id: follow the featuriser's own
            kwargs.setdefault("pbar", self.pbar)
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
    def _rows(
        self,
        items: list[Any],
        keys: Any,
        ignore_errors: bool,
        return_errors: bool,
        pbar: bool | dict,
        single: bool = False,
    ) -> list[list[Any]]:
        """matminer's rows for ``items`` in order: NaN rows for bad entries, and their messages when asked."""
        encoding_workers(self.n_jobs, len(items))  # a missing __main__ guard fails before the model loads
        values, errors = self.runner().run(items, keys, ignore_errors, pbar, single=single, desc=type(self).__name__)
        rows = values.tolist()
        if return_errors:
            for row, error in zip(rows, errors):
                row.append(float("nan") if error is None else str(error))
        return rows


def _loaded(featurizer: DeepInfoMaxFeaturizer) -> Runner:
    """The featuriser's runner; AttributeError before it is loaded (so ``hasattr(f, "model_")`` is False)."""
    runner = featurizer.__dict__.get("runner_")
    if runner is None:
        raise AttributeError("the featuriser has not loaded its weights yet: call fit() or featurise first")
    return runner
