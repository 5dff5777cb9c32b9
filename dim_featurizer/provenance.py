"""Provenance for committed results, runs and model cards: the machine, the code's commit, the run record."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

#: The repository (or installed package) root, whose commit a record names.
ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else ``platform.processor()``."""
    path = Path("/proc/cpuinfo")
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine() -> dict[str, str | int]:
    """CPU, cores, GPU (when present) and library versions."""
    import torch

    info: dict[str, str | int] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def hardware() -> str:
    """One line: the GPU when present, else the CPU and its core count."""
    info = machine()
    if "gpu" in info:
        return f"{info['gpu']} (CUDA)"
    return f"{info['cpu']}, {info['cores']} cores (CPU only)"


def git_commit(path: Path) -> str:
    """The code's commit (with ``-dirty`` when tracked code has changes), or "unknown".

    Run artefacts (``runs/``, ``weights/``) do not count: a resumed run's own
    checkpoint is always modified.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True)
        code = [":(top)", ":(top,exclude)runs", ":(top,exclude)weights"]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *code],
            cwd=path,
            capture_output=True,
            text=True,
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_record(**facts: Any) -> dict[str, Any]:
    """The record of a run (training, a benchmark, a streaming shard): the facts given, then where and
    with what it ran.

    Returns:
        ``facts`` plus ``package_version``, ``commit`` (:func:`git_commit`), ``hardware`` (:func:`hardware`),
        ``machine`` (:func:`machine`) and ``date`` (YYYY-MM-DD).
    """
    from dim_featurizer import __version__

    return {
        **facts,
        "package_version": __version__,
        "commit": git_commit(ROOT),
        "hardware": hardware(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
