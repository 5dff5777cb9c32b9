"""Every tutorial runs end to end (on a small subset)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_featurize_tutorial_runs():
    run = subprocess.run(
        [sys.executable, str(ROOT / "tutorials" / "01_featurize.py"), "--n", "60"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "featurised 60 crystals; rows that failed: 0" in run.stdout
    assert "3-fold MAE" in run.stdout


def test_benchmark_tutorial_runs():
    from dim_featurizer.weights import bundled_names

    reps = (["dim"] if "dim-mp2018" in bundled_names() else []) + ["dim-untrained", "magpie"]
    run = subprocess.run(
        [sys.executable, str(ROOT / "tutorials" / "02_benchmark.py"), "--draws", "2", "--budgets", "50"]
        + ["--test-limit", "30", "--representations", *reps],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "phonons: pool 1012, test 30" in run.stdout and "magpie" in run.stdout
