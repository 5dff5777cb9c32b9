"""Shared fixtures: example crystals, a real-data sample, a small featuriser."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def examples():
    from dim_featurizer.examples import example_structures

    return example_structures()


@pytest.fixture(scope="session")
def real_structures():
    """60 real crystals from Matbench phonons (the small shared file), fixed rows."""
    from pymatgen.core import Structure

    from dim_featurizer.frames import default_data_dir

    path = default_data_dir() / "matbench_phonons.json.gz"
    if not path.is_file():
        pytest.fail(f"real data missing: {path} (set DIM_DATA_DIR)")
    with gzip.open(path, "rt") as f:
        frame = json.load(f)
    rows = np.random.default_rng(0).choice(len(frame["data"]), 60, replace=False)
    column = frame["columns"].index("structure")
    return [Structure.from_dict(frame["data"][i][column]) for i in sorted(rows)]


@pytest.fixture(scope="session")
def featurizer():
    from dim_featurizer import DeepInfoMaxFeaturizer

    return DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False).fit()
