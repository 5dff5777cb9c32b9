"""Tutorial 2: do DIM features help with few labels? One task, end to end, in a few minutes.

Run it: ``python tutorials/02_benchmark.py [--draws 5] [--budgets 50 250]``.
It uses Matbench phonons (fold 0), the paper's distribution-shift case: the
DIM weights were pretrained on mp2018 structures only. It reads the full
data folder (``$DIM_DATA_DIR``, default ``../shared/data``) when it is there,
else the 300-crystal sample shipped with the package. The full protocol is
``dim-bench`` (the same ``run_benchmark`` with every task and 100 draws).
"""

# %% Imports
import argparse
import tempfile
import time
from pathlib import Path

from dim_featurizer.bench import run_benchmark
from dim_featurizer.bench.report import summary, win_rates
from dim_featurizer.examples import sample_data_dir
from dim_featurizer.readers import default_data_dir

if __name__ == "__main__":  # the fits run in worker processes, which re-import this file
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=5, help="seeded labelled subsets per budget")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 250])
    parser.add_argument("--test-limit", type=int, default=None, help="only the first N test crystals")
    parser.add_argument("--representations", nargs="+", default=["dim", "dim-untrained", "magpie"])
    parser.add_argument("--n-jobs", type=int, default=-1)
    args = parser.parse_args()
    data_dir = default_data_dir()
    if not (data_dir / "matbench_phonons.json.gz").is_file():
        data_dir = sample_data_dir()
    print(f"data: {data_dir}")
    started = time.perf_counter()

    # %% 1. Features (cached on disk: a rerun featurises nothing), then the same seeded subsets for every
    # representation, so the comparisons are paired; the DIM weights must record that their pretraining
    # read no label and no test id, or they are refused.
    result = run_benchmark(
        out=None,
        tasks=["phonons"],
        representations=args.representations,
        budgets=args.budgets,
        draws=args.draws,
        test_limit=args.test_limit,
        data_dir=data_dir,
        cache_dir=Path(tempfile.gettempdir()) / "dim-tutorial-cache",
        n_jobs=args.n_jobs,
        pbar=False,
        log=lambda line: print(f"[{time.perf_counter() - started:5.0f} s] {line}", flush=True),
    )

    # %% 2. Median test MAE (cm^-1) and the paired win rate of the first representation
    table = summary(result.fits).pivot_table(index=["model", "budget"], columns="representation", values="median")
    print(table.round(1).to_string())
    wins = win_rates(result.fits, reference=args.representations[0])
    print(f"share of paired draws where {args.representations[0]!r} has the lower MAE:")
    print(wins.pivot_table(index=["model", "budget"], columns="baseline", values="win_rate").round(2).to_string())
