"""Label-free diagnostics of a run on its validation set.

Which false samples the discriminators can tell apart (JS terms per sample
kind), and how many independent directions the feature vectors span
compared with the untrained network.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import torch

from dim_featurizer.encoding import EncodedCrystal
from dim_featurizer.model import untrained_encoder

from .build import RunSetup
from .samples import column_species, false_permutation, site_species

LOCAL_KINDS = ("other environment", "false geometry", "false composition")
GLOBAL_KINDS = ("other crystal", "false polymorph", "false composition", "false permutation")
#: The global kind added by ``TrainConfig.vacancies``.
VACANCY_KIND = "false vacancy"
#: The JS term of a score T = 0, i.e. a discriminator that cannot tell.
CHANCE = math.log(2)


def participation_ratio(features: np.ndarray) -> float:
    """Effective number of independent directions of standardised feature columns.

    (Σλ)² / Σλ² over the eigenvalues λ of the correlation matrix: 1 when
    every column is a copy of one direction, the number of columns when they
    are uncorrelated. Constant columns are dropped. Standardising first
    matches what the benchmark's models see.
    """
    x = features[:, features.std(axis=0) > 1e-9]
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False))
    return float(eigenvalues.sum() ** 2 / (eigenvalues**2).sum())


@torch.no_grad()
def false_sample_terms(setup: RunSetup) -> tuple[pd.DataFrame, dict[str, float]]:
    """Mean JS term per level and sample kind over the validation set, with the setup's current networks.

    The terms are softplus(−T) for real samples and softplus(T) for false
    ones, with the same false samples and noise as the validation loss.
    log 2 ≈ 0.693 is chance; lower means the kind is recognised. Local terms
    are averaged over real (site, neighbour) pairs, global terms over crystals
    (false samples whose species equal the real crystal's are skipped, as in
    training).

    Args:
        setup: a run's model and data, typically after ``load_model_state``.

    Returns:
        One row per (level, sample) with ``mean_term``, ``vs_chance`` (term / log 2)
        and ``count``; and the participation ratio of the validation crystals'
        feature vectors (global μ), for this encoder and the seeded untrained one.
    """
    model = setup.model
    control = untrained_encoder().to(setup.device).eval()
    vectors: dict[str, list[np.ndarray]] = {"trained": [], "untrained": []}
    model.eval()
    sums: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for batch, rng in setup.validation_batches():
        sample, generator = setup.sample(batch, rng)
        local_mu, local_logvar = model.encoder.local(sample.real)
        true, false, mask = model.local_terms(sample, local_mu, local_logvar, generator)
        mask = mask.to(true.dtype)
        for kind, term in zip(("real", *LOCAL_KINDS), [true, *false]):
            sums["local", kind] += float((term * mask).sum())
            counts["local", kind] += float(mask.sum())
        true, false, weights, mu, _ = model.global_terms(sample, local_mu, generator)
        vectors["trained"].append(mu.float().cpu().numpy())
        vectors["untrained"].append(control.embed(sample.real).float().cpu().numpy())
        sums["global", "real"] += float(true.sum())
        counts["global", "real"] += len(true)
        kinds = (*GLOBAL_KINDS, VACANCY_KIND) if setup.config.vacancies else GLOBAL_KINDS
        for kind, term, weight in zip(kinds[: len(false)], false, weights, strict=True):
            sums["global", kind] += float((term * weight).sum())
            counts["global", kind] += float(weight.sum())
    model.train()
    rows = [
        {"level": level, "sample": kind, "mean_term": sums[level, kind] / n, "count": int(n)}
        for (level, kind), n in counts.items()
    ]
    frame = pd.DataFrame(rows)
    frame["vs_chance"] = frame["mean_term"] / CHANCE
    return frame, {name: participation_ratio(np.concatenate(v)) for name, v in vectors.items()}


def _environments(crystal: EncodedCrystal, species: np.ndarray) -> np.ndarray:
    """Each row's (own species, sorted neighbour keys) with rows sorted: the crystal as the local encoder sees it.

    ``species`` holds an integer id per unique site; distances are compared to 0.001 Å.
    """
    distances = np.rint(crystal.distances.astype(np.float64) * 1000).astype(np.int64)
    keys = np.sort(distances * 4096 + species[crystal.image_of][None, :], axis=1)
    rows = np.c_[species, keys]
    return rows[np.lexsort(rows.T[::-1])]


def same_environments(a: EncodedCrystal, b: EncodedCrystal) -> bool:
    """True when two encodings of one geometry hold the same multiset of environments (so every score ties)."""
    _, ids = np.unique(np.r_[site_species(a), site_species(b)], axis=0, return_inverse=True)
    ids = ids.ravel()
    return a.distances.shape == b.distances.shape and np.array_equal(
        _environments(a, ids[: a.n_sites]), _environments(b, ids[a.n_sites :])
    )


def permutation_copies(setup: RunSetup, seed: int = 0) -> dict[str, int]:
    """How many validation crystals' false permutations are, as the encoder sees them, the crystal itself.

    Returns:
        ``crystals``; ``unchanged`` (the permutation left the species array
        as it was: masked in training); ``copies`` (a changed species array
        with the same multiset of environments, e.g. swapping the two sites of
        rock salt: unlearnable, not masked); ``distinct`` (the rest).
    """
    rng = np.random.default_rng(seed)
    counts = {"crystals": 0, "unchanged": 0, "copies": 0, "distinct": 0}
    for index in setup.val_idx:
        crystal = setup.dataset.crystal(int(index))
        permuted = false_permutation(crystal, rng, setup.config.permutation)
        counts["crystals"] += 1
        if np.array_equal(column_species(crystal), column_species(permuted)):
            counts["unchanged"] += 1
        else:
            counts["copies" if same_environments(crystal, permuted) else "distinct"] += 1
    return counts
