"""``DIMRegressor``: fine-tune the Site-Net encoder with a new head on a few labels (paper Fig. 7).

Encoding, batching, weights and the encoder come from the inference core (:class:`~dim_featurizer.inference.Runner`),
as for the featuriser; the regressor adds a head and a fine-tuning loop.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load, load_file, save, save_file
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from dim_featurizer.batching import Batch, collate, plan_batches
from dim_featurizer.config import EncodingConfig, ModelConfig
from dim_featurizer.devices import resolve_device
from dim_featurizer.encoding import EncodedCrystal
from dim_featurizer.files import write_atomically, write_json
from dim_featurizer.inference import LOAD_OPTIONS, Runner
from dim_featurizer.model import Mish, SiteNetEncoder, untrained_encoder
from dim_featurizer.sampling import validation_split
from dim_featurizer.validation import check_entries, check_targets, entry_keys, name_errors
from dim_featurizer.weights import WeightsInfo

#: Width of the head's hidden layer (the paper's Linear(D→64) → Mish → Linear(64→1)).
HEAD_HIDDEN = 64
#: Prediction batches hold at least this many unique sites (the featuriser's default): no gradients, so
#: larger batches cost little memory and run faster; the results do not depend on it.
INFERENCE_BATCH_SITES = 1200
INITS = ("pretrained", "random")
LOSSES = ("l1", "mse")
STATE_NAME, CONFIG_NAME = "model.safetensors", "regressor.json"


class RegressionNet(nn.Module):
    """The encoder's feature vector (its readout), then Linear(D→64) → Mish → Linear(64→1)."""

    def __init__(self, encoder: SiteNetEncoder, hidden: int = HEAD_HIDDEN) -> None:
        super().__init__()
        self.encoder = encoder
        width = encoder.config.feature_width
        self.head = nn.Sequential(nn.Linear(width, hidden), Mish(), nn.Linear(hidden, 1))

    def forward(self, batch: Batch) -> torch.Tensor:
        """(C, 1) the standardised prediction for each crystal of ``batch``."""
        return self.head(self.encoder.represent(batch))


class DIMRegressor(RegressorMixin, BaseEstimator):
    """A Site-Net regressor started from Deep InfoMax weights (or from random ones) and fine-tuned.

    X is a list, Series, array or one-column DataFrame of pymatgen ``Structure``; y in the target's
    own unit (e.g. eV/atom). A validation part of the training data decides when to stop; nothing
    else is seen.

    Args:
        weights, revision, cache_dir, readout, max_atoms, oxidation, max_sites, n_jobs, device,
        compile_network:
            as for :class:`DeepInfoMaxFeaturizer` (the encoder's source, encoding and readout).
        init: ``"pretrained"`` starts from the weights; ``"random"`` from the same architecture and
            standardisation with seeded random weights (the paper's control).
        batch_sites: most unique sites per training batch (the paper used 400 for small label sets);
            prediction batches hold at least 1200.
        max_epochs: most passes over the training part.
        patience: stop after this many epochs without a better validation MAE.
        validation_fraction: share of the given crystals held out for early stopping (at least 1).
        lr: AdamW learning rate of the encoder.
        head_lr: AdamW learning rate of the new head.
        weight_decay: AdamW weight decay.
        loss: ``"l1"`` or ``"mse"`` on the standardised target.
        seed: seeds the validation split, batch order, head and (``init="random"``) encoder.
        ignore_errors: ``predict`` gives NaN for a structure it cannot encode instead of raising.
            ``fit`` always refuses one, naming it.
        pbar: progress bars while predicting.
        verbose: 0 is silent; 1 prints one line per epoch while fitting (epoch, training loss, validation
            MAE in the target's unit, seconds, and the most seconds left if the MAE does not improve again),
            scikit-learn's convention.

    Learned state: ``net_`` (encoder and head), ``runner_`` (the inference core running it), ``y_mean_``, ``y_scale_``,
    ``history_`` (one dict per epoch), ``best_epoch_``, ``n_train_``, ``n_validation_``.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        revision: str | None = None,
        init: str = "pretrained",
        readout: str | None = None,
        device: str = "auto",
        batch_sites: int = 400,
        max_epochs: int = 300,
        patience: int = 20,
        validation_fraction: float = 0.2,
        lr: float = 1e-4,
        head_lr: float = 1e-3,
        weight_decay: float = 1e-4,
        loss: str = "l1",
        seed: int = 0,
        ignore_errors: bool = False,
        max_atoms: int | None = None,
        oxidation: str | None = None,
        max_sites: int | None = None,
        n_jobs: int = 1,
        pbar: bool = False,
        cache_dir: str | os.PathLike | None = None,
        verbose: int = 0,
        compile_network: bool = False,
    ) -> None:
        self.weights, self.revision, self.init, self.readout, self.device = weights, revision, init, readout, device
        self.batch_sites, self.max_epochs, self.patience = batch_sites, max_epochs, patience
        self.validation_fraction, self.lr, self.head_lr = validation_fraction, lr, head_lr
        self.weight_decay, self.loss, self.seed, self.n_jobs = weight_decay, loss, seed, n_jobs
        self.ignore_errors, self.pbar, self.cache_dir = ignore_errors, pbar, cache_dir
        self.max_atoms, self.oxidation, self.max_sites = max_atoms, oxidation, max_sites
        self.verbose, self.compile_network = verbose, compile_network

    # -- scikit-learn API ------------------------------------------------------
    def fit(self, X: Any, y: Any) -> DIMRegressor:
        """Fine-tune on structures ``X`` and targets ``y``; returns self.

        Raises:
            FeaturizationError: a structure that cannot be encoded, named by position, id and formula.
            ValueError: bad options, lengths that differ, a non-finite target (named), fewer than 2 crystals.
        """
        self._check_options()
        items, keys = check_entries(X), entry_keys(X)
        target = check_targets(y, len(items), keys)
        runner = self._runner()
        encoded, errors = runner.encode(items)
        name_errors(errors, items, 0, keys)
        encoder = runner.model
        if self.init == "random":
            encoder = untrained_encoder(encoder.config, seed=self.seed).to(runner.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = RegressionNet(encoder).to(runner.device)
        train_idx, val_idx = validation_split(len(items), self.validation_fraction, self.seed)
        self.y_mean_ = float(target[train_idx].mean())
        self.y_scale_ = float(target[train_idx].std()) or 1.0
        standard = (target - self.y_mean_) / self.y_scale_
        self.history_, self.best_epoch_ = self._train(net, encoded, standard, train_idx, val_idx, runner.device)
        self.n_train_, self.n_validation_ = len(train_idx), len(val_idx)
        self.net_, self.runner_ = net.eval(), runner.with_model(net.encoder)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """(n,) predictions in the target's unit; NaN for an unencodable structure under ``ignore_errors``.

        Raises:
            FeaturizationError: (without ``ignore_errors``) the first bad structure, named.
        """
        check_is_fitted(self, "net_")
        self.runner_.n_jobs = self.n_jobs
        values, _ = self.runner_.run(
            check_entries(X), entry_keys(X), self.ignore_errors, self.pbar, forward=self.net_, width=1
        )
        return values[:, 0] * self.y_scale_ + self.y_mean_

    def predict_encoded(self, encoded: list[EncodedCrystal]) -> np.ndarray:
        """Predictions for crystals encoded beforehand with ``runner_.encode`` (the benchmark encodes its test
        set once for every fit); NaN where the network fails."""
        check_is_fitted(self, "net_")
        vectors = self.runner_.forward(encoded, [None] * len(encoded), self.net_)
        return np.array([np.nan if v is None else v[0] for v in vectors]) * self.y_scale_ + self.y_mean_

    def plot_history(self, ax: Any = None) -> Any:
        """Plot the training loss and the validation MAE by epoch, marking the kept epoch.

        Args:
            ax: a matplotlib Axes (None: a new figure).

        Returns:
            The Axes (validation MAE on the left axis, in the target's unit; training loss, on the
            standardised target, on a twin axis).
        """
        check_is_fitted(self, "net_")
        try:
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError("plot_history needs matplotlib: pip install 'dim_featurizer[bench]'") from e
        ax = ax if ax is not None else plt.subplots(figsize=(6, 4))[1]
        epochs = [row["epoch"] for row in self.history_]
        ax.plot(epochs, [row["val_mae"] for row in self.history_], "o-", ms=3, label="validation MAE")
        ax.axvline(self.best_epoch_, color="grey", ls=":", label=f"kept epoch {self.best_epoch_}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation MAE")
        twin = ax.twinx()
        twin.plot(epochs, [row["train_loss"] for row in self.history_], "s--", ms=3, color="C1", label="training loss")
        twin.set_ylabel("training loss (standardised)")
        ax.legend(loc="upper right")
        return ax

    # -- persistence ------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write a fitted model as ``model.safetensors`` plus ``regressor.json``; returns the folder."""
        check_is_fitted(self, "net_")
        folder = Path(directory)
        state = _state(self.net_)
        write_atomically(folder / STATE_NAME, lambda target: save_file(state, str(target)))
        write_json(folder / CONFIG_NAME, self._record())
        return folder

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> DIMRegressor:
        """Read a model written by :meth:`save` (safetensors only; no pickle is read)."""
        folder = Path(directory)
        record = json.loads((folder / CONFIG_NAME).read_text())
        params = record["params"] | ({"device": device} if device is not None else {})
        model = cls(**params)
        model._restore(record, load_file(str(folder / STATE_NAME)))
        return model

    def __getstate__(self) -> dict:
        # The weights travel as safetensors bytes, never as pickled tensors.
        state = {k: v for k, v in self.__dict__.items() if k not in ("net_", "runner_")}
        if getattr(self, "net_", None) is not None:
            state["_fitted"] = (self._record(), save(_state(self.net_)))
        return state

    def __setstate__(self, state: dict) -> None:
        fitted = state.pop("_fitted", None)
        self.__dict__.update(state)
        if fitted is not None:
            self._restore(fitted[0], load(fitted[1]))

    # -- internals -------------------------------------------------------------
    def _check_options(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")

    def _runner(self) -> Runner:
        """The inference core with this regressor's options of the same names (weights, device, encoding...)."""
        options = {name: getattr(self, name) for name in LOAD_OPTIONS}
        options["batch_sites"] = max(self.batch_sites, INFERENCE_BATCH_SITES)
        return Runner.load(**options)

    def _train(
        self,
        net: RegressionNet,
        encoded: list,
        target: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        device: torch.device,
    ) -> tuple[list[dict[str, float]], int]:
        """Fit ``net`` on the training part; keep the epoch with the lowest validation MAE. Returns
        (history, best epoch)."""
        optimiser = torch.optim.AdamW(
            [
                {"params": net.encoder.parameters(), "lr": self.lr},
                {"params": net.head.parameters(), "lr": self.head_lr},
            ],
            weight_decay=self.weight_decay,
        )
        criterion = nn.L1Loss() if self.loss == "l1" else nn.MSELoss()
        n_sites = np.array([c.n_sites for c in encoded])
        y = torch.tensor(target, dtype=torch.float32, device=device)
        # The validation batches never change: collated once, not every epoch.
        validation = [
            (collate([encoded[i] for i in val_idx[b]]).to(device), y[val_idx[b]])
            for b in plan_batches(n_sites[val_idx].tolist(), self.batch_sites)
        ]
        history, best, best_epoch, best_state = [], np.inf, 0, _state(net)
        for epoch in range(1, self.max_epochs + 1):
            start, net = time.perf_counter(), net.train()
            order = np.random.default_rng([self.seed, epoch]).permutation(train_idx)
            total = 0.0
            for batch in plan_batches(n_sites[order].tolist(), self.batch_sites):
                members = order[batch]
                optimiser.zero_grad(set_to_none=True)
                loss = criterion(net(collate([encoded[i] for i in members]).to(device))[:, 0], y[members])
                loss.backward()
                optimiser.step()
                total += loss.item() * len(members)
            net.eval()
            with torch.no_grad():
                errors = [(net(batch)[:, 0] - truth).abs().sum() for batch, truth in validation]
            val_mae = float(sum(errors)) / len(val_idx) * self.y_scale_
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total / len(train_idx),
                    "val_mae": val_mae,
                    "seconds": time.perf_counter() - start,
                }
            )
            improved = val_mae < best
            if improved:
                best, best_epoch, best_state = val_mae, epoch, _state(net)
            if self.verbose:
                row = history[-1]
                # Without a further gain the fit stops after `patience` epochs: an upper bound until the next one.
                left = min(self.max_epochs - epoch, self.patience - (epoch - best_epoch))
                mean = sum(h["seconds"] for h in history) / len(history)
                print(
                    f"epoch {epoch}/{self.max_epochs}: training loss {row['train_loss']:.4f}, "
                    f"validation MAE {val_mae:.4g}, {row['seconds']:.1f} s"
                    + (" (best)" if improved else "")
                    + f"; at most {left * mean:.0f} s left unless it improves",
                    flush=True,
                )
            if not improved and epoch - best_epoch >= self.patience:
                break
        net.load_state_dict(best_state)
        return history, best_epoch

    def _record(self) -> dict[str, Any]:
        """Everything but the weights, as JSON-ready data."""
        return {
            "params": {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in self.get_params().items()},
            "encoder": self.net_.encoder.config.as_dict(),
            "encoding": self.runner_.encoding.as_dict(),
            "weights_info": self.runner_.info.as_dict(),
            "y_mean": self.y_mean_,
            "y_scale": self.y_scale_,
            "best_epoch": self.best_epoch_,
            "n_train": self.n_train_,
            "n_validation": self.n_validation_,
            "history": self.history_,
        }

    def _restore(self, record: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        net = RegressionNet(SiteNetEncoder(ModelConfig.from_dict(record["encoder"])))
        net.load_state_dict(state)
        device = resolve_device(self.device)
        encoding, info = EncodingConfig.from_dict(record["encoding"]), WeightsInfo.from_dict(record["weights_info"])
        batch_sites = max(self.batch_sites, INFERENCE_BATCH_SITES)
        self.net_ = net.to(device).eval()
        self.runner_ = Runner(net.encoder, encoding, device, info, batch_sites, self.n_jobs, self.compile_network)
        self.y_mean_, self.y_scale_ = record["y_mean"], record["y_scale"]
        self.best_epoch_, self.history_ = record["best_epoch"], record["history"]
        self.n_train_, self.n_validation_ = record["n_train"], record["n_validation"]


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the weights (contiguous, as safetensors needs)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}


__all__ = ["DIMRegressor", "RegressionNet"]
