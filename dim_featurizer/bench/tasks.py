"""Benchmark tasks: a labelled pool to draw training subsets from and a fixed test set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.readers import read_frame, read_split

#: Matbench's own fold seed for its 5-fold KFold splits.
MATBENCH_SEED = 18012019


@dataclass
class Task:
    """A regression task.

    Attributes:
        name: short name.
        target: label column (units in ``unit``).
        unit: label unit.
        pool: labelled training frame (structures + target) that subsets are drawn from.
        test: the test frame (every reported error is measured on all of it).
        source: where the structures were read from (the pretraining file for mp2018 tasks).
    """

    name: str
    target: str
    unit: str
    pool: pd.DataFrame
    test: pd.DataFrame
    source: str


def _mp2018(data_dir: Path, target: str, test_limit: int | None) -> Task:
    split = read_split(data_dir / "mp2018_folds.json")
    frame = read_frame(data_dir / "mp2018_e_form_gap.json.gz", split["train"] + split["test"][:test_limit])
    return Task(
        name=target,
        target=target,
        unit=UNITS[target],
        pool=frame.loc[split["train"], ["structure", target]],
        test=frame.loc[split["test"][:test_limit], ["structure", target]],
        source="mp2018_e_form_gap.json.gz",
    )


def _phonons(data_dir: Path, test_limit: int | None) -> Task:
    from sklearn.model_selection import KFold

    frame = read_frame(data_dir / "matbench_phonons.json.gz")
    train, test = next(KFold(n_splits=5, shuffle=True, random_state=MATBENCH_SEED).split(frame))
    return Task(
        name="phonons",
        target="last phdos peak",
        unit=UNITS["phonons"],
        pool=frame.iloc[train],
        test=frame.iloc[test[:test_limit]],
        source="matbench_phonons.json.gz",
    )


TASKS = ("e_form", "gap", "phonons")
#: Each task's label unit.
UNITS = {"e_form": "eV/atom", "gap": "eV", "phonons": "cm^-1"}


def load_task(
    name: str, data_dir: str | Path, test_limit: int | None = None, pool_limit: int | None = None, seed: int = 0
) -> Task:
    """Load ``e_form`` (eV/atom), ``gap`` (eV) or ``phonons`` (cm⁻¹, Matbench fold 0).

    Args:
        name: the task.
        data_dir: the shared data folder.
        test_limit: keep only the first N test rows (quick runs; the committed results use all).
        pool_limit: keep a seeded random N of the pool, in pool order (a peer too slow for the whole pool).
        seed: seed of that pool sample.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {TASKS}")
    data_dir = Path(data_dir)
    task = _phonons(data_dir, test_limit) if name == "phonons" else _mp2018(data_dir, name, test_limit)
    if pool_limit is not None and pool_limit < len(task.pool):
        rng = np.random.default_rng(np.random.SeedSequence([seed, pool_limit]))
        task.pool = task.pool.iloc[np.sort(rng.choice(len(task.pool), size=pool_limit, replace=False))]
    return task
