"""``dim-bench sweep``: proxy runs of pretraining variants, judged by probes, never by the test split.

Each variant is a short run on the first 4,000 training-split crystals of
mp2018 (8 epochs), then ``dim-train diagnose`` (label-free probes on its
validation crystals) and ``dim-bench probe`` (formation energy and band gap
labels of training-split crystals only; MAE on 2,000 training-split crystals
the proxy never saw). Resumable: a variant whose outputs exist is skipped,
and a killed fit resumes from its checkpoint. Each variant's folder is
``<runs-dir>/<variant>``.

    dim-bench sweep --shard 0/2 &   # two at once, one thread each
    dim-bench sweep --shard 1/2 &
    dim-bench sweep --table         # writes variants.md from what has finished
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.config import READOUTS
from dim_featurizer.console import Parser
from dim_featurizer.files import write_text
from dim_featurizer.readers import default_data_dir

#: Where the sweep's run folders and variants.md live, by default.
RUNS = Path("runs/proxy-sweep")
PROXY = ["--limit", "4000", "--epochs", "8", "--patience", "100"]
#: The first runs' objective and optimiser, stated in full: every variant starts from it.
BASELINE = ["--local-weighting", "uniform", "--permutation", "sites", "--reconstruction", "0"]
BASELINE += ["--lr", "8.12e-4", "--weight-decay", "0.01", "--grad-clip", "5", "--no-amsgrad", "--eps", "1e-8"]
BASELINE += ["--hidden", "64", "--element-reconstruction", "0"]  # the trainer's defaults moved on (r4)
DISTANCE_SUPERCELL = ["--local-weighting", "distance", "--permutation", "supercell"]
REFERENCE_OPTIMISER = ["--lr", "1e-4", "--amsgrad", "--eps", "1e-7", "--weight-decay", "1e-4", "--grad-clip", "0"]
#: v5, the options of the weights r2 (the default before r4).
V5 = [*DISTANCE_SUPERCELL, "--reconstruction", "1.0", *REFERENCE_OPTIMISER]
VARIANTS = {
    "v0-baseline": [],
    "v1-distance": ["--local-weighting", "distance"],
    "v2-distance-supercell": DISTANCE_SUPERCELL,
    "v3-distance-supercell-recon": [*DISTANCE_SUPERCELL, "--reconstruction", "1.0"],
    "v4-distance-recon": ["--local-weighting", "distance", "--reconstruction", "1.0"],
    "v5-v3-reference-optimiser": V5,
    "v6-v3-d64": [*DISTANCE_SUPERCELL, "--reconstruction", "1.0", "--global-dim", "64"],
    "v7-v3-beta0.01": [*DISTANCE_SUPERCELL, "--reconstruction", "1.0", "--beta", "0.01"],
    "v8-v3-pair": [*DISTANCE_SUPERCELL, "--reconstruction", "1.0", "--local-sample", "pair"],
    "v9-v2-reference-optimiser": [*DISTANCE_SUPERCELL, *REFERENCE_OPTIMISER],
    "v10-v5-pair": [*V5, "--local-sample", "pair"],
    "v11-v5-masked": [*V5, "--masked-sites", "1.0"],
    "v12-v5-masked0.25": [*V5, "--masked-sites", "0.25"],
    "v13-v5-jitter": [*V5, "--jitter", "0.05"],
    # A second seed of v5 and v12, to tell v12's 1% lead from one run's noise.
    "v14-v5-seed1": [*V5, "--seed", "1"],
    "v15-v12-seed1": [*V5, "--masked-sites", "0.25", "--seed", "1"],
    # Richer reconstruction targets: each site's first shell (composition, coordination number, d_nn).
    "v16-v5-shell": [*V5, "--shell-reconstruction", "1.0"],
    # Capacity: twice the embedding and attention width (the pooled readout keeps its 128 values).
    "v17-v5-hidden128": [*V5, "--hidden", "128"],
    "v18-v17-seed1": [*V5, "--hidden", "128", "--seed", "1"],
    # Depth: a second attention block, so μ_i reads its neighbours' environments (two shells).
    "v19-v5-attention2": [*V5, "--attention-layers", "2"],
    # v5 with the compiled pair kernel: a speed option, so its probes must match v5's within proxy noise.
    "v20-v5-compiled": [*V5, "--compile"],
    # Chemistry-aware false samples: a fourth global false crystal, the crystal with one atom removed.
    "v21-v5-vacancy": [*V5, "--vacancies", "--compile"],
    # Third seeds of v5 and of the capacity variant, to size the proxy's seed noise (compiled: same probes).
    "v22-v5-seed2": [*V5, "--seed", "2", "--compile"],
    "v23-v17-seed2": [*V5, "--hidden", "128", "--seed", "2", "--compile"],
    # A 3x learning rate, on seeds 0 and 2 (compare v5 / v20 and v22): 8 proxy epochs may undertrain at 1e-4.
    "v24-v5-lr3e-4": [*V5, "--lr", "3e-4", "--compile"],
    "v25-v5-lr3e-4-seed2": [*V5, "--lr", "3e-4", "--seed", "2", "--compile"],
    # Masked sites at 0.25 on a third seed (compare v22), and with width (compare v17).
    "v26-v12-seed2": [*V5, "--masked-sites", "0.25", "--seed", "2", "--compile"],
    "v27-v17-masked0.25": [*V5, "--hidden", "128", "--masked-sites", "0.25", "--compile"],
    # Magpie's element table as reconstruction targets (site properties from μ_i, crystal statistics from μ_G):
    # DIM + Magpie beats DIM alone, so the encoder may lack what Magpie's table carries. Seeds 0 and 2.
    "v28-v5-elements": [*V5, "--element-reconstruction", "1.0", "--compile"],
    "v29-v28-seed2": [*V5, "--element-reconstruction", "1.0", "--seed", "2", "--compile"],
    # The element table with width (compare v17, v23): a wider μ_i may keep the shell beside the centre's table.
    "v30-v17-elements": [*V5, "--hidden", "128", "--element-reconstruction", "1.0", "--compile"],
    "v31-v30-seed2": [*V5, "--hidden", "128", "--element-reconstruction", "1.0", "--seed", "2", "--compile"],
}
#: Options that change the encoder's shape: such a variant also probes its own initialisation.
ARCHITECTURE_OPTIONS = ("--hidden", "--attention-layers", "--global-dim")


def run_module(module: str, *args: str) -> None:
    """Run ``python -m module args`` with one thread (two variants share the two cores)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", module, *args], check=True, env=env)


def run_variant(name: str, options: list[str], runs: Path = RUNS, data: Path | None = None) -> None:
    """Fit, diagnose and probe one variant (each step skipped when its output exists)."""
    run_dir, data = runs / name, Path(data or default_data_dir())
    common = [str(data / "mp2018_e_form_gap.json.gz"), "--split", str(data / "mp2018_folds.json")]
    common += ["--run-dir", str(run_dir), "--no-progress", *PROXY, *BASELINE, *options]
    if not (run_dir / "run.json").is_file() or json.loads((run_dir / "run.json").read_text())["epochs_done"] < 8:
        run_module("dim_featurizer.train.cli", "fit", *common, "--resume")
    if not (run_dir / "diagnosis.json").is_file():
        run_module("dim_featurizer.train.cli", "diagnose", *common)
    if not (run_dir / "devprobe.csv").is_file():
        # Another run seed draws other training and validation crystals: such a run probes its own control.
        reseeded = "--seed" in options and options[options.index("--seed") + 1] != "0"
        encoders = ["kept", "untrained"] if reseeded else ["kept"]
        if set(ARCHITECTURE_OPTIONS) & set(options):  # its own initialisation is the like-for-like control
            encoders.append("start")
        if name == "v0-baseline":
            encoders = ["kept", "start", "untrained"]
        run_module("dim_featurizer.bench.cli", "probe", *common, "--draws", "3", "--encoders", *encoders)


KEYS = ["target", "model", "budget", "readout"]


def probe_medians(path: Path) -> dict[str, pd.Series]:
    """Median MAE per development-probe cell (target, model, budget, readout) of each encoder in a
    ``devprobe.csv``, by encoder name (``kept``, ``start``, ``untrained``)."""
    fits = pd.read_csv(path)
    return {encoder: group.groupby(KEYS)["mae"].median() for encoder, group in fits.groupby("encoder")}


def ratio_summary(kept: pd.Series, reference: pd.Series) -> list[str]:
    """Per readout (μ_G, pooled): the geometric mean over the cells of kept / reference, and the cells won."""
    ratio = kept / reference
    cells = [ratio.xs(r, level="readout") for r in READOUTS]
    return [f"{np.exp(np.log(c).mean()):.3f} ({int((c < 1).sum())})" for c in cells]


def scores(runs: Path = RUNS) -> str:
    """Per variant and readout: geometric mean over the 8 development-probe cells (2 targets x 2 models x
    100 and 1,000 labels) of its median MAE divided by the untrained control's, and in how many cells it wins.

    The control is the variant's own when its probe ran one (a run with another seed scores other crystals),
    else v0-baseline's, on the same crystals. A variant that changes the encoder's shape is also scored
    against its own seeded initialisation (``start``), the like-for-like control of a wider or deeper net."""
    control = probe_medians(runs / "v0-baseline" / "devprobe.csv")["untrained"]
    lines = [
        "| variant | μ_G: MAE / untrained (wins of 8) | pooled: MAE / untrained (wins of 8) "
        "| μ_G / pooled: MAE / own initialisation (wins of 8) |",
        "| --- | --- | --- | --- |",
    ]
    for name in VARIANTS:
        if not (runs / name / "devprobe.csv").is_file():
            continue
        medians = probe_medians(runs / name / "devprobe.csv")
        cells = ratio_summary(medians["kept"], medians.get("untrained", control))
        start = " / ".join(ratio_summary(medians["kept"], medians["start"])) if "start" in medians else "–"
        if name == "v0-baseline":
            start = "–"  # its start is v0's own initialisation, the same shape as the untrained control
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {start} |")
    return "\n".join(lines) + "\n"


def full_run_scores(run_dirs: list[Path], control: Path, reference: Path) -> str:
    """The same summary for full runs, which all score the same validation crystals (seed 0, all training
    crystals): each run's ``devprobe.csv`` against the untrained rows of ``control``'s, against its own
    initialisation when its probe ran one, and against the kept encoder of ``reference`` (e.g. the default)."""
    untrained = probe_medians(control / "devprobe.csv")["untrained"]
    base = probe_medians(reference / "devprobe.csv")["kept"]
    lines = [
        "| run | μ_G / pooled: geometric-mean MAE | MAE / untrained (wins of 8) | MAE / own initialisation "
        f"| MAE / {reference.name} |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in run_dirs:
        medians = probe_medians(run / "devprobe.csv")
        level = " / ".join(f"{np.exp(np.log(medians['kept'].xs(r, level='readout')).mean()):.4f}" for r in READOUTS)
        start = " / ".join(ratio_summary(medians["kept"], medians["start"])) if "start" in medians else "–"
        cells = [" / ".join(ratio_summary(medians["kept"], other)) for other in (untrained, base)]
        lines.append(f"| {run.name} | {level} | {cells[0]} | {start} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def table(budget: int = 1000, with_probes: bool = True, runs: Path = RUNS) -> str:
    """One row per finished variant: label-free probes, then development-probe medians (eV/atom, eV)."""
    rows = []
    for name in VARIANTS:
        run_dir = runs / name
        if not (run_dir / "devprobe.csv").is_file():
            continue
        probes = json.loads((run_dir / "diagnosis.json").read_text())["probes"]
        fits = pd.read_csv(run_dir / "devprobe.csv")
        medians = fits.groupby(["encoder", "target", "model", "budget", "readout"])["mae"].median()
        for encoder in ("kept",) if name != "v0-baseline" else ("kept", "start", "untrained"):
            label = name if encoder == "kept" else f"{encoder} (initialisation)" if encoder == "start" else encoder
            p = probes[encoder]
            row = {"variant": label}
            if with_probes:
                row |= {
                    "options": " ".join(VARIANTS[name]) if encoder == "kept" else "",
                    "Z / EN R²": f"{p['centre_Z_r2']:.2f} / {p['centre_EN_r2']:.2f}",
                    "shell EN / d_nn R²": f"{p['shell_EN_r2']:.2f} / {p['nn_distance_r2']:.2f}",
                    "mean props R² (μ_G / pooled)": f"{p['mean_properties_r2']:.2f} / "
                    f"{p['mean_properties_r2_pooled']:.2f}",
                    "active μ_G dims": f"{p['active_dims']}/{p['global_dim']}",
                }
            for target in ("e_form", "gap"):
                for readout in READOUTS:
                    cells = [f"{medians[encoder, target, m, budget, readout]:.3f}" for m in ("ridge", "mlp")]
                    row[f"{target} @{budget} {readout} ridge / MLP"] = " / ".join(cells)
            rows.append(row)
    return markdown_table(pd.DataFrame(rows))


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table, its columns as the header."""
    header = "| " + " | ".join(frame.columns) + " |\n|" + " --- |" * len(frame.columns) + "\n"
    return header + "\n".join("| " + " | ".join(map(str, r)) + " |" for r in frame.itertuples(index=False)) + "\n"


def sweep_parser(prog: str, description: str, runs: Path) -> Parser:
    """A sweep command's parser with the options every sweep has: ``--runs-dir`` and ``--data-dir``."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("--runs-dir", type=Path, default=runs, help="folder of the variants' run folders")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: $DIM_DATA_DIR or ../shared/data)"
    )
    return parser


def build_parser() -> Parser:
    """The parser of ``dim-bench sweep``."""
    parser = sweep_parser("dim-bench sweep", __doc__.splitlines()[0], RUNS)
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th variant starting at i")
    parser.add_argument("--only", nargs="+", help="run these variants only")
    parser.add_argument("--table", action="store_true", help="write variants.md from the finished variants")
    parser.add_argument(
        "--full-runs", nargs="+", type=Path, help="print the development-probe summary of these full run folders"
    )
    parser.add_argument(
        "--control", type=Path, default=Path("runs/dim-mp2018"), help="full run whose probe holds the untrained rows"
    )
    parser.add_argument(
        "--reference", type=Path, default=Path("runs/dim-mp2018-r2"), help="full run the others are compared with"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sweep's variants (or write its table); returns the exit status."""
    args = build_parser().parse_args(argv)
    runs = args.runs_dir
    if args.full_runs:
        print(full_run_scores(args.full_runs, args.control, args.reference))
        return 0
    if args.table:
        write_text(
            runs / "variants.md",
            "Label-free probes and development-probe medians at 1,000 labels:\n\n"
            + table(1000, runs=runs)
            + "\nDevelopment-probe medians at 100 labels:\n\n"
            + table(100, with_probes=False, runs=runs)
            + "\nSummary against the untrained control (below 1: better than untrained):\n\n"
            + scores(runs),
        )
        print((runs / "variants.md").read_text())
        return 0
    i, n = map(int, args.shard.split("/"))
    for name in args.only or list(VARIANTS)[i::n]:
        run_variant(name, VARIANTS[name], runs, args.data_dir)
    return 0
