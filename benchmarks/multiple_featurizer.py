"""DIM combined with another structure featuriser the matminer way, against DIM alone, in one process.

``MultipleFeaturizer([DeepInfoMaxFeaturizer(), DensityFeatures()])`` through ``featurize_dataframe`` with
matminer's defaults (``n_jobs`` = the number of cores: a fork pool of one task per process;
``iterate_over_entries=True``: each worker calls ``featurize`` one structure at a time), with
``iterate_over_entries=False`` (each featuriser's own ``featurize_many``: DIM batches), and with
``set_n_jobs(1)``; beside DIM alone and DensityFeatures alone, on the same structures (drawn at random from
the test split of record; structures only, no label), weights loaded and warmed in this process first,
``ignore_errors=True`` everywhere (DensityFeatures fails on a few crystals; their rows are NaN).
Each way runs ``--rounds`` times, interleaved; its time is the median. Writes
``multiple_featurizer_cpu.{json,txt}`` beside this script, with the machine it ran on.

    python benchmarks/multiple_featurizer.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.console import Parser, ScriptHelp
from dim_featurizer.provenance import hardware, machine
from dim_featurizer.readers import default_data_dir, read_frame, read_split


def ways(weights: str | None) -> dict:
    """Name → a function featurising a one-column frame (matminer's defaults unless the name says)."""
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.structure import DensityFeatures

    def combined(iterate_over_entries: bool, n_jobs: int | None):
        both = MultipleFeaturizer(
            [DeepInfoMaxFeaturizer(weights=weights, pbar=False), DensityFeatures()],
            iterate_over_entries=iterate_over_entries,
        )
        if n_jobs is not None:
            both.set_n_jobs(n_jobs)
        return lambda frame: both.featurize_dataframe(frame, "structure", pbar=False, ignore_errors=True)

    dim = DeepInfoMaxFeaturizer(weights=weights, pbar=False)
    density = DensityFeatures()
    return {
        "DeepInfoMaxFeaturizer() alone": lambda frame: dim.featurize_dataframe(frame, "structure", ignore_errors=True),
        "DensityFeatures() alone": lambda frame: density.featurize_dataframe(
            frame, "structure", pbar=False, ignore_errors=True
        ),
        "MultipleFeaturizer, matminer defaults (iterate_over_entries=True)": combined(True, None),
        "MultipleFeaturizer, iterate_over_entries=False": combined(False, None),
        "MultipleFeaturizer, iterate_over_entries=True, set_n_jobs(1)": combined(True, 1),
        "MultipleFeaturizer, iterate_over_entries=False, set_n_jobs(1)": combined(False, 1),
    }


def main() -> None:
    p = Parser(description=__doc__, formatter_class=ScriptHelp)
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder ($DIM_DATA_DIR)")
    p.add_argument("--n", type=int, default=1000, help="structures featurised")
    p.add_argument("--seed", type=int, default=0, help="seed of the structures drawn")
    p.add_argument("--weights", default=None, help="DIM weights (None: the package default)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each way's time is the median")
    args = p.parse_args()

    test_ids = read_split(args.data_dir / "mp2018_folds.json")["test"]
    ids = np.random.default_rng(args.seed).choice(test_ids, size=min(args.n, len(test_ids)), replace=False)
    frame = read_frame(args.data_dir / "mp2018_e_form_gap.json.gz", ids)[["structure"]]
    runs = ways(args.weights)
    for run in runs.values():  # warm-up: lazy imports, weights, matminer's caches
        run(frame.iloc[:50])
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    outputs = {}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            outputs[name] = run(frame)
            seconds[name].append(time.perf_counter() - start)
    dim_columns = [c for c in outputs["DeepInfoMaxFeaturizer() alone"].columns if c.startswith("DIM_")]
    alone = outputs["DeepInfoMaxFeaturizer() alone"][dim_columns].to_numpy(float)
    base = float(np.median(seconds["DeepInfoMaxFeaturizer() alone"]))
    rows = []
    for name, times in seconds.items():
        median = float(np.median(times))
        out = outputs[name]
        gap = float(np.nanmax(np.abs(out[dim_columns].to_numpy(float) - alone))) if "DIM_0" in out else None
        rows.append(
            {
                "way": name,
                "seconds": median,
                "per_s": len(frame) / median,
                "vs_dim_alone": median / base,
                "dim_max_abs_diff": gap,
            }
        )
    header = (
        f"{len(frame)} mp2018 test structures, seed {args.seed}; DIM weights "
        f"{DeepInfoMaxFeaturizer(weights=args.weights).runner().info.name}; {hardware()}; "
        f"{time.strftime('%Y-%m-%d')}; median of {args.rounds} interleaved rounds, after a warm-up"
    )
    failed = int(outputs["DensityFeatures() alone"].drop(columns="structure").isna().all(axis=1).sum())
    header += f"; DensityFeatures failed on {failed} crystals (NaN rows)"
    lines = [header, f"{'way':66s} {'seconds':>8s} {'struct/s':>9s} {'time vs DIM alone':>18s} {'DIM max |diff|':>15s}"]
    for r in rows:
        gap = "-" if r["dim_max_abs_diff"] is None else f"{r['dim_max_abs_diff']:.1e}"
        lines.append(f"{r['way']:66s} {r['seconds']:8.2f} {r['per_s']:9.1f} {r['vs_dim_alone']:17.2f}x {gap:>15s}")
    text = "\n".join(lines)
    print(text)
    here = Path(__file__).parent
    (here / "multiple_featurizer_cpu.txt").write_text(text + "\n")
    record = {"n": len(frame), "seed": args.seed, "rounds": args.rounds, "rows": rows, "machine": machine()}
    (here / "multiple_featurizer_cpu.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
