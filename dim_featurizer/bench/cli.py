"""``dim-bench``: the command-line face of :func:`run.run_benchmark`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dim_featurizer.readers import default_data_dir

from .protocol import ALL_MODELS
from .representations import representations
from .run import BUDGETS, run_benchmark
from .tasks import TASKS


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (representation names come from the weights manifest)."""
    p = argparse.ArgumentParser(
        prog="dim-bench", description="Small-label benchmark of DIM features (docs/method.md §4)."
    )
    names = list(representations())
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/dim-bench"))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--representations", nargs="+", default=names, choices=names)
    p.add_argument("--models", nargs="+", choices=ALL_MODELS, help="default: the protocol's own")
    p.add_argument(
        "--protocol",
        default="v2",
        choices=["v1", "v2"],
        help="v2: scaler fitted on the unlabelled pool, RidgeCV added; v1: scaler on each labelled subset",
    )
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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    options = vars(build_parser().parse_args(argv))  # every dest but the two negations is a run_benchmark argument
    tsne, pbar = not options.pop("no_tsne"), not options.pop("no_progress")
    run_benchmark(**options, tsne=tsne, pbar=pbar)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
