"""Where featurisation time goes: cProfile of ``featurize_many`` on mp2018 test crystals, top 20 entries.

    python benchmarks/profile_featurize.py --n 1000 --n-jobs 1   # writes profiles/featurize_n_jobs1.txt
    python benchmarks/profile_featurize.py --n 1000 --n-jobs 2
    python benchmarks/profile_featurize.py --n 1000 --n-jobs 1 --compile   # profiles/featurize_n_jobs1_compiled.txt

With ``n_jobs=2`` the profile covers the main process (checks, the network, collation); the encoding
workers' share shows as waiting. Weights are loaded and the pool warmed before profiling.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from pathlib import Path

import numpy as np

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.console import Parser, ScriptHelp
from dim_featurizer.provenance import hardware
from dim_featurizer.readers import default_data_dir, read_frame, read_split

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = Parser(description=__doc__, formatter_class=ScriptHelp)
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder")
    p.add_argument("--n", type=int, default=1000, help="test crystals")
    p.add_argument("--out", type=Path, default=HERE / "profiles", help="folder for the summary")
    p.add_argument("--n-jobs", type=int, default=1, help="encoding processes")
    p.add_argument("--compile", action="store_true", help="compile_network=True (compiled in the warm-up)")
    args = p.parse_args()
    if __name__ == "__main__":
        test_ids = read_split(args.data_dir / "mp2018_folds.json")["test"]
        ids = np.random.default_rng(0).choice(test_ids, size=args.n, replace=False)
        structures = list(read_frame(args.data_dir / "mp2018_e_form_gap.json.gz", ids)["structure"])
        dim = DeepInfoMaxFeaturizer(device="cpu", n_jobs=args.n_jobs, pbar=False, compile_network=args.compile)
        dim.featurize_many(structures[:200], pbar=False)  # weights, lazy imports, worker start-up
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        dim.featurize_many(structures, pbar=False)
        profiler.disable()
        seconds = time.perf_counter() - start
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
        header = (
            f"featurize_many on {len(structures)} mp2018 test crystals, n_jobs={args.n_jobs}"
            f"{', compile_network=True' if args.compile else ''}, {hardware()}: "
            f"{seconds:.2f} s, {len(structures) / seconds:.0f} structures/s (profiled, so slower than unprofiled)\n"
        )
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / f"featurize_n_jobs{args.n_jobs}{'_compiled' if args.compile else ''}.txt"
        out.write_text(header + "\n".join(line.rstrip() for line in text.getvalue().splitlines()[4:]) + "\n")
        print(out.read_text())


if __name__ == "__main__":
    main()
