"""Every tutorial runs end to end (on a small subset)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import ROOT, run_python

pytestmark = pytest.mark.slow


def _env_with_sample_data(sample_dir):
    """The tutorials read $DIM_DATA_DIR: point it at the shipped sample, so they run the same everywhere."""
    return {**os.environ, "DIM_DATA_DIR": str(sample_dir)}


def _run_tutorial(name: str, args: list[str], sample_dir) -> subprocess.CompletedProcess:
    """Run ``tutorials/<name>`` on the shipped sample; it must exit 0."""
    run = run_python([ROOT / "tutorials" / name, *args], env=_env_with_sample_data(sample_dir))
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_featurize_tutorial_runs(sample_dir):
    run = _run_tutorial("01_featurize.py", ["--n", "60"], sample_dir)
    assert "featurised 60 crystals; rows that failed: 0" in run.stdout
    assert "3-fold MAE" in run.stdout


def test_benchmark_tutorial_runs(sample_dir):
    args = ["--draws", "2", "--budgets", "50", "--test-limit", "30", "--n-jobs", "1"]
    run = _run_tutorial("02_benchmark.py", args + ["--representations", "dim", "dim-untrained", "magpie"], sample_dir)
    lines = run.stdout.splitlines()
    assert "] phonons: pool 240, test 30" in run.stdout and "] 18 fits" in run.stdout  # progress as it goes
    assert any(line.split()[:2] == ["linear", "50"] for line in lines) and "magpie" in run.stdout


def test_fine_tune_tutorial_runs(sample_dir):
    args = ["--labels", "30", "--test-limit", "20", "--max-epochs", "3", "--patience", "2"]
    run = _run_tutorial("03_fine_tune.py", args, sample_dir)
    assert "30 labelled crystals, 20 test crystals" in run.stdout
    assert "init=pretrained: test MAE" in run.stdout and "init=random: test MAE" in run.stdout
    assert "reloaded predictions identical: True" in run.stdout
