"""``dim-bench``: featurise (cached), fit every subset, write results, tables and plots."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.provenance import machine
from dim_featurizer.readers import default_data_dir

from . import report
from .protocol import MODELS, run_fits
from .representations import REPRESENTATIONS, cached_features, check_pretraining_card, representation_key
from .tasks import TASKS, draw_subsets, load_task

BUDGETS = (50, 100, 250, 1000)


def build_parser() -> argparse.ArgumentParser:
    """The command's parser."""
    p = argparse.ArgumentParser(prog="dim-bench", description="Small-label benchmark of DIM features (METHOD.md §4).")
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/dim-bench"))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--representations", nargs="+", default=list(REPRESENTATIONS), choices=list(REPRESENTATIONS))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    p.add_argument("--draws", type=int, default=100, help="seeded draws per budget (quick runs: fewer)")
    p.add_argument("--test-limit", type=int, help="quick runs: only the first N test crystals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=-1, help="parallel featurisation chunks and fits (joblib)")
    p.add_argument(
        "--featurize-only", action="store_true", help="fill the feature cache and stop (e.g. OFM ahead of the fits)"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the outputs from the stored fits only; (task, representation) pairs not run yet are listed",
    )
    p.add_argument("--no-tsne", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def _fits_part(args: argparse.Namespace, task: str, rep: str) -> Path:
    """Where one (task, representation) set of fits is stored, keyed by the protocol and the weights.

    One part per pair, written atomically, so a killed run keeps every finished one.
    """
    protocol = json.dumps([args.draws, args.budgets, args.seed, args.test_limit, args.models])
    digest = hashlib.sha256(f"{protocol}{representation_key(rep, REPRESENTATIONS[rep]())}".encode()).hexdigest()
    return args.cache_dir / "fits" / f"{task}-{rep}-{digest[:12]}.csv"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pbar = not args.no_progress
    all_fits, units, missing, drawn = [], {}, [], {}
    for name in args.tasks:
        task = load_task(name, args.data_dir, args.test_limit)
        units[name] = task.unit
        for rep in args.representations:
            if rep.startswith("dim"):
                check_pretraining_card(REPRESENTATIONS[rep](), [str(i) for i in task.test.index])
        subsets = draw_subsets(len(task.pool), args.budgets, args.draws, args.seed)
        used = np.unique(np.concatenate(list(subsets.values())))
        needed = pd.concat([task.pool["structure"].iloc[used], task.test["structure"]])
        pool = task.pool.iloc[used]
        remapped = {k: np.searchsorted(used, v) for k, v in subsets.items()}

        folder = args.cache_dir / task.source.split(".")[0]
        features = partial(cached_features, structures=needed, cache_dir=folder, pbar=pbar, n_jobs=args.n_jobs)

        for rep in args.representations:
            if args.featurize_only:
                features(rep)
                continue
            part = _fits_part(args, name, rep)
            if not part.is_file():
                if args.report_only:
                    missing.append(f"{name}/{rep}")
                    continue
                frame = features(rep)
                fits = run_fits(
                    name, {rep: frame}, pool, task.test, task.target, remapped, tuple(args.models), args.n_jobs, pbar
                )
                fits["failed_featurisations"] = int(frame.isna().all(axis=1).sum())
                part.parent.mkdir(parents=True, exist_ok=True)
                fits.to_csv(part.with_suffix(".tmp"), index=False)
                os.replace(part.with_suffix(".tmp"), part)
            all_fits.append(pd.read_csv(part))
        if not (args.no_tsne or args.featurize_only) and {"dim", "dim-untrained"} <= set(args.representations):
            target = args.out / f"tsne_{name}.png"
            if task.source in drawn:  # e_form and gap share their test crystals: one embedding
                shutil.copyfile(drawn[task.source], target)
                continue
            vectors = {rep: features(rep).loc[task.test.index].to_numpy() for rep in ("dim", "dim-untrained")}
            drawn[task.source] = report.tsne_plot(vectors, report.metal_halide(task.test["structure"]), target)
    if args.featurize_only:
        print(f"dim-bench: features cached in {args.cache_dir}")
        return 0
    fits = pd.concat(all_fits, ignore_index=True)
    fits.to_csv(args.out / "fits.csv", index=False)
    report.summary(fits).to_csv(args.out / "summary.csv", index=False)
    if "dim" in args.representations and len(args.representations) > 1:
        report.win_rates(fits).to_csv(args.out / "win_rates.csv", index=False)
    report.box_plots(fits, args.out, units)
    (args.out / "tables.md").write_text(report.results_markdown(fits, units))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    meta = {"settings": settings, "missing": missing, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    (args.out / "run.json").write_text(json.dumps(meta, indent=2))
    print(f"dim-bench: {len(fits)} fits; results in {args.out}" + (f"; not run yet: {missing}" if missing else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
