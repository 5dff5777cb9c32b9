"""False samples for Deep InfoMax (docs/method.md §3), built per crystal, never by rolling the batch.

Every crystal gets its own donors and its own species permutation, drawn from
a numpy ``Generator`` the caller seeds, and every index or mask produced here
belongs to the row it is stored in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dim_featurizer.batching import Batch, collate
from dim_featurizer.encoding import EncodedCrystal

from .cache import EncodedDataset


@dataclass
class TrainingSample:
    """One step's real batch and its false samples.

    Attributes:
        real: the crystals themselves.
        polymorph: crystal c's own species on another crystal's geometry (same order as ``real``).
        composition: crystal c's own geometry with another crystal's species.
        permutation: crystal c's own geometry and species, species permuted among its sites.
        valid: (3, C) bool, whether each of the three is really different from crystal c (4, C with
            ``vacancy``).
        other_crystal: (C,) the crystal (in ``real``) whose environments are c's "other crystal" samples;
            never c itself.
        donor_row: (N,) for each real row, a row of another crystal (local "other environment" donor).
        donor_col: (N, M) for each real pair, a valid column of ``donor_row``.
        vacancy: crystal c with one supercell atom removed (a harder false crystal), or None when off.
    """

    real: Batch
    polymorph: Batch
    composition: Batch
    permutation: Batch
    valid: torch.Tensor
    other_crystal: torch.Tensor
    donor_row: torch.Tensor
    donor_col: torch.Tensor
    vacancy: Batch | None = None

    def to(self, device: torch.device | str) -> TrainingSample:
        """Return a copy on ``device``."""
        return TrainingSample(
            *(v.to(device) for v in (self.real, self.polymorph, self.composition, self.permutation)),
            *(v.to(device) for v in (self.valid, self.other_crystal, self.donor_row, self.donor_col)),
            vacancy=None if self.vacancy is None else self.vacancy.to(device),
        )

    def false_crystals(self) -> list[Batch]:
        """The synthetic false crystals, in the order of ``valid``'s rows."""
        kinds = [self.polymorph, self.composition, self.permutation]
        return kinds if self.vacancy is None else [*kinds, self.vacancy]


def site_species(crystal: EncodedCrystal) -> np.ndarray:
    """(n, 2) atomic number and oxidation state per site: what defines a species."""
    return crystal.site_features[:, [0, 8]]


def _same_multiset(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the two (n, 2) species lists hold the same rows, in any order."""
    return a.shape == b.shape and np.array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)])


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random map i → other[i] that is a permutation with no fixed point (n ≥ 2)."""
    if n < 2:
        raise ValueError("false samples need at least two crystals in a batch")
    order = rng.permutation(n)
    other = np.empty(n, dtype=np.int64)
    other[order] = np.roll(order, -1)
    return other


class SizeIndex:
    """Dataset indices grouped by unique-site count, to draw donors of the same size."""

    def __init__(self, n_sites: np.ndarray) -> None:
        self.n_sites = np.asarray(n_sites)
        self.sizes = np.unique(self.n_sites)
        self.groups = {int(s): np.flatnonzero(self.n_sites == s) for s in self.sizes}

    def donor(self, index: int, rng: np.random.Generator) -> int:
        """A random crystal other than ``index`` with the same site count (the nearest count if none)."""
        size = int(self.n_sites[index])
        group = self.groups[size]
        if len(group) >= 2:
            pick = int(group[rng.integers(len(group) - 1)])
            return int(group[-1]) if pick == index else pick  # uniform over the group without index
        others = self.sizes[self.sizes != size]
        if len(others) == 0:
            raise ValueError("the dataset needs at least two crystals")
        group = self.groups[int(others[np.argmin(np.abs(others - size))])]
        return int(group[rng.integers(len(group))])


def false_polymorph(own: EncodedCrystal, donor: EncodedCrystal, rng: np.random.Generator) -> EncodedCrystal:
    """Own species on the donor's geometry; the composition is kept exactly when sizes match."""
    n_donor = donor.n_sites
    order = rng.permutation(own.n_sites)
    take = order[np.arange(n_donor) % own.n_sites]
    return EncodedCrystal(own.site_features[take], donor.distances, donor.image_of, donor.repeats)


def false_composition(own: EncodedCrystal, donor: EncodedCrystal, rng: np.random.Generator) -> EncodedCrystal:
    """Own geometry with the donor's species, randomly assigned to the sites."""
    order = rng.permutation(donor.n_sites)
    take = order[np.arange(own.n_sites) % donor.n_sites]
    return EncodedCrystal(donor.site_features[take], own.distances, own.image_of, own.repeats)


def false_permutation(own: EncodedCrystal, rng: np.random.Generator, over: str = "sites") -> EncodedCrystal:
    """Own geometry and composition with the species shuffled.

    Args:
        own: the crystal.
        rng: the draw.
        over: ``"sites"`` permutes species among the primitive sites;
            ``"supercell"`` permutes which site each supercell atom copies,
            over every atom but the unique sites themselves (columns 0..n-1,
            each row's own centre), which breaks the supercell's periodicity
            as the authors' code does. A cell without repeats has nothing to
            permute and comes back unchanged (masked as invalid).
    """
    if over == "sites":
        return EncodedCrystal(own.site_features[rng.permutation(own.n_sites)], own.distances, own.image_of, own.repeats)
    order = np.arange(own.n_atoms)
    order[own.n_sites :] = own.n_sites + rng.permutation(own.n_atoms - own.n_sites)
    return EncodedCrystal(own.site_features, own.distances, own.image_of[order], own.repeats)


def false_vacancy(own: EncodedCrystal, rng: np.random.Generator) -> EncodedCrystal:
    """Own crystal with one supercell atom removed: a random image atom (never a unique site, each row's own
    centre), so one neighbour is missing from the environments that held it. A cell without image atoms has
    none to remove and comes back unchanged (masked as invalid)."""
    if own.n_atoms <= own.n_sites:
        return own
    keep = np.delete(np.arange(own.n_atoms), int(rng.integers(own.n_sites, own.n_atoms)))
    return EncodedCrystal(own.site_features, own.distances[:, keep], own.image_of[keep], own.repeats)


def column_species(crystal: EncodedCrystal) -> np.ndarray:
    """(m, 2) the species of each supercell atom (column)."""
    return site_species(crystal)[crystal.image_of]


def make_sample(
    dataset: EncodedDataset,
    sizes: SizeIndex,
    indices: np.ndarray,
    rng: np.random.Generator,
    permutation: str = "sites",
    vacancies: bool = False,
) -> TrainingSample:
    """Build the real batch for dataset ``indices`` and every false sample, all from ``rng``.

    ``permutation`` is how false permutations are drawn (:func:`false_permutation`); ``vacancies`` adds a
    false vacancy per crystal (:func:`false_vacancy`), drawn after everything else so that the other draws
    are those of a run without it.
    """
    crystals = dataset.subset(indices)
    polymorphs, compositions, permutations, valid = [], [], [], []
    for index, own in zip(indices, crystals):
        poly = false_polymorph(own, dataset.crystal(sizes.donor(int(index), rng)), rng)
        donor = dataset.crystal(sizes.donor(int(index), rng))
        comp = false_composition(own, donor, rng)
        perm = false_permutation(own, rng, permutation)
        own_species = site_species(own)
        valid.append(
            [
                True,  # another geometry (its distance matrix differs) with own species
                not _same_multiset(site_species(comp), own_species),
                bool(np.any(column_species(perm) != column_species(own))),
            ]
        )
        polymorphs.append(poly)
        compositions.append(comp)
        permutations.append(perm)
    real = collate(crystals)
    n_sites = np.array([c.n_sites for c in crystals])
    n_atoms = np.array([c.n_atoms for c in crystals])
    starts = np.concatenate([[0], np.cumsum(n_sites)[:-1]])
    other = derangement(len(crystals), rng)
    # Local donors: for each row, a random row of its crystal's "other" crystal...
    row_crystal = real.crystal_index.numpy()
    donor_crystal = other[row_crystal]
    donor_row = starts[donor_crystal] + (rng.random(len(row_crystal)) * n_sites[donor_crystal]).astype(np.int64)
    # ...and for each of the row's pairs, a random valid column of that donor row.
    width = real.distances.shape[1]
    donor_col = (rng.random((len(row_crystal), width)) * n_atoms[donor_crystal][:, None]).astype(np.int64)
    vacancy = None
    if vacancies:
        holes = [false_vacancy(own, rng) for own in crystals]
        vacancy = collate(holes)
        valid = [row + [hole is not own] for row, hole, own in zip(valid, holes, crystals)]
    return TrainingSample(
        real=real,
        polymorph=collate(polymorphs),
        composition=collate(compositions),
        permutation=collate(permutations),
        valid=torch.from_numpy(np.array(valid, dtype=bool).T.copy()),
        other_crystal=torch.from_numpy(other),
        donor_row=torch.from_numpy(donor_row),
        donor_col=torch.from_numpy(donor_col),
        vacancy=vacancy,
    )
