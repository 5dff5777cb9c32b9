"""Every tutorial runs end to end (on a small subset)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def _env_with_sample_data(sample_dir):
    """The tutorials read $DIM_DATA_DIR: point it at the shipped sample, so they run the same everywhere."""
    return {**os.environ, "DIM_DATA_DIR": str(sample_dir)}


def test_featurize_tutorial_runs(sample_dir):
    run = subprocess.run(
        [sys.executable, str(ROOT / "tutorials" / "01_featurize.py"), "--n", "60"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env_with_sample_data(sample_dir),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "featurised 60 crystals; rows that failed: 0" in run.stdout
    assert "3-fold MAE" in run.stdout


def test_benchmark_tutorial_runs(sample_dir):
    run = subprocess.run(
        [sys.executable, str(ROOT / "tutorials" / "02_benchmark.py"), "--draws", "2", "--budgets", "50"]
        + ["--test-limit", "30", "--n-jobs", "1", "--representations", "dim", "dim-untrained", "magpie"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env_with_sample_data(sample_dir),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert "] phonons: pool 240, test 30" in run.stdout and "] 18 fits" in run.stdout  # progress as it goes
    assert any(line.split()[:2] == ["linear", "50"] for line in lines) and "magpie" in run.stdout


def test_fine_tune_tutorial_runs(sample_dir):
    run = subprocess.run(
        [sys.executable, str(ROOT / "tutorials" / "03_fine_tune.py"), "--labels", "30", "--test-limit", "20"]
        + ["--max-epochs", "3", "--patience", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env_with_sample_data(sample_dir),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "30 labelled crystals, 20 test crystals" in run.stdout
    assert "init=pretrained: test MAE" in run.stdout and "init=random: test MAE" in run.stdout
    assert "reloaded predictions identical: True" in run.stdout
