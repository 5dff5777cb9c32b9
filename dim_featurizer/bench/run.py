"""``run_benchmark``: the whole protocol as one Python call; ``dim-bench`` and the tutorial call it."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.files import write_csv, write_json
from dim_featurizer.provenance import run_record
from dim_featurizer.readers import default_data_dir
from dim_featurizer.sampling import draw_subsets

from . import report
from .protocol import MODELS, run_fits
from .representations import (
    cached_features,
    check_pretraining,
    control_columns,
    dim_members,
    make_featurizer,
    representation_key,
    weights_used,
)
from .representations import representations as all_representations
from .tasks import TASKS, UNITS, load_task

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


def earlier_results(out: str | Path | None, settings: dict) -> tuple[pd.DataFrame, dict] | None:
    """``out/fits.csv`` and ``out/run.json`` of an earlier run whose recorded settings equal ``settings``
    in every key given; None when either file is missing or a setting differs."""
    folder = None if out is None else Path(out)
    if folder is None or not ((folder / "fits.csv").is_file() and (folder / "run.json").is_file()):
        return None
    run = json.loads((folder / "run.json").read_text())
    if any(run.get("settings", {}).get(k) != v for k, v in settings.items()):
        return None
    return pd.read_csv(folder / "fits.csv", float_precision="round_trip"), run


@dataclass
class EarlierFits:
    """The fits a run wrote to its output folder, where they are still valid for this run.

    Attributes:
        fits: the usable rows of ``fits.csv`` (empty when there are none).
    """

    fits: pd.DataFrame

    @classmethod
    def read(cls, out: str | Path | None, settings: dict) -> EarlierFits:
        """Rows of ``out/fits.csv`` made under the same protocol, seed, test and pool limits, dropping DIM
        columns whose recorded weights differ from the ones this run would use."""
        keys = ("protocol", "seed", "test_limit", "pool_limit")
        earlier = earlier_results(out, {k: settings.get(k) for k in keys})
        if earlier is None:
            return cls(pd.DataFrame(columns=["task", "representation", "model", "budget", "draw"]))
        fits, run = earlier
        stale = set()
        for rep in fits["representation"].unique():
            try:
                members = dim_members(rep)
            except ValueError:  # a column this package no longer offers
                stale.add(rep)
                continue
            if any(run.get("weights", {}).get(n) != weights_used(f) for n, f in members.items()):
                stale.add(rep)
        return cls(fits[~fits["representation"].isin(stale)])

    def rows(self, task: str, rep: str, subsets: dict, models: Sequence[str]) -> pd.DataFrame:
        """The kept fits of one (task, representation): the draws of ``subsets`` fitted with every model."""
        mine = self.fits[(self.fits["task"] == task) & (self.fits["representation"] == rep)]
        drawn = np.array([(b, d) in subsets for b, d in zip(mine["budget"], mine["draw"])], dtype=bool)
        mine = mine[mine["model"].isin(models).to_numpy() & drawn]
        complete = mine.groupby(["budget", "draw"])["model"].transform("nunique") == len(set(models))
        return mine[complete]

    def outside(self, tasks: Sequence[str], reps: Sequence[str]) -> pd.DataFrame:
        """The kept fits of every (task, representation) pair that is not one of ``tasks`` × ``reps``."""
        inside = self.fits["task"].isin(tasks) & self.fits["representation"].isin(reps)
        return self.fits[~inside]


def run_benchmark(
    out: str | Path | None = "results",
    tasks: Sequence[str] = TASKS,
    representations: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    budgets: Sequence[int] = BUDGETS,
    draws: int = 100,
    test_limit: int | None = None,
    pool_limit: int | None = None,
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
        pool_limit: only a seeded random N of each pool (a peer too slow for the whole pool).
        seed: seed of the draws.
        data_dir: the data folder; None for ``$DIM_DATA_DIR`` or ``../shared/data``.
        cache_dir: feature cache and stored fits (resumable).
        n_jobs: parallel featurisation chunks and fits (joblib; -1 all cores).
        featurize_only: fill the feature cache and stop.
        report_only: write outputs from stored fits only; pairs never fitted are listed in ``missing``.
        tsne: draw the t-SNE of trained and untrained DIM test vectors.
        pbar: progress bars.
        log: called with one line per step (None for silence).

    Fits already in ``out/fits.csv`` from a run under the same protocol (seed, test and pool limits) and, for
    DIM columns, the same weights are kept, so asking for more draws, budgets or columns fits only what is new.

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
    if pool_limit is not None:
        key.append(pool_limit)
    settings = {
        "protocol": "v2",
        "tasks": list(tasks),
        "representations": reps,
        "models": list(models),
        "budgets": list(budgets),
        "draws": draws,
        "test_limit": test_limit,
        "pool_limit": pool_limit,
        "seed": seed,
        "data_dir": str(data_dir),
        "cache_dir": str(cache_dir),
    }
    all_fits, missing, drawn = [], [], {}
    previous = EarlierFits.read(out, settings)
    dim_featurizers = {k: v for rep in reps for k, v in dim_members(rep).items()}.values()
    for name in tasks:
        task = load_task(name, data_dir, test_limit, pool_limit, seed)
        say(f"{name}: pool {len(task.pool)}, test {len(task.test)}, target {task.target!r} ({task.unit})")
        for featurizer in dim_featurizers:
            check_pretraining(featurizer, [str(i) for i in task.test.index])
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
                kept = previous.rows(name, rep, subsets, models)
                todo = {k: v for k, v in subsets.items() if k not in set(zip(kept["budget"], kept["draw"]))}
                if report_only and todo:
                    missing.append(f"{name}/{rep}")
                    continue
                fits = [kept]
                if todo:
                    say(
                        f"{name}/{rep}: featurising {len(needed)} crystals (cached), then {len(todo) * len(models)} "
                        f"fits ({len(subsets) - len(todo)} of {len(subsets)} (budget, draw) subsets kept from {out})"
                    )
                    frame = features(rep)
                    new = run_fits(
                        name, {rep: frame}, task.pool, task.test, task.target, todo, tuple(models), n_jobs, pbar
                    )
                    new["failed_featurisations"] = int(frame.isna().all(axis=1).sum())
                    fits.append(new)
                else:
                    say(f"{name}/{rep}: every fit kept from {out}/fits.csv")
                write_csv(part, pd.concat(fits, ignore_index=True))
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
    carried = previous.outside(tasks, reps)
    if len(carried):
        settings["carried"] = sorted(set(carried["task"] + "/" + carried["representation"]))
        say(f"kept from {out}/fits.csv, not rerun: {', '.join(settings['carried'])}")
        all_fits.append(carried)
    fits = pd.concat(all_fits, ignore_index=True) if all_fits else pd.DataFrame()
    if out is not None and len(fits):
        shown = list(dict.fromkeys([*reps, *fits["representation"]]))
        _write_outputs(fits, Path(out), {t: UNITS.get(t, "") for t in fits["task"].unique()}, shown, missing, settings)
    say(
        f"{len(fits)} fits"
        + (f"; results in {out}" if out is not None else "")
        + (f"; not run yet: {missing}" if missing else "")
    )
    return BenchmarkResult(fits, missing, None if out is None else Path(out))


def _write_outputs(fits: pd.DataFrame, out: Path, units: dict, reps: list, missing: list, settings: dict) -> None:
    """The report's tables and plots, and run.json (settings, the draws each task's fits hold, the weights
    each DIM column used, the machine)."""
    report.write_report(fits, out, units, controls=control_columns())
    settings = {**settings, "draws_by_task": {t: int(n) for t, n in fits.groupby("task")["draw"].nunique().items()}}
    weights = {name: weights_used(f) for rep in reps for name, f in dim_members(rep).items()}
    write_json(out / "run.json", run_record(settings=settings, weights=weights, missing=missing))
