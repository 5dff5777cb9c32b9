"""Processes that share an encoding cache or a feature cache never crash and never corrupt each other."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

WORKER = """
import json, sys, time
from pathlib import Path
import numpy as np
from dim_featurizer.examples import load_sample
from dim_featurizer.encoding import EncodingConfig
from dim_featurizer.train.cache import cached_dataset
from dim_featurizer.bench.representations import cached_features

root, me = Path(sys.argv[1]), sys.argv[2]
structures = load_sample("phonons")["structure"].iloc[:40]
(root / f"ready-{me}").touch()
deadline = time.time() + 120
while len(list(root.glob("ready-*"))) < 2 and time.time() < deadline:  # start both at once
    time.sleep(0.01)
dataset, folder = cached_dataset(structures, EncodingConfig(), root / "encodings", pbar=False)
features = cached_features("magpie", structures, root / "features", chunk=7, pbar=False)
np.save(root / f"features-{me}.npy", features.to_numpy())
print(json.dumps({"folder": folder.name, "ids": dataset.ids, "distances": float(np.asarray(dataset.distances).sum())}))
"""


@pytest.mark.slow
def test_two_processes_share_the_caches(tmp_path):
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (_, err) in zip(runs, outputs):
        assert run.returncode == 0, err[-3000:]
    a, b = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert a == b and len(a["ids"]) > 0
    folders = [p.name for p in (tmp_path / "encodings").iterdir() if p.is_dir()]
    assert folders == [a["folder"]]  # one finished cache, no partial left behind
    np.testing.assert_array_equal(np.load(tmp_path / "features-0.npy"), np.load(tmp_path / "features-1.npy"))
    parts = sorted((tmp_path / "features").rglob("*.npz"))
    assert parts and all(p.name.startswith("part-") for p in parts)  # no temporary file left
    stored = pd.concat([pd.DataFrame(np.load(p)["features"], index=np.load(p)["ids"]) for p in parts])
    assert len(stored.index.unique()) == 40
