"""Build what a run trains from the data: the validation split, the model config, the seeded model.

Kept apart from the loop so that anything that scores a checkpoint
(``dim-train diagnose``) builds the same model without a Trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from dim_featurizer.batching import plan_batches
from dim_featurizer.config import ModelConfig
from dim_featurizer.devices import resolve_device
from dim_featurizer.encoding import EncodingConfig
from dim_featurizer.model import SiteNetEncoder
from dim_featurizer.sampling import validation_split

from .cache import EncodedDataset
from .config import TrainConfig
from .objective import DeepInfoMax
from .samples import SizeIndex, TrainingSample, make_sample

#: The TrainConfig fields that shape the objective, passed to DeepInfoMax under the same names.
OBJECTIVE_OPTIONS = (
    "alpha",
    "beta",
    "only_other",
    "local_weighting",
    "reconstruction",
    "local_sample",
    "masked_sites",
    "jitter",
    "shell_reconstruction",
    "element_reconstruction",
)
#: Seed-sequence key of the validation split and validation draws, apart from any epoch number.
VAL_STREAM = 1_000_003


def step_rng(seed: int, epoch: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator of one step's draws."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, step, rank]))


def epoch_batches(n_sites: np.ndarray, indices: np.ndarray, budget: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffle ``indices`` for ``epoch`` and cut them into site-budget batches of at least two crystals."""
    order = np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(indices)
    batches = [order[b] for b in plan_batches(n_sites[order].tolist(), budget)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # a lone crystal has no "other" to contrast with
        last = batches.pop()  # popped first: popping inside the assignment would overwrite the wrong batch
        batches[-1] = np.concatenate([batches[-1], last])
    return batches


def standardisation(dataset: EncodedDataset, indices: np.ndarray) -> dict[str, Any]:
    """Site-feature and distance mean/std over the training crystals (constant columns get std 1)."""
    sites = np.concatenate([dataset.crystal(int(i)).site_features for i in indices])
    distances = np.concatenate([dataset.crystal(int(i)).distances.ravel() for i in indices])
    std = sites.std(axis=0)
    return {
        "feature_mean": sites.mean(axis=0).tolist(),
        "feature_std": np.where(std > 1e-6, std, 1.0).tolist(),
        "distance_mean": float(distances.mean()),
        "distance_std": float(distances.std()),
    }


def model_config(dataset: EncodedDataset, train_idx: np.ndarray, config: TrainConfig, encoding: EncodingConfig):
    """The encoder's ModelConfig: ``config.model`` plus the training crystals' standardisation and the encoding."""
    if not np.any(dataset.site_features[:, 8]):
        # The training structures carry no oxidation states: record that the model ignores them.
        encoding = replace(encoding, oxidation="zero")
    return ModelConfig.from_dict(
        {**config.model, **standardisation(dataset, train_idx), "encoding": encoding.as_dict()}
    )


def build_model(model_config: ModelConfig, config: TrainConfig) -> DeepInfoMax:
    """The seeded encoder and score networks (the global RNG state is left untouched)."""
    options = {name: getattr(config, name) for name in OBJECTIVE_OPTIONS}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return DeepInfoMax(SiteNetEncoder(model_config), **options)


@dataclass
class RunSetup:
    """Everything a run's steps draw on: the model, the data, the split, the device.

    Attributes:
        model: the DeepInfoMax model, on ``device``.
        dataset: the encoded crystals.
        train_idx, val_idx: the seeded split of ``dataset``.
        config: the hyper-parameters.
        device: where the model lives.
    """

    model: DeepInfoMax
    dataset: EncodedDataset
    train_idx: np.ndarray
    val_idx: np.ndarray
    config: TrainConfig
    device: torch.device
    sizes: SizeIndex = field(init=False)

    def __post_init__(self) -> None:
        self.sizes = SizeIndex(self.dataset.n_sites)

    def sample(self, indices: np.ndarray, rng: np.random.Generator) -> tuple[TrainingSample, torch.Generator]:
        """The real batch of crystals ``indices`` with its false samples, and the noise generator, from ``rng``."""
        config = self.config
        sample = make_sample(self.dataset, self.sizes, indices, rng, config.permutation, config.vacancies)
        sample = sample.to(self.device)
        return sample, torch.Generator(self.device).manual_seed(int(rng.integers(2**62)))

    def validation_batches(self) -> list[tuple[np.ndarray, np.random.Generator]]:
        """The validation batches and their generators: the same draws at every evaluation."""
        batches = epoch_batches(
            self.dataset.n_sites, self.val_idx, self.config.batch_sites, self.config.seed, VAL_STREAM
        )
        return [(batch, step_rng(self.config.seed, VAL_STREAM, i)) for i, batch in enumerate(batches)]

    def load_model_state(self, checkpoint: Any) -> dict:
        """Load a checkpoint's network weights (tensors only, no arbitrary pickle); returns its loop state."""
        import json

        blob = torch.load(checkpoint, map_location=self.device, weights_only=True)
        self.model.load_state_dict(blob["model"])
        return json.loads(blob["state"])


def build_setup(
    dataset: EncodedDataset, config: TrainConfig, encoding: EncodingConfig, device: str = "auto", rank: int = 0
) -> RunSetup:
    """Split ``dataset``, build the seeded model for it and move it to ``device`` (``"auto"``: CUDA when present)."""
    train_idx, val_idx = validation_split(len(dataset), config.val_fraction, [config.seed, VAL_STREAM])
    model = build_model(model_config(dataset, train_idx, config, encoding), config)
    resolved = resolve_device(device, rank)
    model = model.to(resolved)
    model.encoder.local.compile_pairs(config.compile, with_gradients=True)
    return RunSetup(model, dataset, train_idx, val_idx, config, resolved)
