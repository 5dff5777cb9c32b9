"""Label-free probes of an encoder: what its representations still say about the structure they encode.

Computed from structures alone, never from a property label (docs/method.md §3.7):

- linear R² of the centre atom's atomic number and electronegativity from μ_i;
- linear R² of the first shell's mean electronegativity and of the
  nearest-neighbour distance (Å) from μ_i;
- linear R² of the crystal's mean element properties (the eight Magpie
  columns, averaged over its sites) from μ_G, and from the pooled layer;
- the number of active μ_G dimensions, var(μ_G) / E[σ²_G] > 0.1;
- the participation ratio of the standardised μ_G.

A useful encoder keeps what its random initialisation already carried.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dim_featurizer.batching import Batch, collate, plan_batches
from dim_featurizer.elements import ELEMENT_PROPERTIES
from dim_featurizer.model import SiteNetEncoder

from .cache import EncodedDataset
from .diagnose import participation_ratio
from .objective import first_shell

#: var(μ_G) / E[σ²_G] above this marks an active dimension (below it a dimension sits at the KL prior).
ACTIVE_RATIO = 0.1
_EN = ELEMENT_PROPERTIES.index("Electronegativity")
_Z = ELEMENT_PROPERTIES.index("Number")


def site_targets(batch: Batch) -> dict[str, np.ndarray]:
    """Per unique site of ``batch``: centre Z and electronegativity, first-shell mean electronegativity, and
    nearest-neighbour distance (Å); the first shell as :func:`objective.first_shell`."""
    nearest, shell = first_shell(batch)
    en = batch.site_features[:, _EN]
    shell_en = (en[batch.neighbor_index] * shell).sum(1) / shell.sum(1).clamp_min(1)
    return {
        "centre_Z": batch.site_features[:, _Z].numpy(),
        "centre_EN": en.numpy(),
        "shell_EN": shell_en.numpy(),
        "nn_distance": nearest.numpy(),
    }


def crystal_means(batch: Batch) -> np.ndarray:
    """(C, 8) each crystal's eight element properties averaged over its unique sites (composition-weighted)."""
    x = batch.site_features[:, : len(ELEMENT_PROPERTIES)].double()
    total = x.new_zeros((batch.n_crystals, x.shape[1])).index_add_(0, batch.crystal_index, x)
    return (total / torch.bincount(batch.crystal_index, minlength=batch.n_crystals).unsqueeze(1)).numpy()


@torch.no_grad()
def collect(
    encoder: SiteNetEncoder, dataset: EncodedDataset, indices: Sequence[int], batch_sites: int = 1200
) -> dict[str, np.ndarray]:
    """Run ``encoder`` over the crystals at ``indices``; return its readouts and the probes' targets.

    Returns:
        Per site: ``local_mu``, ``crystal`` (position in ``indices``) and the
        :func:`site_targets`; per crystal: ``global_mu``, ``global_logvar``,
        ``pooled`` and ``means`` (:func:`crystal_means`).
    """
    encoder.eval()
    device = next(encoder.parameters()).device
    indices = np.asarray(indices)
    parts: dict[str, list[np.ndarray]] = {}
    for batch_positions in plan_batches(dataset.n_sites[indices].tolist(), batch_sites):
        batch = collate(dataset.subset(indices[batch_positions]))
        out = {k: v.float().cpu().numpy() for k, v in encoder.readouts(batch.to(device)).items()}
        out |= site_targets(batch)
        out["means"] = crystal_means(batch)
        out["crystal"] = np.asarray(batch_positions)[batch.crystal_index.numpy()]
        for key, value in out.items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(value) for key, value in parts.items()}


def linear_r2(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0, multioutput: str = "uniform_average"
) -> float:
    """Held-out R² of a ridge fit of ``y`` on standardised ``x``, two folds split by group (crystal).

    The ridge penalty is chosen inside each training fold (efficient
    leave-one-out, ``RidgeCV``), so a probe with more features than crystals
    still measures what is linearly there rather than an interpolant.

    Args:
        x: (n, k) representations.
        y: (n,) or (n, t) targets; several targets give the mean of their R².
        groups: (n,) the crystal of each row: no crystal is in both folds.
        seed: seeds the fold assignment.
        multioutput: how several targets' R² combine (scikit-learn's ``r2_score``): ``"variance_weighted"``
            is the share of their total variance recovered, robust to a target nearly constant in a fold.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = y.reshape(len(y), -1)
    unique = np.unique(groups)
    fold = np.random.default_rng(seed).permutation(len(unique)) % 2
    in_fold = fold[np.searchsorted(unique, groups)]
    scores = []
    for k in (0, 1):
        train, test = in_fold != k, in_fold == k
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
        scores.append(r2_score(y[test], model.fit(x[train], y[train]).predict(x[test]), multioutput=multioutput))
    return float(np.mean(scores))


def label_free_probes(
    encoder: SiteNetEncoder, dataset: EncodedDataset, indices: Sequence[int], batch_sites: int = 1200
) -> dict[str, float]:
    """Every label-free probe of ``encoder`` on the crystals at ``indices`` (typically a run's validation set).

    Returns:
        ``centre_Z_r2``, ``centre_EN_r2``, ``shell_EN_r2``, ``nn_distance_r2``
        (from μ_i); ``mean_properties_r2`` (from μ_G) and
        ``mean_properties_r2_pooled`` (from the pooled layer), each the mean R²
        over the eight properties; ``active_dims`` and ``global_dim``;
        ``participation_ratio`` of μ_G.
    """
    data = collect(encoder, dataset, indices, batch_sites)
    crystals = np.arange(len(data["global_mu"]))
    probes = {
        f"{name}_r2": linear_r2(data["local_mu"], data[name], data["crystal"])
        for name in ("centre_Z", "centre_EN", "shell_EN", "nn_distance")
    }
    probes["mean_properties_r2"] = linear_r2(data["global_mu"], data["means"], crystals)
    probes["mean_properties_r2_pooled"] = linear_r2(data["pooled"], data["means"], crystals)
    spread = data["global_mu"].var(axis=0) / np.exp(data["global_logvar"]).mean(axis=0)
    probes["active_dims"] = int((spread > ACTIVE_RATIO).sum())
    probes["global_dim"] = int(data["global_mu"].shape[1])
    probes["participation_ratio"] = participation_ratio(data["global_mu"])
    return probes


def probe_encoders(setup, run_dir: str | Path) -> dict[str, SiteNetEncoder]:
    """The encoders a run is judged by: ``kept`` (its ``best/``, else its checkpoint's), ``start`` (the run's
    own seeded initialisation) and ``untrained`` (the package's control, ``weights="untrained"``)."""
    from dim_featurizer.model import untrained_encoder
    from dim_featurizer.weights import load_pretrained

    from .build import build_model

    run_dir = Path(run_dir)
    if (run_dir / "best").is_dir():
        kept = load_pretrained(run_dir / "best")
    else:
        setup.load_model_state(run_dir / "checkpoint.pt")
        kept = setup.model.encoder
    start = build_model(kept.config, setup.config).encoder
    return {"kept": kept, "start": start, "untrained": untrained_encoder()}


def compare_encoders(setup, encoders: dict[str, SiteNetEncoder]) -> dict[str, dict[str, float]]:
    """Label-free probes of each encoder on the run's validation crystals."""
    batch_sites = setup.config.batch_sites
    return {
        name: label_free_probes(encoder.to(setup.device), setup.dataset, setup.val_idx, batch_sites)
        for name, encoder in encoders.items()
    }


def probes_markdown(probes: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per probe, one column per encoder."""
    names = list(probes)
    keys = list(probes[names[0]])
    lines = ["| probe | " + " | ".join(names) + " |", "|" + " --- |" * (1 + len(names))]
    for key in keys:
        cells = [f"{probes[n][key]:.3f}" if isinstance(probes[n][key], float) else str(probes[n][key]) for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: The layers the family diagnosis reads, per site and per crystal.
SITE_LAYERS = ("embedding", "environment", "local_mu")
CRYSTAL_LAYERS = ("mean_embedding", "pooled", "global_mu")


@torch.no_grad()
def layer_values(encoder: SiteNetEncoder, batch: Batch) -> dict[str, torch.Tensor]:
    """Every layer of ``encoder`` on ``batch``: per site the embedding h, the environment s (the first
    attention block) and μ_i; per crystal the mean of h over its sites (what composition alone gives), the
    pooled layer and μ_G."""
    local = encoder.local
    sites = local.embed_sites(batch.site_features)
    rows = torch.arange(len(sites), device=sites.device)
    environment = local.environments(sites, rows, batch.neighbor_index, batch.distances, batch.mask)
    out = encoder.readouts(batch)
    count = torch.bincount(batch.crystal_index, minlength=batch.n_crystals).clamp_min(1).unsqueeze(1)
    mean = sites.new_zeros((batch.n_crystals, sites.shape[1])).index_add_(0, batch.crystal_index, sites) / count
    return {
        "embedding": sites,
        "environment": environment,
        "local_mu": out["local_mu"],
        "mean_embedding": mean,
        "pooled": out["pooled"],
        "global_mu": out["global_mu"],
    }


def structure_targets(batch: Batch) -> dict[str, np.ndarray]:
    """Label-free targets of the family diagnosis, from the structure alone.

    Per site: ``coordination`` (log of the first shell's size), ``nn_distance`` (Å) and ``shell_composition``
    (the first shell's mean standardised Magpie element properties, 22 values). Per crystal: ``magpie`` (its
    Magpie statistics of the 22 properties over its sites, 88 values: what Magpie's composition vector holds).
    """
    from .targets import crystal_statistics, magpie_targets

    nearest, shell = first_shell(batch)
    table = torch.from_numpy(magpie_targets())
    z = batch.site_features[:, _Z].round().long().clamp(0, len(table) - 1)
    neighbours = table[z[batch.neighbor_index]]  # (N, M, 22)
    composition = (neighbours * shell.unsqueeze(-1)).sum(1) / shell.sum(1, keepdim=True).clamp_min(1)
    return {
        "coordination": torch.log(shell.sum(1).clamp_min(1)).numpy(),
        "nn_distance": torch.where(torch.isfinite(nearest), nearest, 0.0).numpy(),
        "shell_composition": composition.numpy(),
        "magpie": crystal_statistics(table[z], batch.crystal_index, batch.n_crystals).numpy(),
    }


def recoverability(
    encoder: SiteNetEncoder, dataset: EncodedDataset, indices: Sequence[int], batch_sites: int = 1200
) -> dict[str, float]:
    """Held-out linear R² of each structure target from each layer, and the spectrum of μ_G, on ``indices``.

    Returns:
        ``<layer>/<target>`` → R² (:func:`linear_r2`; site targets from :data:`SITE_LAYERS`, ``magpie`` from
        :data:`CRYSTAL_LAYERS`), ``participation_ratio`` of the standardised μ_G, and ``top5_variance``, the
        share of its variance in the first five principal components.
    """
    device = next(encoder.parameters()).device
    encoder.eval()
    indices = np.asarray(indices)
    parts: dict[str, list[np.ndarray]] = {}
    for batch_positions in plan_batches(dataset.n_sites[indices].tolist(), batch_sites):
        batch = collate(dataset.subset(indices[batch_positions]))
        values = {k: v.float().cpu().numpy() for k, v in layer_values(encoder, batch.to(device)).items()}
        values |= structure_targets(batch)
        values["crystal"] = np.asarray(batch_positions)[batch.crystal_index.numpy()]
        for key, value in values.items():
            parts.setdefault(key, []).append(value)
    data = {key: np.concatenate(value) for key, value in parts.items()}
    for key in ("shell_composition", "magpie"):  # a property constant over a family has no R²
        data[key] = data[key][:, data[key].std(0) > 1e-3]
    crystals = np.arange(len(data["global_mu"]))
    out = {
        f"{layer}/{target}": linear_r2(data[layer], data[target], data["crystal"], multioutput="variance_weighted")
        for layer in SITE_LAYERS
        for target in ("coordination", "nn_distance", "shell_composition")
    }
    out |= {
        f"{layer}/magpie": linear_r2(data[layer], data["magpie"], crystals, multioutput="variance_weighted")
        for layer in CRYSTAL_LAYERS
    }
    mu = data["global_mu"]
    mu = (mu - mu.mean(0)) / np.where(mu.std(0) > 1e-9, mu.std(0), 1.0)
    eigen = np.sort(np.linalg.eigvalsh(np.cov(mu, rowvar=False)))[::-1]
    out["participation_ratio"] = participation_ratio(data["global_mu"])
    out["top5_variance"] = float(eigen[:5].sum() / eigen.sum())
    return out
