"""``dim-bench``: the representation benchmark (:func:`run.run_benchmark`), and its subcommands.

``dim-bench [options]`` runs the representation benchmark; ``dim-bench finetune``, ``dim-bench probe`` and
``dim-bench sweep`` run the fine-tuning benchmark, the development probe of a run and the proxy sweep.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dim_featurizer.console import Parser, report_errors
from dim_featurizer.readers import default_data_dir

from .protocol import MODELS
from .representations import representations
from .run import BUDGETS, run_benchmark
from .tasks import TASKS


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (representation names come from the weights manifest)."""
    p = Parser(
        prog="dim-bench",
        description="Small-label benchmark of DIM features (docs/method.md §4).",
        epilog="Subcommands: 'dim-bench finetune --help' (fine-tuning, Fig. 7), 'dim-bench probe --help' "
        "(development probe of a run), 'dim-bench sweep --help' (proxy sweep of pretraining variants), "
        "'dim-bench families --help' (the leave-family-out families), 'dim-bench family-sweep --help' (proxy "
        "levers ranked by the family probe).",
    )
    names = list(representations())
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder ($DIM_DATA_DIR)")
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for tables, plots and run.json")
    p.add_argument(
        "--cache-dir", type=Path, default=Path(".cache/dim-bench"), help="feature cache and stored fits (resumable)"
    )
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="benchmark tasks")
    p.add_argument("--representations", nargs="+", default=names, choices=names, help="feature sets compared")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="regressors fitted")
    p.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS), help="labelled crystals per fit")
    p.add_argument("--draws", type=int, default=100, help="seeded draws per budget (quick runs: fewer)")
    p.add_argument("--test-limit", type=int, help="quick runs: only the first N test crystals")
    p.add_argument(
        "--pool-limit", type=int, help="only a seeded random N of each pool (a peer too slow for the whole pool)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the labelled draws (and of --pool-limit)")
    p.add_argument("--n-jobs", type=int, default=-1, help="parallel featurisation chunks and fits (joblib)")
    p.add_argument(
        "--featurize-only", action="store_true", help="fill the feature cache and stop (e.g. OFM ahead of the fits)"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the outputs from the stored fits only; (task, representation) pairs not run yet are listed",
    )
    p.add_argument("--no-tsne", action="store_true", help="skip the t-SNE plots")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


#: Subcommands, by name: the module whose ``main`` runs each.
SUBCOMMANDS = {
    "finetune": "finetune",
    "probe": "devprobe",
    "sweep": "sweep",
    "families": "families",
    "family-sweep": "familysweep",
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, or a subcommand; returns the exit status."""
    import sys
    from importlib import import_module

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        return import_module(f"{__package__}.{SUBCOMMANDS[argv[0]]}").main(argv[1:])
    options = vars(build_parser().parse_args(argv))  # every dest but the two negations is a run_benchmark argument
    tsne, pbar = not options.pop("no_tsne"), not options.pop("no_progress")
    return report_errors("dim-bench", lambda: run_benchmark(**options, tsne=tsne, pbar=pbar))


if __name__ == "__main__":
    raise SystemExit(main())
