"""Shared fixtures (example crystals, real crystals from the shipped sample, the full data when present) and
``run_python``, the one helper that runs a Python subprocess.

Slow tests (wheel and venv builds, Dask clusters, tutorials, README blocks, subprocess kill and resume,
benchmark scripts) are marked ``slow``: ``python -m pytest -m "not slow"`` is the fast inner loop; CI runs all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def examples():
    from dim_featurizer.examples import example_structures

    return example_structures()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The real-data sample shipped in the package (same layout as the full data folder)."""
    from dim_featurizer.examples import sample_data_dir

    return sample_data_dir()


@pytest.fixture(scope="session")
def full_data_dir() -> Path:
    """The full data folder (``$DIM_DATA_DIR`` or ``../shared/data``); tests needing it skip without it."""
    from dim_featurizer.readers import default_data_dir

    path = default_data_dir()
    if not (path / "mp2018_e_form_gap.json.gz").is_file() or not (path / "matbench_phonons.json.gz").is_file():
        pytest.skip(f"needs the full data set at {path} (set DIM_DATA_DIR); the shipped sample covers the rest")
    return path


@pytest.fixture(scope="session")
def real_structures():
    """60 real crystals from the shipped Matbench phonons sample, fixed rows."""
    from dim_featurizer.examples import load_sample

    frame = load_sample("phonons")
    rows = np.random.default_rng(0).choice(len(frame), 60, replace=False)
    return list(frame["structure"].iloc[np.sort(rows)])


@pytest.fixture(scope="session")
def featurizer():
    from dim_featurizer import DeepInfoMaxFeaturizer

    return DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False).fit()


def run_python(
    args: Sequence[str | os.PathLike],
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    python: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python args`` (this interpreter unless ``python``) and return it finished, with text stdout
    and stderr captured. ``args`` may be ``["-c", code]``, ``["-m", module, ...]`` or a script and its
    arguments."""
    command = [str(python or sys.executable), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
