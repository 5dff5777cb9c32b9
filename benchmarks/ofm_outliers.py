"""Why OFM's test MAE is so large in results/: a few far-out test crystals, not typical errors.

For each mp2018 task, the first harness draw at 1,000 labels is fitted with
the harness's own MLP pipeline, for OFM and for untrained DIM (the peer, same
draw, same process). Printed per representation:

- test MAE and median absolute error (target units);
- the share of the summed error carried by the worst 1% of test crystals;
- the largest |z| of a test feature after the pipeline's standardisation,
  and how many test crystals have one above 50;
- how many features reach |z| > 50, and the median number of labelled
  crystals in which those features are non-zero.

Reads features from the harness cache only (run ``dim-bench`` first).

    python benchmarks/ofm_outliers.py --cache-dir .cache/dim-bench > benchmarks/ofm_outliers_cpu.txt
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.bench.protocol import make_model
from dim_featurizer.bench.representations import cached_features
from dim_featurizer.bench.tasks import load_task
from dim_featurizer.console import Parser
from dim_featurizer.provenance import machine
from dim_featurizer.readers import default_data_dir
from dim_featurizer.sampling import draw_subsets

REPS = ("ofm", "dim-untrained")


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder ($DIM_DATA_DIR)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/dim-bench"), help="feature cache of dim-bench")
    parser.add_argument("--budget", type=int, default=1000, help="labelled crystals per fit")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(
        "| task | representation | MAE | median AE | worst-1% error share | max abs z | test rows abs z > 50 "
        "| columns abs z > 50 (median labelled rows non-zero) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("e_form", "gap"):
        task = load_task(name, args.data_dir)
        rows = draw_subsets(len(task.pool), [args.budget], 1)[args.budget, 0]
        structures = task.pool["structure"].iloc[rows]
        folder = args.cache_dir / task.source.split(".")[0]
        for rep in REPS:
            frame = cached_features(rep, pd.concat([structures, task.test["structure"]]), folder, pbar=False)
            x_train, x_test = frame.iloc[: len(rows)].to_numpy(), frame.iloc[len(rows) :].to_numpy()
            y_train, y_test = task.pool[task.target].to_numpy(float)[rows], task.test[task.target].to_numpy(float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = make_model("mlp", 0).fit(x_train, y_train)
            error = np.abs(model.predict(x_test) - y_test)
            worst = np.sort(error)[-max(1, len(error) // 100) :].sum() / error.sum()
            z_all = np.abs(model[:-1].transform(x_test))
            z, far = z_all.max(axis=1), (z_all > 50).any(axis=0)
            nonzero = np.median((x_train[:, far] != 0).sum(axis=0)) if far.any() else 0
            print(
                f"| {name} | {rep} | {error.mean():.3g} | {np.median(error):.3g} | {worst:.2f} | "
                f"{z.max():.3g} | {(z > 50).sum()} of {len(z)} | {far.sum()} ({nonzero:.0f} of {len(rows)}) |"
            )


if __name__ == "__main__":
    main()
