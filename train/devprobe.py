"""The development probe: do a run's features predict properties of training-split crystals it never saw?

The only place where development reads property labels (docs/method.md §3.7),
and only labels of the split's training ids: labelled subsets are drawn
from the run's training crystals, and the error is measured on crystals of
the training split that the encoder never trained on (the run's validation
crystals, plus training-split crystals left out of a proxy run). A test id
is never read: asking for one is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.bench.protocol import fit_one
from dim_featurizer.model import SiteNetEncoder
from dim_featurizer.readers import read_frame, read_split

from .cache import cached_dataset
from .probes import collect

TARGETS = ("e_form", "gap")
READOUTS = ("global_mu", "pooled")


def probe_ids(setup, split: str | Path, n_score: int = 2000, seed: int = 0) -> tuple[list[str], list[str]]:
    """(ids to draw labelled subsets from, ids to score on), both from the split's training ids.

    The first are the run's training crystals; the second its validation
    crystals plus, up to ``n_score`` in all, training-split crystals the run
    was never given, drawn with ``seed``.
    """
    ids = np.asarray(setup.dataset.ids)
    pool, score = list(ids[setup.train_idx]), list(ids[setup.val_idx])
    offered = set(ids) | set(setup.dataset.excluded)
    unseen = [i for i in read_split(split)["train"] if i not in offered]
    extra = max(0, n_score - len(score))
    if extra and unseen:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        score += list(rng.choice(unseen, size=min(extra, len(unseen)), replace=False))
    return pool, score


def dev_probe(
    encoders: dict[str, SiteNetEncoder],
    setup,
    source: str | Path,
    split: str | Path,
    cache_dir: str | Path,
    budgets: Sequence[int] = (100, 1000),
    draws: int = 5,
    models: Sequence[str] = ("ridge", "mlp"),
    targets: Sequence[str] = TARGETS,
    readouts: Sequence[str] = READOUTS,
    n_score: int = 2000,
    seed: int = 0,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Fit every (encoder, readout, target, budget, draw, model) on training-split labels; MAE on unseen crystals.

    Args:
        encoders: name → encoder (e.g. kept, start, untrained); all see the same crystals and draws.
        setup: the run's :class:`~dim_featurizer.train.build.RunSetup`.
        source: the run's JSON frame (structures and label columns).
        split: the split file; only its ``train`` ids are read.
        cache_dir: the encoding cache.
        budgets, draws: labelled-subset sizes and seeded draws per size.
        models: kinds of :func:`dim_featurizer.bench.protocol.make_model`.
        targets: label columns.
        readouts: ``global_mu`` (μ_G) and/or ``pooled``.
        n_score: how many crystals to score on.
        seed: seeds the scoring crystals and the draws.
        n_jobs: parallel fits (joblib).

    Returns:
        One row per fit: encoder, readout, target, model, budget, draw, mae, n_score.
    """
    from joblib import Parallel, delayed

    pool_ids, score_ids = probe_ids(setup, split, n_score, seed)
    subsets = {}
    for budget in budgets:
        for draw in range(draws):
            rng = np.random.default_rng(np.random.SeedSequence([seed, budget, draw]))
            subsets[budget, draw] = rng.choice(len(pool_ids), size=min(budget, len(pool_ids)), replace=False)
    labelled = sorted({pool_ids[i] for rows in subsets.values() for i in rows})
    wanted = labelled + score_ids
    train_ids = set(read_split(split)["train"])
    if not set(wanted) <= train_ids:
        raise ValueError("the development probe reads labels of the split's training ids only")
    frame = read_frame(source, wanted)
    encoding = next(iter(encoders.values())).config.encoding
    dataset, _ = cached_dataset(frame["structure"], encoding, cache_dir, pbar=False)
    position = {key: i for i, key in enumerate(dataset.ids)}
    labelled = [i for i in labelled if i in position]
    score_ids = [i for i in score_ids if i in position]
    rows = np.array([position[i] for i in labelled + score_ids])
    n_lab = len(labelled)
    jobs, keys = [], []
    for name, encoder in encoders.items():
        data = collect(encoder.to(setup.device), dataset, rows, setup.config.batch_sites)
        for readout in readouts:
            x = data[readout]
            x = (x - x.mean(0)) / np.where(x.std(0) > 1e-9, x.std(0), 1.0)  # over every probe crystal: no label
            x_lab = pd.DataFrame(x[:n_lab], index=labelled)
            for target in targets:
                y_lab = frame.loc[labelled, target].to_numpy(float)
                y_score = frame.loc[score_ids, target].to_numpy(float)
                for (budget, draw), chosen in subsets.items():
                    members = [pool_ids[i] for i in chosen if pool_ids[i] in position]
                    at = x_lab.index.get_indexer(members)
                    for kind in models:
                        keys.append((name, readout, target, kind, budget, draw))
                        jobs.append(delayed(fit_one)(x[:n_lab][at], y_lab[at], x[n_lab:], y_score, kind, draw, False))
    maes = Parallel(n_jobs=n_jobs)(jobs)
    out = pd.DataFrame(keys, columns=["encoder", "readout", "target", "model", "budget", "draw"])
    out["mae"] = maes
    out["n_score"] = len(score_ids)
    return out


def dev_summary(fits: pd.DataFrame) -> pd.DataFrame:
    """Median MAE per target, model, budget and readout, one column per encoder."""
    keys = ["target", "model", "budget", "readout"]
    return fits.pivot_table(index=keys, columns="encoder", values="mae", aggfunc="median").reset_index()
