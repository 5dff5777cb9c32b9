"""The GPU check and the scale benchmark run end to end (on CPU, on the shipped sample), so they stay runnable."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import ROOT, run_python

pytestmark = pytest.mark.slow


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return run_python([ROOT / "benchmarks" / script, *args])


def test_gpu_check_dry_run_on_cpu(tmp_path, sample_dir):
    args = ["--device", "cpu", "--data-dir", str(sample_dir), "--n", "120", "--n-compare", "30", "--n-jobs", "1"]
    done = run("gpu_check.py", *args, "--train-steps", "2", "--train-limit", "240", "--train-batch-sites", "300",
               "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check_cpu.json").read_text())
    assert report["speed"]["n"] == 120 and report["speed"]["failed"] == 0
    assert report["agreement"]["ok"] and report["agreement"]["package_dtype"] == "torch.float32"
    training = report["training"]
    assert (training["step_after_first"], training["step_after_resume"]) == (2, 4) and training[
        "resumed_from_checkpoint"
    ]
    assert "all checks passed: True" in (tmp_path / "gpu_check_cpu.txt").read_text()


def test_scale_benchmark_small(tmp_path, sample_dir):
    args = ["--data-dir", str(sample_dir), "--sizes", "30", "90", "--chunk-size", "40", "--small-chunk-size", "20"]
    done = run("scale.py", *args, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "scale_cpu.json").read_text())["rows"]
    modes = [(n, m) for n in (30, 90) for m in ("stream", "stream20", "in_memory")]
    assert [(r["n"], r["mode"]) for r in rows] == modes
    assert all(r["peak_rss_mib"] > 50 and r["seconds"] > 0 for r in rows)
    assert "3 parts written" in rows[3]["log"] and "5 parts written" in rows[4]["log"]
    assert "90 structures, 0 failed" in rows[5]["log"]
