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
