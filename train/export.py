"""Export a run's best encoder as a Hub-layout weights folder with a model card, and publish it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from dim_featurizer.weights import CARD_NAME, CONFIG_NAME, MANIFEST_NAME, WEIGHTS_NAME, load_pretrained, sha256

#: Optional hand-written notes in a run folder, copied into the card's "Limitations" section.
LIMITATIONS = "limitations.md"


def diagnosis_section(run_dir: Path, n_values: int, kept_epoch: int) -> str:
    """The card's label-free diagnostics from ``dim-train diagnose`` output, or "" when there is none."""
    if not (run_dir / "diagnosis.csv").is_file() or not (run_dir / "diagnosis.json").is_file():
        return ""
    table = pd.read_csv(run_dir / "diagnosis.csv")
    summary = json.loads((run_dir / "diagnosis.json").read_text())
    rows = "\n".join(f"| {r.level} | {r.sample} | {r.mean_term:.4f} | {r.vs_chance:.2f} |" for r in table.itertuples())
    spread = summary["participation_ratio"]
    perm = summary.get("permutations")
    copies = (
        f"\n\nFalse permutations of the {perm['crystals']} validation crystals: {perm['unchanged']} left the "
        f"species unchanged (masked), {perm['copies']} reproduce the crystal's own environments exactly (not "
        f"masked, unlearnable), {perm['distinct']} are distinct."
        if perm
        else ""
    )
    return f"""
## Diagnostics (label-free, `dim-train diagnose`)

Computed with the networks of the run's last checkpoint (after epoch
{summary["after_epoch"]}; the encoder shipped here is epoch {kept_epoch}'s).
Mean Jensen-Shannon term per sample kind on the validation set: softplus(-T)
for real samples, softplus(T) for false ones; log 2 = 0.693 is chance, lower
means the discriminator recognises the kind.

| level | sample | mean term | / log 2 |
| --- | --- | --- | --- |
{rows}

Participation ratio (effective number of independent directions) of the
standardised feature vectors of the validation crystals: this encoder
{spread["trained"]:.1f}, the seeded untrained network {spread["untrained"]:.1f}
(of {n_values} values).{copies}
"""


def model_card(run: dict[str, Any], log: pd.DataFrame, config: dict, best: dict, notes: str = "") -> str:
    """The card: metadata header, then data, counts, config, epochs, losses, commit, hardware, time."""
    last = log.iloc[-1]
    rows = "\n".join(
        f"| {int(r.epoch)} | {r.train_local_js:.4f} | {r.val_local_js:.4f} | {r.train_global_js:.4f} | "
        f"{r.val_global_js:.4f} | {r.val_local_kl:.4f} | {r.val_global_kl:.4f} | {r.seconds:.0f} |"
        for r in log.itertuples()
    )
    oxidation_note = (
        " (the training structures carry no oxidation states, so the model ignores them)"
        if config["encoding"]["oxidation"] == "zero"
        else ""
    )
    recent = log["val_total"].to_numpy()
    stopped_early = ""
    if not run["stop_reason"].startswith("validation"):
        drop = recent[max(0, len(recent) - 4)] - recent[-1]
        stopped_early = (
            f"\n\n**Not converged.** The run stopped ({run['stop_reason']}) before its validation loss plateaued: "
            f"it fell by {drop:.4f} over the last {min(3, len(recent) - 1)} epochs. "
            "`dim-train fit ... --resume` on the "
            "committed checkpoint (with a higher `--epochs` after an epoch limit) continues it."
        )
    parts = run.get("segments") or [{"epochs": [1, len(log)], "commit": run["commit"], "hardware": run["hardware"]}]
    segments = "\n".join(
        f"- Epochs {a}-{b}: code commit `{part['commit']}`, {part['hardware']}"
        + (f" ({part['note']})" if part.get("note") else "")
        for part in parts
        for a, b in [part["epochs"]]
    )
    ablation = " (ablation: only 'other' false samples, paper Fig. 11)" if run["train_config"]["only_other"] else ""
    return f"""---
library_name: dim_featurizer
license: mit
tags:
- materials-science
- crystal-structures
- self-supervised
- deep-infomax
- site-net
datasets:
- {run["data"]["name"]}
pipeline_tag: feature-extraction
---

# {run["name"]}: Site-Net Deep InfoMax encoder{ablation}

Self-supervised Deep InfoMax pretraining of a Site-Net encoder, produced by
this project's own `dim-train` code from real data. Load it with
`DeepInfoMaxFeaturizer(weights="{run["name"]}")`; the feature vector is μ_G
({config["global_dim"]} values), without noise.

## Training data

- Source: `{run["data"]["source"]}`; split file `{run["data"]["split"]}`,
  subset `{run["data"]["subset"]}` only. The test ids and every label column
  were never read.
- Labels read: none. Test ids read: none.
- Structures offered: {run["data"]["offered"]}; excluded: {run["data"]["excluded"]}
  ({run["data"]["excluded_reasons"]}); used: {run["data"]["used"]}, of which
  {run["data"]["train"]} trained and {run["data"]["validation"]} formed the
  validation set (seeded split, seed {run["train_config"]["seed"]}).

## Configuration

- Encoder: `config.json` (hidden {config["hidden"]}, local {config["local_dim"]},
  D = {config["global_dim"]}; encoding: max_atoms
  {config["encoding"]["max_atoms"]}, oxidation `{config["encoding"]["oxidation"]}`{oxidation_note}).
- Objective: local and global DIM, Jensen-Shannon, α = {run["train_config"]["alpha"]},
  β = {run["train_config"]["beta"]} (KL to N(0, I)); only-other ablation:
  {run["train_config"]["only_other"]}.
- Optimiser: AdamW, lr {run["train_config"]["lr"]}, weight decay
  {run["train_config"]["weight_decay"]}, {run["train_config"]["batch_sites"]} unique
  sites per batch, gradient clip {run["train_config"]["grad_clip"]}.
- Kept checkpoint: epoch {best["epoch"]}, chosen by the lowest self-supervised
  validation loss (no label anywhere); stopped after {len(log)} epochs
  ({run["stop_reason"]}).{stopped_early}

## Losses

Final epoch ({int(last.epoch)}): validation local JS {last.val_local_js:.4f},
global JS {last.val_global_js:.4f}, local KL {last.val_local_kl:.4f}, global KL
{last.val_global_kl:.4f}. Kept epoch {best["epoch"]}: validation total
{best["val_total"]:.4f}.

| epoch | train local JS | val local JS | train global JS | val global JS | val local KL | val global KL | seconds |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

![loss curves](loss_curves.png)
{notes}

## Provenance

{segments}
- Wall time: {log["seconds"].sum() / 60:.1f} minutes of training over {len(log)} epochs.
- Date: {run["date"]}
"""


def export_run(run_dir: str | Path, out_dir: str | Path, name: str, default: bool = False) -> Path:
    """Copy the run's best encoder into ``out_dir/name`` with a card, and register it in the manifest.

    Args:
        run_dir: a finished ``dim-train fit`` folder (best/, log.csv, run.json).
        out_dir: the weights folder (the repository's ``weights/``).
        name: the weights' name.
        default: make it the package default.

    Returns:
        The exported folder.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    encoder = load_pretrained(run_dir / "best")  # proves it loads strictly before anything is written
    run = json.loads((run_dir / "run.json").read_text())
    run["name"] = name
    log = pd.read_csv(run_dir / "log.csv")
    best = json.loads((run_dir / "best" / "training.json").read_text())
    best = {"epoch": int(best["epoch"]), "val_total": float(best["val_total"])}
    target = out_dir / name
    target.mkdir(parents=True, exist_ok=True)
    for filename in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copyfile(run_dir / "best" / filename, target / filename)
    from .plot import plot_curves

    plot_curves(run_dir / "log.csv", target / "loss_curves.png", title=name)
    shutil.copyfile(run_dir / "log.csv", target / "log.csv")
    notes = diagnosis_section(run_dir, encoder.config.global_dim, best["epoch"])
    if (run_dir / LIMITATIONS).is_file():  # written by whoever evaluated the weights
        notes += "\n## Limitations\n\n" + (run_dir / LIMITATIONS).read_text().strip() + "\n"
    card = model_card(run, log, encoder.config.as_dict(), best, notes)
    (target / CARD_NAME).write_text(card)
    manifest_path = out_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[name] = {"files": {f: sha256(target / f) for f in (CONFIG_NAME, WEIGHTS_NAME)}}
    if default:
        manifest["_default"] = name
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target


def publish(folder: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Upload an exported folder to the Hugging Face Hub; returns the new commit hash to pin."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model")
    return info.oid
