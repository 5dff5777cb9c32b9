"""Pretraining speed: crystals per second of one Deep InfoMax step, and seconds per epoch.

Runs the same batches (real mp2018 training crystals, from the encoding
cache) through four step variants in one process and reports each as a
ratio to the project's full step:

- ``full``: the shipped objective (all false-sample types);
- ``ablation``: only "other" false samples (Fig. 11);
- ``literal``: the full objective, but the encoder builds every bond vector
  B_ij = [h_i, h_a(ij), e_ij] and runs its blocks on it, exactly as docs/method.md
  §2 is written, instead of projecting sites and distinct distances once;
- ``compiled``: the full step with ``--compile`` (the per-pair work, forward and backward, through
  ``torch.compile``; its compile is paid in the untimed warm-up steps).

    python benchmarks/train_speed.py [--steps 20] [--threads 2]

Writes ``train_speed_<device>.json`` beside this script.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from dim_featurizer.train.build import build_setup
from dim_featurizer.train.cache import cached_dataset
from dim_featurizer.train.data import load_structures
from dim_featurizer.train.loop import TrainConfig, Trainer, epoch_batches, step_rng

from dim_featurizer.config import EncodingConfig
from dim_featurizer.console import Parser, ScriptHelp
from dim_featurizer.model import LocalEncoder
from dim_featurizer.provenance import machine
from dim_featurizer.readers import default_data_dir, read_split


def literal_environments(self, sites, rows, neighbor_index, distances, mask):
    """docs/method.md §2 as written: materialise B_ij (R, M, 3h) and apply each block to it."""
    d = (distances - self.distance_mean) / self.distance_std
    e = self.distance_embed(d.unsqueeze(-1))
    b = torch.cat([sites[rows].unsqueeze(1).expand(-1, e.shape[1], -1), sites[neighbor_index], e], dim=-1)
    logits = self.attention_out(self.attention_pre(b)).squeeze(-1).masked_fill(~mask, float("-inf"))
    return (torch.softmax(logits, -1).unsqueeze(-1) * self.value_out(self.value_pre(b))).sum(1)


def run_steps(trainer: Trainer, batches, steps: int) -> tuple[float, int]:
    crystals, start = 0, time.perf_counter()
    for i in range(steps):
        losses = trainer.losses(trainer.model, batches[i], step_rng(0, 0, i))
        trainer.optimizer.zero_grad()
        losses.total.backward()
        trainer.optimizer.step()
        crystals += len(batches[i])
    return time.perf_counter() - start, crystals


def main() -> None:
    p = Parser(description=__doc__, formatter_class=ScriptHelp)
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder ($DIM_DATA_DIR)")
    p.add_argument("--steps", type=int, default=20, help="training steps timed")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--device", default="cpu", help="torch device of the network")
    p.add_argument("--cache-dir", default=".cache/dim-encodings", help="encoding cache of dim-train")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = args.data_dir
    structures = load_structures(data / "mp2018_e_form_gap.json.gz", split=data / "mp2018_folds.json")
    dataset, _ = cached_dataset(structures, EncodingConfig(), args.cache_dir, n_jobs=-1)
    n_train = len(read_split(data / "mp2018_folds.json")["train"])
    results = {}
    variants = {
        "full": (False, False, False),
        "ablation": (True, False, False),
        "literal": (False, True, False),
        "compiled": (False, False, True),
    }
    for name, (only_other, literal, compiled) in variants.items():
        config = TrainConfig(only_other=only_other, compile=compiled)
        trainer = Trainer(build_setup(dataset, config, EncodingConfig(), device=args.device), "/tmp/unused-run")
        batches = epoch_batches(dataset.n_sites, trainer.train_idx, config.batch_sites, 0, 0)
        original = LocalEncoder.environments
        if literal:
            LocalEncoder.environments = literal_environments
        try:
            run_steps(trainer, batches, 2)  # warm-up
            seconds, crystals = run_steps(trainer, batches[2:], args.steps)
        finally:
            LocalEncoder.environments = original
        rate = crystals / seconds
        results[name] = {
            "crystals_per_second": rate,
            "seconds_per_epoch": len(trainer.train_idx) / rate,
            "steps": args.steps,
        }
    for r in results.values():
        r["full_speedup"] = results["full"]["crystals_per_second"] / r["crystals_per_second"]
    print(f"{len(dataset)} encoded training crystals of {n_train} ids; {args.steps} steps of 1,200 unique sites")
    print(f"{'step':10s} {'crystals/s':>11s} {'s/epoch':>9s} {'full is faster by':>18s}")
    for name, r in results.items():
        print(f"{name:10s} {r['crystals_per_second']:11.1f} {r['seconds_per_epoch']:9.0f} {r['full_speedup']:17.2f}x")
    report = {"results": results, "threads": args.threads, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    report["machine"]["torch_threads"] = args.threads
    out = Path(__file__).with_name(f"train_speed_{torch.device(args.device).type}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
