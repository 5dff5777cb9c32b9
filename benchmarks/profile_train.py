"""Where pretraining time goes: cProfile of one epoch on a proxy of the first N training crystals, top 20.

    python benchmarks/profile_train.py --limit 4000      # writes profiles/train_epoch.txt

The encoding cache is built (or read) before profiling, so the profile is the epoch alone: sampling the
false samples, the forward and backward passes, and the validation losses.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

from dim_featurizer.train.config import TrainConfig
from dim_featurizer.train.loop import Trainer
from dim_featurizer.train.run import prepare_setup

from dim_featurizer.console import Parser, ScriptHelp
from dim_featurizer.provenance import hardware
from dim_featurizer.readers import default_data_dir

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = Parser(description=__doc__, formatter_class=ScriptHelp)
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder")
    p.add_argument("--limit", type=int, default=4000, help="training crystals of the proxy")
    p.add_argument("--cache-dir", default=".cache/dim-encodings", help="encoded-crystal cache")
    p.add_argument("--out", type=Path, default=HERE / "profiles", help="folder for the summary")
    args = p.parse_args()
    data = args.data_dir
    setup, _ = prepare_setup(
        data / "mp2018_e_form_gap.json.gz",
        config=TrainConfig(epochs=1),
        split=data / "mp2018_folds.json",
        limit=args.limit,
        cache_dir=args.cache_dir,
        device="cpu",
        pbar=False,
    )
    trainer = Trainer(setup, tempfile.mkdtemp())
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    trainer.fit(pbar=False)
    profiler.disable()
    seconds = time.perf_counter() - start
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
    n = len(setup.train_idx)
    header = (
        f"one pretraining epoch (default options) on {n} training crystals of the first {args.limit}, "
        f"{hardware()}: {seconds:.1f} s with validation, {n / seconds:.0f} crystals/s (profiled)\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "train_epoch.txt"
    out.write_text(header + "\n".join(line.rstrip() for line in text.getvalue().splitlines()[4:]) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
