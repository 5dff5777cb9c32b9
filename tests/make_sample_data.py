"""Rebuild the small real-data sample shipped in ``dim_featurizer/examples/sample_data``.

Run from the repository root with the full data beside it::

    python tests/make_sample_data.py [--data-dir ../shared/data]

It draws, with a fixed seed, 300 Matbench phonons rows and 300 mp2018 crystals
(240 from the split's ``train`` list, 60 from its ``test`` list) and writes
them in the same matminer JSON format and file names as the full data, so
any code that takes a data folder runs on the sample unchanged.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "dim_featurizer" / "examples" / "sample_data"


def _write_rows(raw: dict, rows: list[int], path: Path) -> None:
    rows = sorted(rows)
    frame = {
        "index": [raw["index"][i] for i in rows],
        "columns": raw["columns"],
        "data": [raw["data"][i] for i in rows],
    }
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime 0: the same bytes on every rebuild
        f.write(json.dumps(frame, separators=(",", ":")).encode())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    args = p.parse_args()
    rng = np.random.default_rng(2026)
    with gzip.open(args.data_dir / "matbench_phonons.json.gz", "rt") as f:
        phonons = json.load(f)
    _write_rows(
        phonons, rng.choice(len(phonons["index"]), 300, replace=False).tolist(), OUT / "matbench_phonons.json.gz"
    )
    split = json.loads((args.data_dir / "mp2018_folds.json").read_text())
    train = set(rng.choice(split["train"], 240, replace=False).tolist())
    test = set(rng.choice(split["test"], 60, replace=False).tolist())
    with gzip.open(args.data_dir / "mp2018_e_form_gap.json.gz", "rt") as f:
        mp = json.load(f)
    rows = [i for i, key in enumerate(mp["index"]) if key in train or key in test]
    _write_rows(mp, rows, OUT / "mp2018_e_form_gap.json.gz")
    folds = {
        "description": "the split of record restricted to the sampled ids (tests/make_sample_data.py)",
        "train": [i for i in split["train"] if i in train],
        "test": [i for i in split["test"] if i in test],
    }
    (OUT / "mp2018_folds.json").write_text(json.dumps(folds, indent=0) + "\n")


if __name__ == "__main__":
    main()
