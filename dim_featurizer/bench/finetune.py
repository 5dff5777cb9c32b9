"""``run_finetune``: the paper's Fig. 7, fine-tuning from pretrained against random weights.

For each task, budget and seeded draw, a :class:`DIMRegressor` is fitted on the drawn labelled
crystals twice (``init="pretrained"`` and ``init="random"``, same draw, same seed) and scored on the
whole test set. Every fit is stored on its own, so a killed run loses no finished fit.
``dim-bench finetune`` is the command-line face.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.console import Parser, report_errors
from dim_featurizer.featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.files import write_csv, write_json, write_text
from dim_featurizer.provenance import run_record
from dim_featurizer.readers import default_data_dir
from dim_featurizer.regressor import DIMRegressor
from dim_featurizer.sampling import draw_subsets

from . import report
from .representations import check_pretraining, weights_used
from .run import BUDGETS, BenchmarkResult, earlier_results, print_stderr
from .tasks import TASKS, load_task

#: Draws per budget (the issue's protocol: 10 up to 250 labels, 5 at 1,000).
DRAWS = {50: 10, 100: 10, 250: 10, 1000: 5}
INITS = ("pretrained", "random")


def run_finetune(
    out: str | Path | None = "results/finetune",
    tasks: Sequence[str] = TASKS,
    budgets: Sequence[int] = BUDGETS,
    draws: dict[int, int] | int | None = None,
    inits: Sequence[str] = INITS,
    weights: str | None = None,
    seed: int = 0,
    test_limit: int | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path = ".cache/dim-bench",
    device: str = "auto",
    max_epochs: int = 300,
    patience: int = 20,
    log: Callable[[str], None] | None = print_stderr,
    report_only: bool = False,
) -> BenchmarkResult:
    """Fine-tune on every seeded draw from both initialisations and write the results.

    Args:
        out: folder for fits.csv, summary.csv, win_rates.csv, tables.md, box plots and run.json
            (None writes nothing).
        tasks: any of ``e_form`` (eV/atom), ``gap`` (eV), ``phonons`` (cm⁻¹).
        budgets: labelled crystals per fit (20% of them are held out for early stopping).
        draws: draws per budget, as a dict or one number for all; None for :data:`DRAWS`. The
            draws are the representation benchmark's, so the two compare paired.
        inits: ``"pretrained"`` and/or ``"random"``.
        weights: the encoder's weights (None: the package default).
        seed: seed of the draws; each fit is seeded by its draw number.
        test_limit: only the first N test crystals (quick runs; results use all).
        data_dir: the data folder; None for ``$DIM_DATA_DIR`` or ``../shared/data``.
        cache_dir: stored fits (resumable), under ``finetune/``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        max_epochs, patience: passed to :class:`DIMRegressor`.
        log: called with one line per fit (None for silence).
        report_only: write the outputs from the stored fits only; fits not run yet are listed in
            ``missing`` (``task/init/budget/draw``) and in run.json.

    Returns:
        The :class:`BenchmarkResult`; its fits carry ``representation`` = the init, ``model`` =
        ``"fine-tune"``, the test MAE and the seconds each fit and prediction took.
    """
    say = log or (lambda message: None)
    counts = DRAWS if draws is None else draws if isinstance(draws, dict) else dict.fromkeys(budgets, draws)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    # One featuriser for the weights' provenance, the honesty guard and the test encodings.
    featurizer = DeepInfoMaxFeaturizer(weights=weights, device=device, pbar=False)
    source = weights_used(featurizer)
    # A fit is identified by what changes its result; the number of draws and budgets asked for does not,
    # so a run with more draws reuses the fits of one with fewer.
    identity = {
        "weights": source,
        "seed": seed,
        "test_limit": test_limit,
        "max_epochs": max_epochs,
        "patience": patience,
    }
    settings = {**identity, "budgets": list(budgets), "draws": {int(b): counts[b] for b in budgets}}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    store = Path(cache_dir) / "finetune"
    earlier = earlier_finetune_fits(out, identity)
    rows, units, missing = [], {}, []
    for name in tasks:
        task = load_task(name, data_dir, test_limit)
        units[name] = task.unit
        check_pretraining(featurizer, [str(i) for i in task.test.index])
        subsets = draw_subsets(len(task.pool), list(budgets), max(counts[b] for b in budgets), seed)
        y_test = task.test[task.target].to_numpy(float)
        test_crystals = None  # encoded on the first fit that needs them (a finished run re-encodes nothing)
        say(f"{name}: pool {len(task.pool)}, test {len(task.test)}, target {task.target!r} ({task.unit})")
        for budget, draw, init in ((b, d, i) for b in budgets for d in range(counts[b]) for i in inits):
            part = store / f"{name}-{init}-{budget}-{draw}-{digest}.csv"
            if not part.is_file() and (name, init, budget, draw) in earlier:
                write_csv(part, earlier[name, init, budget, draw])  # an empty cache resumes from the results
            if not part.is_file():
                if report_only:
                    missing.append(f"{name}/{init}/{budget}/{draw}")
                    continue
                if test_crystals is None:
                    test_crystals = featurizer.runner().encode(list(task.test["structure"]))[0]
                model = DIMRegressor(weights=weights, init=init, seed=draw, device=device)
                model.set_params(max_epochs=max_epochs, patience=patience)
                labelled = task.pool.iloc[subsets[budget, draw]]
                row = _one_fit(model, labelled["structure"], labelled[task.target], test_crystals, y_test)
                row.update(task=name, representation=init, model="fine-tune", budget=budget, draw=draw)
                write_csv(part, pd.DataFrame([row]))
                say(f"{name} {init} {budget} labels, draw {draw}: " + _timing(row, task.unit))
            rows.append(pd.read_csv(part, float_precision="round_trip"))
    fits = pd.concat(rows, ignore_index=True)
    if out is not None:
        out = Path(out)
        report.write_report(fits, out, units, reference="pretrained")
        columns = ["fit_seconds", "epochs", "predict_seconds"]
        timing = fits.groupby(["task", "budget", "representation"])[columns].median().reset_index()
        write_csv(out / "timing.csv", timing)
        if set(inits) == set(INITS):
            write_csv(out / "paired.csv", paired_statistics(fits))
            fixed = out.parent / "summary.csv"  # the representation benchmark's, beside results/finetune
            fixed_table = pd.read_csv(fixed) if fixed.is_file() else None
            write_text(out / "comparison.md", comparison_markdown(report.summary(fits), fits, fixed_table))
        medians = timing[["task", "budget", "representation", "fit_seconds"]].to_dict(orient="records")
        write_json(out / "run.json", run_record(settings=settings, missing=missing, median_fit_seconds=medians))
    say(
        f"{len(fits)} fine-tuning fits"
        + (f"; results in {out}" if out is not None else "")
        + (f"; not run yet: {len(missing)}" if missing else "")
    )
    return BenchmarkResult(fits, missing, None if out is None else Path(out))


def earlier_finetune_fits(out: str | Path | None, identity: dict) -> dict[tuple, pd.DataFrame]:
    """The fits an earlier run wrote to ``out/fits.csv`` under the same weights, seed, test limit and
    stopping rule (``run.json``), so that a run on a machine without the fit store loses no finished fit.

    Returns:
        ``(task, init, budget, draw)`` → that fit's one-row frame; empty when there are none.
    """
    earlier = earlier_results(out, identity)
    if earlier is None:
        return {}
    fits = earlier[0]
    keys = zip(fits["task"], fits["representation"], fits["budget"], fits["draw"])
    return {(t, i, int(b), int(d)): fits.iloc[[n]] for n, (t, i, b, d) in enumerate(keys)}


def paired_statistics(fits: pd.DataFrame) -> pd.DataFrame:
    """Pretrained against random start over the paired draws, per task and over all tasks.

    Returns:
        One row per task and one for ``all``: pairs, pretrained wins, the two-sided sign-test p, the
        Wilcoxon signed-rank p (per task), and the median of MAE(pretrained) / MAE(random) − 1.
    """
    from scipy.stats import binomtest, wilcoxon

    pairs = fits.pivot_table(index=["task", "budget", "draw"], columns="representation", values="mae").dropna()
    rows = []
    for task, group in [*pairs.groupby(level="task"), ("all", pairs)]:
        wins = int((group["pretrained"] < group["random"]).sum())
        rows.append(
            {
                "task": task,
                "pairs": len(group),
                "pretrained_wins": wins,
                "sign_test_p": binomtest(wins, len(group)).pvalue,
                "wilcoxon_p": wilcoxon(group["pretrained"], group["random"]).pvalue if task != "all" else np.nan,
                "median_relative_change": float((group["pretrained"] / group["random"] - 1).median()),
            }
        )
    return pd.DataFrame(rows)


def comparison_markdown(summary: pd.DataFrame, fits: pd.DataFrame, fixed: pd.DataFrame | None) -> str:
    """The results README's table: per task and budget, draws, median MAE from each start, the share of
    paired draws the pretrained start wins, and the best fixed-``dim``-feature model's median (when
    ``fixed``, the representation benchmark's summary, is given)."""
    wins = report.win_rates(fits, "pretrained").set_index(["task", "budget"])["win_rate"]
    medians = summary.pivot_table(index=["task", "budget"], columns="representation", values="median")
    draws = summary[summary["representation"] == "pretrained"].set_index(["task", "budget"])["fits"]
    lines = [
        "| task | labels | draws | pretrained | random | pretrained wins | best fixed `dim` model |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, budget in medians.index:
        digits = 1 if task == "phonons" else 3
        best = "–"
        if fixed is not None:
            rows = fixed[(fixed["task"] == task) & (fixed["budget"] == budget) & (fixed["representation"] == "dim")]
            if len(rows):
                top = rows.sort_values("median").iloc[0]
                best = f"{top['median']:.{digits}f} ({top['model']})"
        pre, rand = medians.loc[(task, budget), "pretrained"], medians.loc[(task, budget), "random"]
        lines.append(
            f"| {task} | {budget} | {int(draws[(task, budget)])} | {pre:.{digits}f} | {rand:.{digits}f} | "
            f"{wins[(task, budget)]:.0%} | {best} |"
        )
    return "\n".join(lines) + "\n"


def _timing(row: dict, unit: str) -> str:
    return (
        f"MAE {row['mae']:.4g} {unit}; fit {row['fit_seconds']:.1f} s ({row['epochs']} epochs), "
        f"predict {row['predict_seconds']:.1f} s"
    )


def _one_fit(model: DIMRegressor, X: pd.Series, y: pd.Series, test_crystals: list, y_test: np.ndarray) -> dict:
    """Fit on structures ``X`` and labels ``y``, then score the encoded test crystals.

    Returns MAE (the target's unit; a test crystal that cannot be encoded counts in ``n_failed``, not in
    the MAE), epochs, best epoch and seconds.
    """
    start = time.perf_counter()
    model.fit(X, y)
    fitted = time.perf_counter()
    good = np.array([c is not None for c in test_crystals])
    predictions = model.predict_encoded([c for c in test_crystals if c is not None])
    done = time.perf_counter()
    return {
        "mae": float(np.nanmean(np.abs(predictions - y_test[good]))),
        "n_test": int(good.sum()),
        "n_failed": int((~good).sum() + np.isnan(predictions).sum()),
        "epochs": len(model.history_),
        "best_epoch": model.best_epoch_,
        "fit_seconds": fitted - start,
        "predict_seconds": done - fitted,
        "device": str(model.runner_.device),
    }


def build_parser() -> Parser:
    """The parser of ``dim-bench finetune`` (its options are :func:`run_finetune`'s)."""
    p = Parser(
        prog="dim-bench finetune",
        description="Fine-tuning benchmark (paper Fig. 7): pretrained against random start, paired draws.",
    )
    p.add_argument("--out", type=Path, default=Path("results/finetune"), help="folder for the results")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="benchmark tasks")
    p.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS), help="labelled crystals per fit")
    p.add_argument("--draws", type=int, help="draws per budget for all budgets (default: 10, and 5 at 1,000)")
    p.add_argument("--inits", nargs="+", default=list(INITS), choices=INITS, help="starting weights")
    p.add_argument("--weights", help="the encoder's weights (default: the package default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    p.add_argument("--test-limit", type=int, help="quick runs: only the first N test crystals")
    p.add_argument("--data-dir", type=Path, help="data folder (default: $DIM_DATA_DIR or ../shared/data)")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/dim-bench"), help="stored fits (resumable)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--max-epochs", type=int, default=300, help="most epochs per fit")
    p.add_argument("--patience", type=int, default=20, help="epochs without a better validation MAE before stopping")
    p.add_argument("--report-only", action="store_true", help="write the outputs from the stored fits only")
    return p


def main(argv: list[str] | None = None) -> int:
    """``dim-bench finetune``: run :func:`run_finetune` from the command line; returns the exit status."""
    options = vars(build_parser().parse_args(argv))
    return report_errors("dim-bench finetune", lambda: run_finetune(**options))
