"""Export a run's best encoder as a Hub-layout weights folder with a model card, and publish it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from dim_featurizer.config import ModelConfig
from dim_featurizer.errors import one_line
from dim_featurizer.files import write_text
from dim_featurizer.weights import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    hub_unreachable,
    load_pretrained,
    read_manifest,
    register_weights,
    save_pretrained,
)

from .probes import probes_markdown


def pretraining_record(run: dict[str, Any], best: dict, epochs: int, selection: dict | None = None) -> dict[str, Any]:
    """The facts a weights config carries about its pretraining (read by the benchmark's guard).

    Args:
        run: the run's ``run.json``.
        best: the kept epoch and its validation loss.
        epochs: epochs trained.
        selection: the run's ``devprobe.json`` when the development probe ran.

    Returns:
        ``labels_read`` (a list; empty when none), ``test_ids_read`` (an int,
        None without a split file), the data, split, counts and settings, and
        ``selection_labels_read`` / ``selection_test_ids_read``: the labels the
        development probe read (training-split ids only) and its test ids (0).
    """
    data = run["data"]
    return {
        "data": data["name"],
        "split": Path(data["split"]).name if data["split"] != "none" else None,
        "subset": data["subset"],
        "labels_read": list(data.get("labels_read", [])),
        "test_ids_read": data.get("test_ids_read"),
        "structures_used": data["used"],
        "validation": data["validation"],
        "only_other": run["train_config"]["only_other"],
        "epochs": epochs,
        "kept_epoch": best["epoch"],
        "stop_reason": run["stop_reason"],
        "selection_labels_read": list(selection["labels_read"]) if selection else [],
        "selection_test_ids_read": selection["test_ids_read"] if selection else 0,
    }


def _yaml_value(value: Any) -> str:
    return json.dumps(value)  # JSON scalars and lists are valid YAML flow values


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


def probes_section(run_dir: Path) -> str:
    """The card's label-free probes (``diagnose``) and development probe (``probe``), or "" when neither ran."""
    parts = []
    diagnosis = run_dir / "diagnosis.json"
    probes = json.loads(diagnosis.read_text()).get("probes") if diagnosis.is_file() else None
    if probes:
        parts.append(
            "\n## Label-free probes (`dim-train diagnose`)\n\n"
            "Held-out linear R² on the validation crystals of what the representations say about the structure "
            "(docs/method.md §3.7), for the encoder shipped here (`kept`), the run's own initialisation (`start`) "
            "and the package's untrained control; `active_dims` counts μ_G dimensions with "
            "var(μ_G) / E[σ²_G] > 0.1. No label is read.\n\n" + probes_markdown(probes) + "\n"
        )
    if (run_dir / "devprobe.json").is_file():
        record = json.loads((run_dir / "devprobe.json").read_text())
        table = pd.DataFrame(record["medians"])
        rows = [
            "| target | model | labels | readout | " + " | ".join(table.columns[4:]) + " |",
            "|" + " --- |" * len(table.columns),
        ]
        rows += [
            "| " + " | ".join([*map(str, r[:4]), *(f"{v:.4f}" for v in r[4:])]) + " |"
            for r in table.itertuples(index=False)
        ]
        parts.append(
            "## Development probe (`dim-bench probe`)\n\n"
            f"Median MAE over {record['draws']} seeded draws, fitted on labels of the run's training crystals and "
            f"measured on {record['n_score']} training-split crystals the encoder never trained on. Labels read "
            f"(to select or to evaluate these weights): {', '.join(record['labels_read'])} of training-split ids "
            "only. Test ids read: none.\n\n" + "\n".join(rows) + "\n"
        )
    return "\n".join(parts)


def model_card(run: dict[str, Any], log: pd.DataFrame, config: dict, best: dict, notes: str = "") -> str:
    """The card, generated from the run's facts only (nothing on it can go stale when results change).

    Metadata header (with the pretraining record), then data, counts,
    config, epochs, losses, diagnostics, commit, hardware and time.
    Benchmark results are not copied here: they change as the harness does.
    """
    record = config["pretraining"]
    labels = ", ".join(record["labels_read"]) or "none"
    chosen_with = ", ".join(record.get("selection_labels_read", [])) or "none"
    test_ids = {0: "none", None: "unknown (no split file)"}.get(record["test_ids_read"], record["test_ids_read"])
    metadata = "\n".join(f"  {k}: {_yaml_value(v)}" for k, v in record.items())
    last = log.iloc[-1]
    rows = "\n".join(
        f"| {int(r.epoch)} | {r.train_local_js:.4f} | {r.val_local_js:.4f} | {r.train_global_js:.4f} | "
        f"{r.val_global_js:.4f} | {r.val_local_kl:.4f} | {r.val_global_kl:.4f} | {r.seconds:.0f} |"
        for r in log.itertuples()
    )
    oxidation_note = (
        " (the training structures carry no oxidation states, so the model ignores those a structure carries"
        " unless `oxidation=` is passed)"
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
            "`dim-train fit ... --resume` on the run's checkpoint (with a higher `--epochs` after an epoch limit) "
            "continues it; the repository keeps the checkpoints of interrupted runs only."
        )
    parts = run.get("segments") or [{"epochs": [1, len(log)], "commit": run["commit"], "hardware": run["hardware"]}]
    segments = "\n".join(
        f"- Epochs {a}-{b}: code commit `{part['commit']}`, {part['hardware']}"
        + (f" ({part['note']})" if part.get("note") else "")
        for part in parts
        for a, b in [part["epochs"]]
    )
    ablation = " (ablation: only 'other' false samples, paper Fig. 11)" if run["train_config"]["only_other"] else ""
    width = ModelConfig.from_dict(config).feature_width
    vector = "μ_G" if config["readout"] == "global_mu" else "the global encoder's mean-pooled layer (before μ_G)"
    tc = run["train_config"]
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
dim_featurizer:
{metadata}
---

# {run["name"]}: Site-Net Deep InfoMax encoder{ablation}

Self-supervised Deep InfoMax pretraining of a Site-Net encoder, produced by
this project's own `dim-train` code from real data. Load it with
`DeepInfoMaxFeaturizer(weights="{run["name"]}")`; the feature vector is {vector}
({width} values), without noise.

## Training data

- Source: `{run["data"]["source"]}`; split file `{run["data"]["split"]}`,
  subset `{run["data"]["subset"]}`.
- Labels read: {labels}. Test ids read: {test_ids}. Labels read by the
  development probe (to select or evaluate): {chosen_with} (training-split ids only). (Also in `config.json`
  under `pretraining`, which the benchmark harness checks.)
- Structures offered: {run["data"]["offered"]}; excluded: {run["data"]["excluded"]}
  ({run["data"]["excluded_reasons"]}); used: {run["data"]["used"]}, of which
  {run["data"]["train"]} trained and {run["data"]["validation"]} formed the
  validation set (seeded split, seed {run["train_config"]["seed"]}).

## Configuration

- Encoder: `config.json` (hidden {config["hidden"]}, attention blocks
  {config.get("attention_layers", 1)}, local {config["local_dim"]},
  D = {config["global_dim"]}; encoding: max_atoms
  {config["encoding"]["max_atoms"]}, oxidation `{config["encoding"]["oxidation"]}`{oxidation_note};
  encoding version {config["encoding_version"]}; feature vector: `{config["readout"]}`,
  {width} values).
- Objective: local and global DIM, Jensen-Shannon, α = {run["train_config"]["alpha"]},
  β = {run["train_config"]["beta"]} (KL to N(0, I)); only-other ablation:
  {run["train_config"]["only_other"]}; local weighting `{tc["local_weighting"]}`, global false
  permutation over `{tc["permutation"]}`, local sample `{tc["local_sample"]}`, reconstruction
  weight {tc["reconstruction"]}, masked-site prediction weight {tc["masked_sites"]}, jitter of the augmented true
  samples {tc["jitter"]} Å, first-shell reconstruction weight {tc.get("shell_reconstruction", 0.0)}, Magpie
  element-table reconstruction weight {tc.get("element_reconstruction", 0.0)}, false vacancies
  {tc.get("vacancies", False)} (docs/method.md §3).
- Optimiser: AdamW, lr {run["train_config"]["lr"]}, weight decay
  {run["train_config"]["weight_decay"]}, {run["train_config"]["batch_sites"]} unique
  sites per batch, gradient clip {run["train_config"]["grad_clip"]} (0: none), amsgrad
  {tc["amsgrad"]}, eps {tc["eps"]}.
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

## Benchmark

How these features compare with the untrained network and with matminer's
featurisers is measured by `dim-bench` (`dim_featurizer.bench`); the
current numbers are in the source repository's `results/README.md`, and
`results/run.json` names the weights each column used. They are not copied
here, so this card cannot fall out of date when the benchmark changes.

## Provenance

{segments}
- Wall time: {log["seconds"].sum() / 60:.1f} minutes of training over {len(log)} epochs.
- Date: {run["date"]}
"""


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    name: str,
    default: bool = False,
    readout: str | None = None,
    reexport: bool = False,
) -> Path:
    """Copy the run's best encoder into ``out_dir/name`` with a card, and register it in the manifest.

    Args:
        run_dir: a finished ``dim-train fit`` folder (best/, log.csv, run.json).
        out_dir: the weights folder (the repository's ``weights/``).
        name: the weights' name.
        default: make it the package default.
        readout: the feature vector the weights give (``global_mu`` or ``pooled``); None keeps the run's.
        reexport: take the encoder from the folder exported before (``out_dir/name``, checked against the
            manifest) instead of the run's ``best/``: refreshes the config and card of shipped weights. A
            finished run keeps no ``best/``, so this is also what happens without it.

    Returns:
        The exported folder.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    target = out_dir / name
    log = pd.read_csv(run_dir / "log.csv")
    if (run_dir / "best").is_dir() and not reexport:
        encoder = load_pretrained(run_dir / "best")  # proves it loads strictly before anything is written
        best = json.loads((run_dir / "best" / "training.json").read_text())
        best = {"epoch": int(best["epoch"]), "val_total": float(best["val_total"])}
    else:
        # A finished run keeps no copy of its weights: re-export the folder exported before (cards, records).
        registered = read_manifest(out_dir).get(name, {}).get("files", {}).get(WEIGHTS_NAME)
        encoder = load_pretrained(target, expected_sha256=registered)
        epoch = int(encoder.config.pretraining["kept_epoch"])
        log = log[log["epoch"] <= int(encoder.config.pretraining["epochs"])]  # the run may have gone on since
        best = {"epoch": epoch, "val_total": float(log.loc[log["epoch"] == epoch, "val_total"].iloc[0])}
    run = json.loads((run_dir / "run.json").read_text())
    run["name"] = name
    probe = run_dir / "devprobe.json"
    selection = json.loads(probe.read_text()) if probe.is_file() else None
    record = pretraining_record(run, best, len(log), selection)
    encoder.config = replace(encoder.config, pretraining=record, readout=readout or encoder.config.readout)
    save_pretrained(encoder, target)
    from .plot import plot_curves

    plot_curves(log, target / "loss_curves.png", title=name)
    notes = diagnosis_section(run_dir, encoder.config.global_dim, best["epoch"]) + probes_section(run_dir)
    write_text(target / CARD_NAME, model_card(run, log, encoder.config.as_dict(), best, notes))
    register_weights(out_dir, name, default=default)
    return target


def publish(folder: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Upload an exported folder to the Hugging Face Hub; returns the new commit hash to pin with ``revision=``.

    Raises:
        RuntimeError: at once, with the reason, when the folder is not an
            exported weights folder, no token is available or the Hub cannot
            be reached; or with the Hub's own error when the upload fails.
    """
    from huggingface_hub import HfApi, get_token

    folder = Path(folder)
    missing = [f for f in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME) if not (folder / f).is_file()]
    if missing:
        raise RuntimeError(
            f"cannot publish {folder}: it lacks {', '.join(missing)} (export it with `dim-train export`)"
        )
    if token is None and get_token() is None:
        raise RuntimeError(f"cannot publish {folder}: no Hub token (set HF_TOKEN or run `hf auth login`)")
    reason = hub_unreachable()
    if reason is not None:
        raise RuntimeError(f"cannot publish {folder} to {repo_id}: {reason}")
    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model")
    except Exception as e:  # noqa: BLE001 - any Hub failure becomes one clear line
        raise RuntimeError(f"publishing {folder} to {repo_id} failed: {type(e).__name__}: {one_line(e)}") from e
    return info.oid
