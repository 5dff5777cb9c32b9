"""Pretraining hyper-parameters: a plain, serialisable dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """Pretraining hyper-parameters (none chosen by looking at a label).

    Attributes:
        epochs: most epochs.
        lr: AdamW learning rate (the paper's 8.12e-4).
        weight_decay: AdamW weight decay.
        batch_sites: unique sites per batch (the paper's 1,200).
        val_fraction: share of the training ids held out for validation.
        seed: seeds the split, the order, every false sample and the noise.
        alpha, beta: JS and KL weights (1, 0.1).
        only_other: the Fig. 11 ablation: only "other" false samples.
        patience: stop after this many epochs without a validation gain of ``min_delta``.
        min_delta: the smallest validation-loss fall that counts as a gain.
        checkpoint_every: steps between checkpoints within an epoch.
        grad_clip: gradient-norm clip.
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        model: the encoder's ModelConfig as a dict (standardisation is filled from the data).
    """

    epochs: int = 40
    lr: float = 8.12e-4
    weight_decay: float = 0.01
    batch_sites: int = 1200
    val_fraction: float = 0.05
    seed: int = 0
    alpha: float = 1.0
    beta: float = 0.1
    only_other: bool = False
    patience: int = 4
    min_delta: float = 1e-3
    checkpoint_every: int = 50
    grad_clip: float = 5.0
    amp: bool = True
    model: dict = field(default_factory=dict)
