"""Seeded draws shared by pretraining, fine-tuning and the benchmarks: a validation split and labelled subsets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def validation_split(n: int, fraction: float, seed: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) positions over ``n`` items, each sorted; at least one of each when ``n > 1``.

    Args:
        n: number of items.
        fraction: share held out for validation (rounded; at least 1, at most ``n - 1``).
        seed: an int, or a list of ints (a ``SeedSequence`` entropy, e.g. ``[seed, stream]``).
    """
    order = np.random.default_rng(np.random.SeedSequence(seed)).permutation(n)
    n_val = min(max(1, int(round(n * fraction))), max(n - 1, 1))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def draw_subsets(
    pool_size: int, budgets: Sequence[int], draws: int, seed: int = 0
) -> dict[tuple[int, int], np.ndarray]:
    """Seeded labelled subsets: ``{(budget, draw): sorted pool positions}``.

    Draw ``d`` at budget ``b`` depends on ``(seed, b, d)`` only, so asking for more draws or budgets
    extends a run without changing the draws it already made.
    """
    out = {}
    for budget in budgets:
        for draw in range(draws):
            rng = np.random.default_rng(np.random.SeedSequence([seed, budget, draw]))
            out[budget, draw] = np.sort(rng.choice(pool_size, size=min(budget, pool_size), replace=False))
    return out
