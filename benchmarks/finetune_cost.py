"""What one ``DIMRegressor`` fit costs, against its peer (frozen DIM features + RidgeCV) on the same labels.

Run it on an idle machine: ``python benchmarks/finetune_cost.py [--budgets 50 100 250] [--device cpu]``.
For each budget it draws labelled formation-energy crystals from the mp2018 training split (the full data
when ``$DIM_DATA_DIR`` or ``../shared/data`` has it, else the shipped sample), fits the regressor with its
defaults from the pretrained weights, and, in the same process on the same crystals, featurises them with
the same weights and fits RidgeCV. It writes ``finetune_cost_<device>.{json,txt}`` beside itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dim_featurizer import DeepInfoMaxFeaturizer, DIMRegressor
from dim_featurizer.bench.tasks import load_task
from dim_featurizer.console import Parser, ScriptHelp
from dim_featurizer.examples import sample_data_dir
from dim_featurizer.provenance import run_record
from dim_featurizer.readers import default_data_dir
from dim_featurizer.sampling import draw_subsets

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = Parser(description=__doc__, formatter_class=ScriptHelp)
    p.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 250], help="labelled crystals per fit")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--out", type=Path, default=HERE, help="folder for the outputs")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = default_data_dir()
    data = data if (data / "mp2018_e_form_gap.json.gz").is_file() else sample_data_dir()
    task = load_task("e_form", data, test_limit=10)
    subsets = draw_subsets(len(task.pool), args.budgets, 1, seed=0)
    rows = []
    for budget in args.budgets:
        labelled = task.pool.iloc[subsets[budget, 0]]
        X, y = labelled["structure"], labelled["e_form"].to_numpy()
        start = time.perf_counter()
        model = DIMRegressor(device=args.device, seed=0).fit(X, y)
        fine_tune = time.perf_counter() - start
        start = time.perf_counter()
        features = DeepInfoMaxFeaturizer(device=args.device, pbar=False).fit_transform(list(X))
        make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15))).fit(features, y)
        peer = time.perf_counter() - start
        rows.append(
            {
                "labels": budget,
                "fine_tune_s": round(fine_tune, 2),
                "epochs": len(model.history_),
                "s_per_epoch": round(fine_tune / len(model.history_), 3),
                "features_plus_ridge_s": round(peer, 2),
                "ratio": round(fine_tune / peer, 1),
            }
        )
        print(rows[-1], flush=True)
    report = run_record(rows=rows, data=str(data), device=args.device, threads=args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"finetune_cost_{args.device.split(':')[0]}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"DIMRegressor fit (defaults, pretrained start) against frozen DIM features + RidgeCV, same crystals, "
        f"one process; {report['hardware']}, {args.threads} torch threads, device {args.device}, {report['date']}",
        "| labels | fine-tune s | epochs | s / epoch | features + ridge s | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['labels']} | {r['fine_tune_s']} | {r['epochs']} | {r['s_per_epoch']} | {r['features_plus_ridge_s']} | "
        f"{r['ratio']}x |"
        for r in rows
    ]
    (args.out / f"finetune_cost_{args.device.split(':')[0]}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
