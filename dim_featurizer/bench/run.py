"""``run_benchmark``: the whole protocol as one Python call; ``dim-bench`` and the tutorial call it."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from dim_featurizer.files import write_csv, write_json
from dim_featurizer.provenance import run_record
from dim_featurizer.readers import default_data_dir
from dim_featurizer.sampling import draw_subsets

from . import report
from .protocol import MODELS, run_fits
from .representations import cached_features, check_pretraining, make_featurizer, representation_key, weights_used
from .representations import representations as all_representations
from .tasks import TASKS, load_task

BUDGETS = (50, 100, 250, 1000)


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` produced.

    Attributes:
        fits: one row per fit (task, representation, model, budget, draw, mae, n_test, ...).
        missing: ``task/representation`` pairs not fitted (``report_only``).
        out: the folder holding the written outputs (None when nothing was written).
    """

    fits: pd.DataFrame
    missing: list[str]
    out: Path | None


def print_stderr(message: str) -> None:
    """Print one log line on stderr (the harness's default ``log``)."""
    print(message, file=sys.stderr, flush=True)


def _fits_part(cache_dir: Path, protocol: list, task: str, rep: str) -> Path:
    """Where one (task, representation) set of fits is stored, keyed by the protocol and the weights.

    One part per pair, written atomically, so a killed run keeps every finished one.
    """
    digest = hashlib.sha256(f"{json.dumps(protocol)}{representation_key(rep, make_featurizer(rep))}".encode())
    return cache_dir / "fits" / f"{task}-{rep}-{digest.hexdigest()[:12]}.csv"


def run_benchmark(
    out: str | Path | None = "results",
    tasks: Sequence[str] = TASKS,
    representations: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    budgets: Sequence[int] = BUDGETS,
    draws: int = 100,
    test_limit: int | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    cache_dir: str | Path = ".cache/dim-bench",
    n_jobs: int = -1,
    featurize_only: bool = False,
    report_only: bool = False,
    tsne: bool = True,
    pbar: bool = True,
    log: Callable[[str], None] | None = print_stderr,
) -> BenchmarkResult:
    """Featurise (cached), fit every seeded subset, and write the results, tables and plots.

    Args:
        out: folder for fits.csv, summary.csv, win_rates.csv, tables.md, plots and
            run.json; None writes nothing there (the fits are still returned).
        tasks: any of ``e_form`` (eV/atom), ``gap`` (eV), ``phonons`` (cm⁻¹).
        representations: names from :func:`representations.representations`; None for all.
        models: ``linear`` (least squares), ``ridge`` (RidgeCV) and/or ``mlp`` (one 64-unit ReLU
            layer); None for all three.
        budgets: labelled training crystals per fit.
        draws: seeded draws per budget, shared by every representation (paired).
        test_limit: only the first N test crystals (quick looks; results use all).
        seed: seed of the draws.
        data_dir: the data folder; None for ``$DIM_DATA_DIR`` or ``../shared/data``.
        cache_dir: feature cache and stored fits (resumable).
        n_jobs: parallel featurisation chunks and fits (joblib; -1 all cores).
        featurize_only: fill the feature cache and stop.
        report_only: write outputs from stored fits only; pairs never fitted are listed in ``missing``.
        tsne: draw the t-SNE of trained and untrained DIM test vectors.
        pbar: progress bars.
        log: called with one line per step (None for silence).

    Each feature is standardised over the task's whole unlabelled pool (which is featurised in full;
    its labels are never read). Protocol v1, which standardised over each labelled subset, is archived
    in ``results/v1`` as data only.

    Returns:
        The :class:`BenchmarkResult`.

    Raises:
        ValueError: an unknown task or representation, or DIM weights whose
            recorded pretraining read a label or a test id.
    """
    say = log or (lambda message: None)
    models = list(models or MODELS)
    reps = list(representations or all_representations())
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    cache_dir = Path(cache_dir)
    key = [draws, list(budgets), seed, test_limit, models, "pool"]  # "pool": protocol v2's scaler
    settings = {
        "protocol": "v2",
        "tasks": list(tasks),
        "representations": reps,
        "models": list(models),
        "budgets": list(budgets),
        "draws": draws,
        "test_limit": test_limit,
        "seed": seed,
        "data_dir": str(data_dir),
        "cache_dir": str(cache_dir),
    }
    all_fits, units, missing, drawn = [], {}, [], {}
    for name in tasks:
        task = load_task(name, data_dir, test_limit)
        units[name] = task.unit
        say(f"{name}: pool {len(task.pool)}, test {len(task.test)}, target {task.target!r} ({task.unit})")
        for rep in reps:
            if rep.startswith("dim"):
                check_pretraining(make_featurizer(rep), [str(i) for i in task.test.index])
        subsets = draw_subsets(len(task.pool), list(budgets), draws, seed)
        needed = pd.concat([task.pool["structure"], task.test["structure"]])
        folder = cache_dir / task.source.split(".")[0]
        features = partial(cached_features, structures=needed, cache_dir=folder, pbar=pbar, n_jobs=n_jobs)
        for rep in reps:
            if featurize_only:
                say(f"{name}/{rep}: featurising {len(needed)} crystals (cached)")
                features(rep)
                continue
            part = _fits_part(cache_dir, key, name, rep)
            if not part.is_file():
                if report_only:
                    missing.append(f"{name}/{rep}")
                    continue
                say(
                    f"{name}/{rep}: featurising {len(needed)} crystals (cached), then {len(subsets) * len(models)} fits"
                )
                frame = features(rep)
                fits = run_fits(
                    name, {rep: frame}, task.pool, task.test, task.target, subsets, tuple(models), n_jobs, pbar
                )
                fits["failed_featurisations"] = int(frame.isna().all(axis=1).sum())
                write_csv(part, fits)
            else:
                say(f"{name}/{rep}: stored fits reused ({part.name})")
            all_fits.append(pd.read_csv(part, float_precision="round_trip"))
        if out is not None and tsne and not featurize_only and {"dim", "dim-untrained"} <= set(reps):
            target = Path(out) / f"tsne_{task.source.split('.')[0]}.png"
            if task.source not in drawn:  # e_form and gap share their test crystals: one embedding
                say(f"{name}: t-SNE of the test vectors -> {target}")
                Path(out).mkdir(parents=True, exist_ok=True)
                vectors = {rep: features(rep).loc[task.test.index].to_numpy() for rep in ("dim", "dim-untrained")}
                drawn[task.source] = report.tsne_plot(vectors, report.metal_halide(task.test["structure"]), target)
    if featurize_only:
        say(f"features cached in {cache_dir}")
        return BenchmarkResult(pd.DataFrame(), missing, None)
    fits = pd.concat(all_fits, ignore_index=True) if all_fits else pd.DataFrame()
    if out is not None and len(fits):
        _write_outputs(fits, Path(out), units, reps, missing, settings)
    say(
        f"{len(fits)} fits"
        + (f"; results in {out}" if out is not None else "")
        + (f"; not run yet: {missing}" if missing else "")
    )
    return BenchmarkResult(fits, missing, None if out is None else Path(out))


def _write_outputs(fits: pd.DataFrame, out: Path, units: dict, reps: list, missing: list, settings: dict) -> None:
    """The report's tables and plots, and run.json (settings, the weights each DIM column used, the machine)."""
    report.write_report(fits, out, units)
    weights = {rep: weights_used(make_featurizer(rep)) for rep in reps if rep.startswith("dim")}
    write_json(out / "run.json", run_record(settings=settings, weights=weights, missing=missing))
