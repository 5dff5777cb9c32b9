"""Tutorial 2: do DIM features help with few labels? One task, end to end, on a small budget.

Run it: ``python tutorials/02_benchmark.py [--draws 10] [--test-limit 253]``. It
uses Matbench phonons (fold 0), the paper's distribution-shift case: DIM was
pretrained on mp2018 structures only. The full protocol is ``dim-bench``.
"""

# %% Imports
import argparse
import tempfile
from pathlib import Path

import pandas as pd

from dim_featurizer.bench import report
from dim_featurizer.bench.protocol import run_fits
from dim_featurizer.bench.representations import REPRESENTATIONS, cached_features, check_pretraining_card
from dim_featurizer.bench.tasks import draw_subsets, load_task
from dim_featurizer.readers import default_data_dir

parser = argparse.ArgumentParser()
parser.add_argument("--draws", type=int, default=10)
parser.add_argument("--budgets", type=int, nargs="+", default=[50, 250])
parser.add_argument("--test-limit", type=int, default=None)
parser.add_argument("--representations", nargs="+", default=["dim", "dim-untrained", "magpie", "xrd"])
args = parser.parse_args()

# %% 1. The task: a labelled pool to draw from, and a fixed test set
task = load_task("phonons", default_data_dir(), test_limit=args.test_limit)
print(f"{task.name}: pool {len(task.pool)}, test {len(task.test)}, target {task.target!r} ({task.unit})")

# %% 2. Features, cached on disk (a rerun featurises nothing); DIM weights must vouch for their pretraining
for rep in args.representations:
    if rep.startswith("dim"):
        check_pretraining_card(REPRESENTATIONS[rep](), list(task.test.index))
cache = Path(tempfile.gettempdir()) / "dim-tutorial-cache"
structures = pd.concat([task.pool["structure"], task.test["structure"]])
features = {rep: cached_features(rep, structures, cache, pbar=False) for rep in args.representations}

# %% 3. The same seeded subsets for every representation: paired comparisons
subsets = draw_subsets(len(task.pool), args.budgets, args.draws)
fits = run_fits(task.name, features, task.pool, task.test, task.target, subsets, ("linear", "mlp"), pbar=False)

# %% 4. Median test MAE and the paired win rate of the first representation
table = report.summary(fits).pivot_table(index=["model", "budget"], columns="representation", values="median")
print(table.round(1).to_string())
wins = report.win_rates(fits, reference=args.representations[0])
print(wins.pivot_table(index=["model", "budget"], columns="baseline", values="win_rate").round(2).to_string())
