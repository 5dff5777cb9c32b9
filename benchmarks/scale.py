"""Scale of ``dim-featurize`` on this machine: structures/s and peak memory at 1k, 10k and all 36,738 crystals.

Each size is the first N rows of one seeded shuffle of the mp2018 frame, so
that every size draws from the same mix of cells, written as a plain JSON
frame (the matminer format the data comes in; not timed). Three runs per
size, each a fresh ``dim-featurize`` process:

- ``stream``: ``--out-dir`` with parquet parts of ``--chunk-size`` rows (the
  path for large inputs);
- ``stream<N>``: the same with ``--small-chunk-size`` rows per part;
- ``in_memory``: the peer, ``-o one.parquet``, which holds every structure
  and vector at once.

Peak memory is the largest summed resident set of the command and its
children, sampled every 0.05 s. The result is written beside this script as
``scale_<device>.json`` and ``.txt``, with the machine.

    python benchmarks/scale.py                      # 1,000, 10,000 and 36,738
    python benchmarks/scale.py --sizes 500 2000     # a quick look
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dim_featurizer.console import Parser, ScriptHelp
from dim_featurizer.provenance import machine
from dim_featurizer.readers import default_data_dir


def write_subset(raw: dict, rows: list[int], path: Path) -> None:
    """Rows ``rows`` of a split-orient frame, as a plain JSON frame."""
    index, data = [raw["index"][i] for i in rows], [raw["data"][i] for i in rows]
    subset = {"columns": raw["columns"], "index": index, "data": data}
    path.write_text(json.dumps(subset))


def measure(command: list[str]) -> dict:
    """Run ``command``; wall seconds and the peak summed RSS (MiB) of it and its children."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parent, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            members = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in members if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr}")
    return {"seconds": seconds, "peak_rss_mib": peak / 2**20, "log": stderr.strip().splitlines()[-1]}


def main() -> None:
    p = Parser(description=__doc__, formatter_class=ScriptHelp)
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder ($DIM_DATA_DIR)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 36738], help="numbers of structures per run")
    p.add_argument("--device", default="cpu", help="torch device of the network")
    p.add_argument("--n-jobs", type=int, default=1, help="encoding processes")
    p.add_argument("--compile", action="store_true", help="pass --compile (compile time included)")
    p.add_argument("--chunk-size", type=int, default=5000, help="structures per written part")
    p.add_argument("--small-chunk-size", type=int, default=1000, help="chunk size of the second streaming run")
    p.add_argument("--seed", type=int, default=0, help="seeds the shuffle the sizes are drawn from")
    p.add_argument("--weights", default=None, help="DIM weights (None: the package default)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder for the outputs")
    args = p.parse_args()
    from monty.io import zopen

    with zopen(str(args.data_dir / "mp2018_e_form_gap.json.gz"), "rt") as f:
        raw = json.load(f)
    order = [int(i) for i in np.random.default_rng(args.seed).permutation(len(raw["index"]))]
    common = ["--device", args.device, "--n-jobs", str(args.n_jobs), "--no-progress"]
    common += ["--weights", args.weights] if args.weights else []
    common += ["--compile"] if args.compile else []
    cli = [sys.executable, "-m", "dim_featurizer.cli"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.sizes:
            n = min(n, len(raw["index"]))
            source = tmp / f"mp2018_first{n}.json"
            write_subset(raw, order[:n], source)
            small = ["--out-dir", str(tmp / f"small{n}"), "--chunk-size", str(args.small_chunk_size)]
            runs = {
                "stream": [str(source), "--out-dir", str(tmp / f"parts{n}"), "--chunk-size", str(args.chunk_size)],
                f"stream{args.small_chunk_size}": [str(source), *small],
                "in_memory": [str(source), "-o", str(tmp / f"one{n}.parquet")],
            }
            for mode, extra in runs.items():
                result = measure([*cli, *extra, *common])
                rows.append({"n": n, "mode": mode, **result, "structures_per_second": n / result["seconds"]})
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(tmp / f"parts{n}")
            shutil.rmtree(tmp / f"small{n}", ignore_errors=True)
    largest = max(r["n"] for r in rows)
    by = {(r["n"], r["mode"]): r for r in rows}
    lines = [
        f"dim-featurize on {machine()['cpu']} ({machine()['cores']} cores), device {args.device}, "
        f"--n-jobs {args.n_jobs}{' --compile' if args.compile else ''}, --chunk-size {args.chunk_size} "
        f"(stream{args.small_chunk_size}: "
        f"{args.small_chunk_size}); sizes are nested draws of one shuffle (seed {args.seed}); "
        "each run a fresh process (startup included)",
        f"{'structures':>10} {'mode':>10} {'seconds':>8} {'struct/s':>9} {'s per 1k':>9} {'peak MiB':>9} "
        f"{'stream/in-memory time':>22} {'memory':>7}",
    ]
    for r in rows:
        peer = by[(r["n"], "in_memory")]
        lines.append(
            f"{r['n']:>10} {r['mode']:>10} {r['seconds']:8.1f} {r['structures_per_second']:9.1f} "
            f"{1000 * r['seconds'] / r['n']:9.2f} {r['peak_rss_mib']:9.0f} "
            f"{r['seconds'] / peer['seconds']:22.2f} {r['peak_rss_mib'] / peer['peak_rss_mib']:7.2f}"
        )
    smallest = min(r["n"] for r in rows)
    for mode in ("stream", f"stream{args.small_chunk_size}", "in_memory"):
        a, b = by[(smallest, mode)], by[(largest, mode)]
        lines.append(
            f"{mode}: {largest / smallest:.1f}x the structures took {b['seconds'] / a['seconds']:.2f}x the time "
            f"and {b['peak_rss_mib'] / a['peak_rss_mib']:.2f}x the peak memory"
        )
    text = "\n".join(lines)
    print(text)
    report = {"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}, "machine": machine()}
    report["date"] = time.strftime("%Y-%m-%d")
    stem = args.out / f"scale_{args.device.split(':')[0]}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {stem}.json and .txt")


if __name__ == "__main__":
    main()
