"""The leave-family-out probe: do a run's features carry over to crystal families its pretraining never saw?

The families (:mod:`dim_featurizer.bench.families`) are inside the mp2018 training split and are left out of
the run's pretraining (``dim-train fit --exclude-ids``). For each family, a seeded 20% of its crystals is
scored on; labelled subsets are drawn from the other 80%: RidgeCV at 250 labels (20 draws) and an MLP(64) at
1,000 labels (5 draws), the same subsets for every feature set (paired). The target is the formation
energy (eV/atom), a training-split label; a test id is never read. Matbench phonons (last phDOS peak,
cm⁻¹) is a second view: the benchmark's training fold only, split the same way.

Each feature set is scored against the run's own control, ``start``: its seeded initialisation, with the
run's architecture, input standardisation, encoding and readout (what ``untrained:<weights>`` is to
exported weights). Features are standardised over each family's crystals (no label).

``dim-bench probe --families runs/families/families.csv`` is the command (:mod:`.devprobe`); it writes
``familyprobe.csv`` (one row per fit, resumable per family and feature set) and ``familyprobe.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.model import SiteNetEncoder
from dim_featurizer.readers import read_frame, read_split
from dim_featurizer.sampling import draw_subsets

from .protocol import fit_one, standardise

#: Per model kind: (labelled crystals, draws).
PLAN = {"ridge": (250, 20), "mlp": (1000, 5)}
#: Share of each family scored on.
SCORE_FRACTION = 0.2
#: The control every feature set is divided by.
CONTROL = "start"
PHONONS = "phonons"
KEYS = ["family", "features", "model"]


def family_sets(
    families: pd.Series, source: str | Path, split: str | Path, phonons: str | Path | None = None
) -> dict[str, pd.DataFrame]:
    """Each family's crystals as a frame (``structure``, ``y``), plus the phonons training fold when given.

    Args:
        families: family name by id (``""`` or NaN: none); every id must be a training id of ``split``.
        source: the mp2018 frame (its ``e_form`` column is the target, eV/atom).
        split: the split file; only its ``train`` ids are read.
        phonons: the Matbench phonons frame, or None to leave that view out.

    Raises:
        ValueError: a family id outside the split's training ids.
    """
    from sklearn.model_selection import KFold

    from .tasks import MATBENCH_SEED

    members = families[families.fillna("") != ""]
    if not set(members.index) <= set(read_split(split)["train"]):
        raise ValueError("family ids must be training-split ids: the family probe never reads a test label")
    frame = read_frame(source, list(members.index))
    sets = {
        name: pd.DataFrame({"structure": frame.loc[ids.index, "structure"], "y": frame.loc[ids.index, "e_form"]})
        for name, ids in members.groupby(members, sort=False)
    }
    if phonons is not None:
        table = read_frame(phonons)
        train, _ = next(KFold(n_splits=5, shuffle=True, random_state=MATBENCH_SEED).split(table))
        pool = table.iloc[train]
        sets[PHONONS] = pd.DataFrame({"structure": pool["structure"], "y": pool["last phdos peak"]})
    return sets


def score_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pool positions, score positions): a seeded ``SCORE_FRACTION`` of ``n`` crystals is scored on."""
    order = np.random.default_rng(np.random.SeedSequence([seed, n, 20])).permutation(n)
    n_score = int(round(SCORE_FRACTION * n))
    return np.sort(order[n_score:]), np.sort(order[:n_score])


def feature_sets(readouts: dict[str, dict[str, np.ndarray]], combos: Sequence[str]) -> dict[str, np.ndarray]:
    """Name → (n, k) features: each encoder's μ_G by its own name, other readouts as ``encoder:readout``, and
    each combination ``a+b`` as the two μ_G side by side."""
    out = {}
    for encoder, values in readouts.items():
        for readout, x in values.items():
            out[encoder if readout == "global_mu" else f"{encoder}:{readout}"] = x
    for combo in combos:
        out[combo] = np.hstack([out[part] for part in combo.split("+")])
    return out


def family_probe(
    encoders: dict[str, SiteNetEncoder],
    sets: dict[str, pd.DataFrame],
    cache_dir: str | Path,
    batch_sites: int = 1200,
    readouts: Sequence[str] = ("global_mu",),
    combos: Sequence[str] = (),
    peers: Sequence[str] = (),
    seed: int = 0,
    n_jobs: int = 1,
    done: pd.DataFrame | None = None,
    save: Callable[[pd.DataFrame], None] | None = None,
) -> pd.DataFrame:
    """Fit every (family, feature set, model, draw); MAE on the family's scored crystals.

    Args:
        encoders: name → encoder (must include :data:`CONTROL`); all see the same crystals and draws.
        sets: family → frame (``structure``, ``y``), from :func:`family_sets`.
        cache_dir: the encoding cache.
        batch_sites: unique sites per forward pass.
        readouts: ``global_mu`` (μ_G) and/or ``pooled``, per encoder.
        combos: feature sets side by side, as ``"kept+start"`` or ``"start+magpie"``.
        peers: other featurisers scored beside the encoders: ``"magpie"`` (matminer's Magpie composition
            features) or ``"chgnet"`` (CHGNet's crystal features; trained on MP labels, not label-free).
        seed: seeds the scored share and the draws.
        n_jobs: parallel fits (joblib).
        done: rows of an earlier, interrupted call; (family, feature set) pairs in it are not fitted again.
        save: called with every row so far after each family (resumability).

    Returns:
        One row per fit: family, features, model, budget, draw, mae, n_pool, n_score.
    """
    from joblib import Parallel, delayed

    from dim_featurizer.train.cache import cached_dataset
    from dim_featurizer.train.probes import collect

    rows = [] if done is None or done.empty else [done]
    finished = set() if done is None or done.empty else set(zip(done["family"], done["features"]))
    encoding = encoders[CONTROL].config.encoding
    device = next(encoders[CONTROL].parameters()).device
    names = set(feature_sets({e: dict.fromkeys(readouts) for e in [*encoders, *peers]}, ())) | set(combos)
    for family, data in sets.items():
        missing = names - {f for fam, f in finished if fam == family}
        if not missing:
            continue
        # Only the encoders and peers a missing feature set is made of are run (CHGNet takes minutes).
        needed = {part.split(":")[0] for name in missing for part in name.split("+")}
        dataset, _ = cached_dataset(data["structure"], encoding, cache_dir, pbar=False)
        y = data.loc[dataset.ids, "y"].to_numpy(float)
        everything = np.arange(len(dataset))
        values = {}
        for name in [e for e in encoders if e in needed]:
            out = collect(encoders[name].to(device), dataset, everything, batch_sites)
            values[name] = {r: out[r] for r in readouts}
        for peer in [p for p in peers if p in needed]:
            values[peer] = {"global_mu": peer_features(peer, list(data.loc[dataset.ids, "structure"]))}
        features = feature_sets(values, [c for c in combos if c in missing])
        pool, score = score_split(len(dataset), seed)
        jobs, keys = [], []
        for name, x in features.items():
            if name not in missing:
                continue
            x = standardise(x, x)  # over the family's crystals: no label
            for kind, (budget, draws) in PLAN.items():
                for (size, draw), chosen in draw_subsets(len(pool), [budget], draws, seed).items():
                    at = pool[chosen]
                    keys.append((family, name, kind, min(size, len(pool)), draw))
                    jobs.append(delayed(fit_one)(x[at], y[at], x[score], y[score], kind, draw, False))
        maes = Parallel(n_jobs=n_jobs)(jobs)
        fits = pd.DataFrame(keys, columns=["family", "features", "model", "budget", "draw"])
        fits["mae"], fits["n_pool"], fits["n_score"] = maes, len(pool), len(score)
        rows.append(fits)
        if save is not None:
            save(pd.concat(rows, ignore_index=True))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def peer_features(name: str, structures: list) -> np.ndarray:
    """(n, k) features of a peer featuriser (NaN rows where it fails; the fits mean-impute them)."""
    from .representations import CHGNetFeatures, MagpieFromStructure

    featurizer = {"magpie": MagpieFromStructure, "chgnet": CHGNetFeatures}[name]()
    return np.asarray(featurizer.featurize_many(structures, ignore_errors=True, pbar=False), dtype=float)


def family_summary(fits: pd.DataFrame) -> pd.DataFrame:
    """Median MAE per family, feature set and model, with its ratio to the control's median."""
    medians = fits.groupby(KEYS, sort=False)["mae"].median().rename("median_mae").reset_index()
    control = medians[medians["features"] == CONTROL].set_index(["family", "model"])["median_mae"]
    medians["vs_control"] = (
        medians["median_mae"] / control.reindex(pd.MultiIndex.from_frame(medians[["family", "model"]])).to_numpy()
    )
    return medians


def ratio_table(summary: pd.DataFrame) -> str:
    """Markdown: one row per family and model, one column per feature set (median / control's median)."""
    pivot = summary.pivot_table(index=["family", "model"], columns="features", values="vs_control", sort=False)
    cols = list(pivot.columns)
    lines = ["| family | model | " + " | ".join(cols) + " |", "|" + " --- |" * (2 + len(cols))]
    for (family, model), row in pivot.iterrows():
        lines.append(f"| {family} | {model} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


def family_diagnosis(
    encoders: dict[str, SiteNetEncoder], sets: dict[str, pd.DataFrame], cache_dir: str | Path, batch_sites: int = 1200
) -> pd.DataFrame:
    """Label-free: per family and encoder, what each layer linearly keeps of composition and local geometry.

    Returns:
        One row per (family, encoder, measure): ``value`` is a held-out R² (``<layer>/<target>``, see
        :func:`dim_featurizer.train.probes.recoverability`) or a spectrum measure of μ_G.
    """
    from dim_featurizer.train.cache import cached_dataset
    from dim_featurizer.train.probes import recoverability

    encoding = encoders[CONTROL].config.encoding
    rows = []
    for family, data in sets.items():
        dataset, _ = cached_dataset(data["structure"], encoding, cache_dir, pbar=False)
        for name, encoder in encoders.items():
            measures = recoverability(encoder, dataset, np.arange(len(dataset)), batch_sites)
            rows += [{"family": family, "encoder": name, "measure": k, "value": v} for k, v in measures.items()]
    return pd.DataFrame(rows)
