"""Featurisation speed: DIM against matminer's XRDPowderPattern, OrbitalFieldMatrix and Magpie composition
features, and CHGNet's crystal features where the ``chgnet`` package is installed.

Same structures (drawn at random from the test split of record), same process, end to end from pymatgen
``Structure`` objects, weights loaded and warmed first. DIM runs with ``n_jobs=1`` and with ``--n-jobs``
encoding processes, each eagerly and with ``compile_network=True``; the peers with one process each
(matminer's ``n_jobs=1``; CHGNet's own batching).

The run is split into ``--rounds`` interleaved rounds, so that a shared machine's drifting speed hits every
featuriser alike: in each round DIM featurises all the structures (its rate is the median over rounds) and
each peer featurises the round's share of them (its rate is over all the structures, once each).
Prints a table and writes ``speed_<device>.{json,txt}`` beside this script, with the machine it ran on.

    python benchmarks/speed.py --skip-ofm            # 1,000 structures on CPU, eager and compiled
    python benchmarks/speed.py --device cuda --n 10000 --skip-ofm
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.bench.representations import MagpieFromStructure
from dim_featurizer.console import Parser, ScriptHelp
from dim_featurizer.provenance import hardware, machine
from dim_featurizer.readers import default_data_dir, read_frame, read_split


def timed(featurizer, structures, **kwargs) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    rows = featurizer.featurize_many(structures, ignore_errors=True, pbar=False, **kwargs)
    return time.perf_counter() - start, np.asarray(rows, dtype=float)


def main() -> None:
    p = Parser(description=__doc__, formatter_class=ScriptHelp)
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder ($DIM_DATA_DIR)")
    p.add_argument("--n", type=int, default=1000, help="structures featurised")
    p.add_argument("--seed", type=int, default=0, help="seed of the structures drawn")
    p.add_argument("--device", default="cpu", help="torch device of the network")
    p.add_argument("--weights", default=None, help="DIM weights (None: the package default)")
    p.add_argument("--skip-ofm", action="store_true", help="OFM takes ~0.4 s per structure")
    p.add_argument("--n-jobs", type=int, default=2, help="encoding processes of the second DIM run")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (see above)")
    p.add_argument("--no-compile", action="store_true", help="skip DIM with compile_network=True")
    args = p.parse_args()

    from matminer.featurizers.structure import OrbitalFieldMatrix, XRDPowderPattern

    test_ids = read_split(args.data_dir / "mp2018_folds.json")["test"]
    rng = np.random.default_rng(args.seed)
    ids = rng.choice(test_ids, size=min(args.n, len(test_ids)), replace=args.n > len(test_ids))
    structures = list(read_frame(args.data_dir / "mp2018_e_form_gap.json.gz", ids)["structure"])

    dims, warm_up = {}, {}
    for compiled in (False,) if args.no_compile else (False, True):
        for n_jobs in (1, args.n_jobs):
            name = f"DeepInfoMaxFeaturizer(n_jobs={n_jobs}{', compile_network=True' if compiled else ''})"
            dims[name] = DeepInfoMaxFeaturizer(
                weights=args.weights, device=args.device, n_jobs=n_jobs, compile_network=compiled
            )
            # Warm-up: lazy imports, weights, kernels, the encoding workers and (compiled) the compile.
            start = time.perf_counter()
            dims[name].featurize_many(structures[:200], pbar=False)
            warm_up[name] = time.perf_counter() - start
    dim = next(iter(dims.values()))
    peers = {"XRDPowderPattern()": XRDPowderPattern()}
    if not args.skip_ofm:
        peers["OrbitalFieldMatrix(flatten=True)"] = OrbitalFieldMatrix(flatten=True)
    for peer in peers.values():
        peer.set_n_jobs(1)
    peers["Magpie (ElementProperty)"] = MagpieFromStructure()  # composition only, one process
    chgnet = chgnet_features(args.device)
    if chgnet is not None:
        chgnet(structures[:20])
    rounds: dict[str, list[float]] = {name: [] for name in dims}
    peer_seconds = dict.fromkeys([*peers, "CHGNet crystal features"] if chgnet else peers, 0.0)
    failed = dict.fromkeys([*dims, *peer_seconds], 0)
    for share in np.array_split(np.arange(len(structures)), args.rounds):
        for name, featurizer in dims.items():
            seconds, rows = timed(featurizer, structures)
            rounds[name].append(seconds)
            failed[name] = int(np.isnan(rows).all(1).sum())
        part = [structures[i] for i in share]
        for name, featurizer in peers.items():
            seconds, rows = timed(featurizer, part)
            peer_seconds[name] += seconds
            failed[name] += int(np.isnan(rows).all(1).sum())
        if chgnet is not None:
            start = time.perf_counter()
            chgnet(part)
            peer_seconds["CHGNet crystal features"] += time.perf_counter() - start
    results = {
        name: {"seconds": float(np.median(times)), "rounds": times, "warm_up_seconds": warm_up[name]}
        for name, times in rounds.items()
    }
    results.update({name: {"seconds": seconds} for name, seconds in peer_seconds.items()})
    for name, r in results.items():
        r["failed"] = failed[name]
    xrd = results["XRDPowderPattern()"]["seconds"]
    lines = [
        f"{len(structures)} mp2018 test structures, seed {args.seed}; DIM weights {dim.weights_info_.name}; "
        f"device {args.device}; {hardware()}; "
        f"{time.strftime('%Y-%m-%d')}; {args.rounds} interleaved rounds (DIM: median seconds per round over all "
        "structures; peers: seconds over all structures, once each; the warm-up, untimed, includes any compile: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in warm_up.items())
        + ")",
        f"{'featuriser':58s} {'seconds':>9s} {'struct/s':>10s} {'vs XRD':>8s} failed",
    ]
    for name, r in results.items():
        r["structures_per_second"] = len(structures) / r["seconds"]
        r["speed_vs_xrd"] = xrd / r["seconds"]
        lines.append(
            f"{name:58s} {r['seconds']:9.2f} {r['structures_per_second']:10.1f} {r['speed_vs_xrd']:7.1f}x {r['failed']}"
        )
    print("\n".join(lines))
    report = {
        "n_structures": len(structures),
        "seed": args.seed,
        "device": str(dim.device_),
        "weights": dim.weights_info_.name,
        "rounds": args.rounds,
        "results": results,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = Path(__file__).with_name(f"speed_{dim.device_.type}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def chgnet_features(device: str):
    """A function from structures to CHGNet's crystal feature vectors, or None without the chgnet package."""
    try:
        from chgnet.model import CHGNet
    except ImportError:
        return None
    model = CHGNet.load(use_device=device, verbose=False)

    def features(structures: list) -> np.ndarray:
        out = model.predict_structure(structures, task="e", return_crystal_feas=True, batch_size=64)
        return np.stack([o["crystal_fea"] for o in out])

    return features


if __name__ == "__main__":
    main()
