"""Featurisation speed: DIM against matminer's XRDPowderPattern and OrbitalFieldMatrix.

Same structures (drawn at random from the test split of record), same
process, end to end from pymatgen ``Structure`` objects, one process each
(``n_jobs=1``). Prints a table and writes ``speed_<device>.json`` beside this
script, with the machine it ran on.

    python benchmarks/speed.py                       # 1,000 structures on CPU
    python benchmarks/speed.py --device cuda --n 10000 --skip-ofm
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.provenance import machine
from dim_featurizer.readers import default_data_dir, read_frame, read_split


def timed(featurizer, structures, **kwargs) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    rows = featurizer.featurize_many(structures, ignore_errors=True, pbar=False, **kwargs)
    return time.perf_counter() - start, np.asarray(rows, dtype=float)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", default=None)
    p.add_argument("--skip-ofm", action="store_true", help="OFM takes ~0.4 s per structure")
    args = p.parse_args()

    from matminer.featurizers.structure import OrbitalFieldMatrix, XRDPowderPattern

    test_ids = read_split(args.data_dir / "mp2018_folds.json")["test"]
    rng = np.random.default_rng(args.seed)
    ids = rng.choice(test_ids, size=min(args.n, len(test_ids)), replace=args.n > len(test_ids))
    structures = list(read_frame(args.data_dir / "mp2018_e_form_gap.json.gz", ids)["structure"])
    print(f"{len(structures)} structures from the test split, seed {args.seed}; device {args.device}")

    dim = DeepInfoMaxFeaturizer(weights=args.weights, device=args.device, n_jobs=1)
    dim.featurize_many(structures[:20], pbar=False)  # warm-up: lazy imports, weights, kernels
    peers = {"XRDPowderPattern()": XRDPowderPattern()}
    if not args.skip_ofm:
        peers["OrbitalFieldMatrix(flatten=True)"] = OrbitalFieldMatrix(flatten=True)
    results = {}
    seconds, rows = timed(dim, structures)
    results["DeepInfoMaxFeaturizer"] = {"seconds": seconds, "failed": int(np.isnan(rows).all(1).sum())}
    for name, featurizer in peers.items():
        featurizer.set_n_jobs(1)
        seconds, rows = timed(featurizer, structures)
        results[name] = {"seconds": seconds, "failed": int(np.isnan(rows).all(1).sum())}
    dim_seconds = results["DeepInfoMaxFeaturizer"]["seconds"]
    print(f"{'featuriser':36s} {'seconds':>9s} {'struct/s':>10s} {'DIM speed-up':>13s} failed")
    for name, r in results.items():
        r["structures_per_second"] = len(structures) / r["seconds"]
        r["dim_speedup"] = r["seconds"] / dim_seconds
        print(
            f"{name:36s} {r['seconds']:9.2f} {r['structures_per_second']:10.1f} {r['dim_speedup']:12.1f}x {r['failed']}"
        )
    report = {
        "n_structures": len(structures),
        "seed": args.seed,
        "device": str(dim.device_),
        "weights": dim.weights_info_.name,
        "results": results,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = Path(__file__).with_name(f"speed_{dim.device_.type}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
