"""Group encoded crystals into padded batches bounded by a unique-site budget (docs/method.md §1.7)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from dim_featurizer.encoding import EncodedCrystal


@dataclass
class Batch:
    """Padded tensors for a list of crystals; N unique sites in all, M the widest supercell.

    Attributes:
        site_features: (N, 9) float32 raw site features.
        distances: (N, M) float32 distances, Å (0 in padding).
        mask: (N, M) bool, True for real (site, atom) pairs.
        neighbor_index: (N, M) int64 row (in this batch) of the unique site
            that atom j is an image of; padding points at the row itself.
        crystal_index: (N,) int64 crystal each row belongs to.
        n_crystals: number of crystals.
    """

    site_features: torch.Tensor
    distances: torch.Tensor
    mask: torch.Tensor
    neighbor_index: torch.Tensor
    crystal_index: torch.Tensor
    n_crystals: int

    def to(self, device: torch.device | str) -> Batch:
        """Return a copy with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device, non_blocking=True)
        return Batch(**moved)


def collate(crystals: Sequence[EncodedCrystal]) -> Batch:
    """Pad and stack crystals into one :class:`Batch` (crystal order is kept)."""
    n_sites = np.array([c.n_sites for c in crystals], dtype=np.int64)
    n_atoms = np.array([c.n_atoms for c in crystals], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_sites)[:-1]])
    total, width = int(n_sites.sum()), int(n_atoms.max())
    distances = np.zeros((total, width), dtype=np.float32)
    neighbor = np.repeat(np.arange(total, dtype=np.int64)[:, None], width, axis=1)
    # One copy per crystal (not per atom): each block is a contiguous slab.
    for c, start in zip(crystals, offsets):
        rows = slice(start, start + c.n_sites)
        distances[rows, : c.n_atoms] = c.distances
        neighbor[rows, : c.n_atoms] = start + c.image_of[None, :]
    mask = np.arange(width)[None, :] < np.repeat(n_atoms, n_sites)[:, None]
    return Batch(
        site_features=torch.from_numpy(np.concatenate([c.site_features for c in crystals])),
        distances=torch.from_numpy(distances),
        mask=torch.from_numpy(mask),
        neighbor_index=torch.from_numpy(neighbor),
        crystal_index=torch.from_numpy(np.repeat(np.arange(len(crystals)), n_sites)),
        n_crystals=len(crystals),
    )


def plan_batches(n_sites: Sequence[int], budget: int, widths: Sequence[int] | None = None) -> list[list[int]]:
    """Split items into batches whose unique-site counts sum to at most ``budget``.

    Args:
        n_sites: unique sites of each item.
        budget: most unique sites per batch; an item larger than the budget
            gets a batch of its own.
        widths: optional supercell sizes; items are then grouped by width so
            that batches carry little padding.

    Returns:
        Lists of item indices; every index appears exactly once.
    """
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    order = np.argsort(np.asarray(widths), kind="stable") if widths is not None else np.arange(len(n_sites))
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order.tolist():
        if current and used + n_sites[i] > budget:
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += n_sites[i]
    if current:
        batches.append(current)
    return batches
