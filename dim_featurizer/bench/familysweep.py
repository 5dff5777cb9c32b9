"""``dim-bench family-sweep``: proxy runs of pretraining levers, ranked by the leave-family-out probe.

Each variant is the trainer's defaults (the default weights' recipe) with one option changed, pretrained on
the first 4,000 training-split crystals outside the families (8 epochs, compiled), then scored by
``dim-bench probe --families`` against its own control (its seeded initialisation). Resumable: a variant
whose ``familyprobe.json`` exists is skipped, a killed fit resumes from its checkpoint and a killed probe
from its ``familyprobe.csv``. Each variant's folder is ``<runs-dir>/<variant>``.

    dim-bench family-sweep              # every variant, one after another (one thread each)
    dim-bench family-sweep --table      # writes variants.md from what has finished
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dim_featurizer.console import Parser
from dim_featurizer.files import write_text
from dim_featurizer.readers import default_data_dir

from .families import FAMILY_TABLE
from .familyprobe import CONTROL, PLAN, family_summary
from .sweep import markdown_table, run_module, sweep_parser

RUNS = Path("runs/family-sweep")
PROXY = ["--limit", "4000", "--epochs", "8", "--patience", "100", "--compile"]
#: Variant → (trainer options, extra probe options). One lever at a time against f0's defaults.
VARIANTS: dict[str, tuple[list[str], list[str]]] = {
    # The defaults, with the readouts and the combination a user could ship without retraining.
    "f0-default": ([], ["--readouts", "global_mu", "pooled", "--combos", "kept+start"]),
    # L2-SP: a pull toward the seeded initialisation, from step 0.
    "f1-anchor1": (["--anchor", "1"], []),
    "f2-anchor0.1": (["--anchor", "0.1"], []),
    # Jittered, strained true views: invariances that are not specific to the pretraining chemistry.
    "f4-jitter": (["--jitter", "0.05"], []),
    # Wider reconstruction targets: each site's first shell (composition, coordination, d_nn).
    "f5-shell": (["--shell-reconstruction", "1.0"], []),
    # Chemistry without labels: one hypothetical crystal per training crystal, elements swapped within groups.
    "f6-substitutions": (["--substitutions", "1"], []),
    # f6 on another seed (other proxy crystals' order, validation split, draws and control), and f6 with f5.
    "f8-f6-seed2": (["--substitutions", "1", "--seed", "2"], []),
    "f9-f6-shell": (["--substitutions", "1", "--shell-reconstruction", "1.0"], []),
    # Early stopping: the same run stopped after 2 of its 8 epochs (the later --epochs wins).
    "f7-epochs2": (["--epochs", "2"], []),
}


def epoch_limit(options: list[str]) -> int:
    """The value of the last ``--epochs`` in ``options`` (argparse keeps the last one given)."""
    last = len(options) - 1 - options[::-1].index("--epochs")
    return int(options[last + 1])


def run_variant(name: str, runs: Path = RUNS, data: Path | None = None, families: Path = FAMILY_TABLE) -> None:
    """Fit and family-probe one variant (each step skipped when its output exists)."""
    options, probe_options = VARIANTS[name]
    run_dir, data = runs / name, Path(data or default_data_dir())
    common = [str(data / "mp2018_e_form_gap.json.gz"), "--split", str(data / "mp2018_folds.json")]
    common += ["--run-dir", str(run_dir), "--no-progress", "--exclude-ids", str(families), *PROXY, *options]
    record = run_dir / "run.json"
    if not record.is_file() or json.loads(record.read_text())["epochs_done"] < epoch_limit([*PROXY, *options]):
        run_module("dim_featurizer.train.cli", "fit", *common, "--resume")
    if not (run_dir / "familyprobe.json").is_file():
        run_module("dim_featurizer.bench.cli", "probe", *common, "--families", str(families), *probe_options)


def table(runs: Path = RUNS) -> str:
    """Markdown: per finished variant, its μ_G median / its own control's, per family and model."""
    rows = []
    for name in VARIANTS:
        path = runs / name / "familyprobe.csv"
        if not (runs / name / "familyprobe.json").is_file():
            continue
        summary = family_summary(pd.read_csv(path))
        for features, group in summary.groupby("features", sort=False):
            if features == CONTROL:
                continue
            row = {"variant": name if features == "kept" else f"{name} {features}"}
            for (family, model), value in group.set_index(["family", "model"])["vs_control"].items():
                row[f"{family} {model}@{PLAN[model][0]}"] = f"{value:.3f}"
            row["worst"] = f"{group['vs_control'].max():.3f}"
            rows.append(row)
    if not rows:
        return "no finished variant\n"
    return markdown_table(pd.DataFrame(rows).fillna("–"))


def build_parser() -> Parser:
    """The parser of ``dim-bench family-sweep``."""
    parser = sweep_parser("dim-bench family-sweep", __doc__.splitlines()[0], RUNS)
    parser.add_argument("--families", type=Path, default=FAMILY_TABLE, help="the family table (dim-bench families)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), help="run these variants only")
    parser.add_argument("--table", action="store_true", help="write variants.md from the finished variants")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the variants (or write the table); returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.table:
        text = (
            "Leave-family-out probe of proxy variants: median MAE / the variant's own control (its seeded "
            "initialisation); below 1 the pretraining helped on a family it never saw.\n\n" + table(args.runs_dir)
        )
        write_text(args.runs_dir / "variants.md", text)
        print(text)
        return 0
    for name in args.only or list(VARIANTS):
        run_variant(name, args.runs_dir, args.data_dir, args.families)
    return 0
