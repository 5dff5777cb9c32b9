"""The GPU path, checked in one short run: speed, CPU/GPU agreement, bf16 training with a resume, DDP.

1. Featurises ``--n`` (10,000) mp2018 structures on the device, with encoding
   spread over ``--n-jobs`` processes (all cores), and reports structures/s
   for encoding alone, the network alone and end to end. It also times the
   main process's share of encoding in workers (checking each structure and
   pickling its arrays), the ceiling on end-to-end speed that no number of
   workers lifts.
2. Checks that CPU and device vectors agree to ``--tolerance`` (1e-4) on
   ``--n-compare`` structures, in the dtype the package runs on the device
   (float32, TF32 off); TF32 and bf16 autocast are reported for reference.
3. Runs ``--train-steps`` bf16 pretraining steps on training-split crystals,
   stops with a checkpoint, resumes for as many again, and checks the resume
   carried on from the saved step.
4. With 2 or more GPUs, runs 2-process DDP (torchrun, NCCL) for a few steps.

It writes ``gpu_check_<device>.json`` and ``.txt`` under ``--out`` (default:
beside this script) with the machine. On a lent GPU machine with no access to
``../shared``, copy the two mp2018 files into a git-ignored folder, carry it,
and pass it as ``--data-dir``:

    python benchmarks/gpu_check.py --data-dir .device_data
    python benchmarks/gpu_check.py --device cpu --n 300 --n-compare 50 --train-steps 4   # a dry run
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.console import Parser, ScriptHelp
from dim_featurizer.encoding import check_entry
from dim_featurizer.provenance import machine
from dim_featurizer.readers import default_data_dir, read_frame, read_split

FRAME, SPLIT = "mp2018_e_form_gap.json.gz", "mp2018_folds.json"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed(featurizer: DeepInfoMaxFeaturizer, structures: list) -> dict:
    """Structures/s for encoding, the network and end to end (after a warm-up that starts the workers)."""
    featurizer.featurize_many(structures[:200], pbar=False)
    runner = featurizer.runner()
    device = runner.device
    start = time.perf_counter()
    encoded, errors = runner.encode(structures)
    encode_s = time.perf_counter() - start
    synchronize(device)
    start = time.perf_counter()
    runner.forward(encoded, errors)
    synchronize(device)
    network_s = time.perf_counter() - start
    start = time.perf_counter()
    rows = featurizer.featurize_many(structures, ignore_errors=True, pbar=False)
    synchronize(device)
    total_s = time.perf_counter() - start
    # The main process checks each structure and pickles its arrays for the workers (encoding.Cell).
    start = time.perf_counter()
    for s in structures[:1000]:
        pickle.dumps(check_entry(s, runner.encoding))
    main_ms = 1000 * (time.perf_counter() - start) / min(1000, len(structures))
    n = len(structures)
    return {
        "n": n,
        "failed": int(np.isnan(np.asarray(rows, dtype=float)).all(1).sum()),
        "encode_s": encode_s,
        "network_s": network_s,
        "end_to_end_s": total_s,
        "encode_per_s": n / encode_s,
        "network_per_s": n / network_s,
        "end_to_end_per_s": n / total_s,
        "main_process_ms_per_structure": main_ms,
        "encoding_processes": featurizer.n_jobs,
    }


def agreement(device: str, structures: list, weights: str | None, n_jobs: int) -> dict:
    """Largest |CPU - device| over the vectors, in the package's device dtype, and under TF32 and bf16."""
    cpu = DeepInfoMaxFeaturizer(weights=weights, device="cpu", n_jobs=n_jobs, pbar=False).transform(structures)
    gpu = DeepInfoMaxFeaturizer(weights=weights, device=device, n_jobs=n_jobs, pbar=False)
    result = {"n": len(structures), "package_dtype": str(next(gpu.fit().model_.parameters()).dtype)}
    result["max_abs_diff"] = float(np.nanmax(np.abs(gpu.transform(structures) - cpu)))
    if gpu.device_.type == "cuda":
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        result["max_abs_diff_tf32"] = float(np.nanmax(np.abs(gpu.transform(structures) - cpu)))
        torch.backends.cuda.matmul.allow_tf32 = previous
        with torch.autocast("cuda", dtype=torch.bfloat16):
            result["max_abs_diff_bf16_autocast"] = float(np.nanmax(np.abs(gpu.transform(structures) - cpu)))
    return result


def training(data_dir: Path, device: str, steps: int, n_jobs: int, limit: int, batch_sites: int) -> dict:
    """``steps`` pretraining steps (bf16 autocast on CUDA), a checkpoint, then a resume for ``steps`` more.

    The resume counts as carried on when it ends at step ``2 * steps`` of the first epoch (the epoch must
    hold that many steps: ``limit`` and ``batch_sites`` set its length).
    """
    from dim_featurizer.train.config import TrainConfig
    from dim_featurizer.train.run import pretrain

    options = {
        "config": TrainConfig(epochs=1, checkpoint_every=10**9, batch_sites=batch_sites),
        "split": data_dir / SPLIT,
        "limit": limit,
        "n_jobs": n_jobs,
        "device": device,
        "pbar": False,
    }
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, cache = Path(tmp) / "run", Path(tmp) / "cache"
        start = time.perf_counter()
        first = pretrain(data_dir / FRAME, run_dir, max_steps=steps, cache_dir=cache, **options)
        first_s, step_after_first = time.perf_counter() - start, first.state["step"]
        start = time.perf_counter()
        second = pretrain(data_dir / FRAME, run_dir, resume=True, max_steps=steps, cache_dir=cache, **options)
        resume_s = time.perf_counter() - start
        rows = (run_dir / "log.csv").read_text().splitlines() if (run_dir / "log.csv").is_file() else []
    return {
        "steps_each": steps,
        "amp_bf16": first.config.amp and first.device.type == "cuda",
        "step_after_first": step_after_first,
        "step_after_resume": second.state["step"],
        "epoch_after_resume": second.state["epoch"],
        "resumed_from_checkpoint": step_after_first == steps and second.state["step"] == 2 * steps,
        "first_s": first_s,
        "resume_s": resume_s,
        "losses_finite": bool(np.isfinite(list(second.state["sums"].values())).all()) if second.state["sums"] else None,
        "log_rows": len(rows),
    }


def ddp(data_dir: Path, steps: int, limit: int) -> dict:
    """2-process DDP over NCCL through torchrun, when the machine has 2 GPUs."""
    if torch.cuda.device_count() < 2:
        return {"skipped": f"{torch.cuda.device_count()} GPU(s); DDP needs 2"}
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "dim_featurizer.train.cli", "fit", str(data_dir / FRAME), "--run-dir", f"{tmp}/run",
            "--split", str(data_dir / SPLIT), "--limit", str(limit), "--max-steps", str(steps),
            "--cache-dir", f"{tmp}/cache", "--epochs", "1", "--no-progress",
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        return {"returncode": done.returncode, "seconds": time.perf_counter() - start, "tail": done.stderr[-2000:]}


def summary(report: dict, tolerance: float) -> str:
    """The report in a few lines of text."""
    s, a, t, m = report["speed"], report["agreement"], report["training"], report["machine"]
    ceiling = 1000 / s["main_process_ms_per_structure"]
    lines = [
        f"{m.get('gpu', m['cpu'])} ({report['device']}), {m['cores']} cores, "
        f"{s['encoding_processes']} encoding processes, {s['n']} mp2018 structures",
        f"end to end {s['end_to_end_per_s']:.0f} structures/s; encoding alone {s['encode_per_s']:.0f}/s; "
        f"network alone {s['network_per_s']:.0f}/s",
        f"main process checks and sends {s['main_process_ms_per_structure']:.3f} ms/structure: "
        f"at most {ceiling:.0f} structures/s through the workers",
        f"CPU vs {report['device']} ({a['package_dtype']}): max |diff| {a['max_abs_diff']:.2e} "
        f"on {a['n']} structures, {'within' if a['ok'] else 'OVER'} {tolerance:g}",
    ]
    if "max_abs_diff_tf32" in a:
        lines.append(
            f"for reference: TF32 {a['max_abs_diff_tf32']:.2e}, bf16 autocast {a['max_abs_diff_bf16_autocast']:.2e}"
        )
    lines += [
        f"training: {t['steps_each']} steps (bf16 autocast: {t['amp_bf16']}) in {t['first_s']:.1f} s; "
        f"resume from step {t['step_after_first']} to {t['step_after_resume']} in {t['resume_s']:.1f} s; "
        f"carried on from the checkpoint: {t['resumed_from_checkpoint']}",
        f"DDP: {report['ddp'].get('skipped') or ('ok' if report['ddp']['returncode'] == 0 else 'FAILED')}",
        f"all checks passed: {report['ok']}",
    ]
    return "\n".join(lines)


def main() -> None:
    p = Parser(description=__doc__, formatter_class=ScriptHelp)
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder ($DIM_DATA_DIR)")
    p.add_argument("--device", default="cuda", help="torch device of the network")
    p.add_argument("--n", type=int, default=10000, help="structures featurised")
    p.add_argument("--n-compare", type=int, default=1000, help="structures compared between CPU and the device")
    p.add_argument("--n-jobs", type=int, default=-1, help="encoding processes (-1: all cores)")
    p.add_argument("--train-steps", type=int, default=150, help="steps before the stop, and again after the resume")
    p.add_argument("--train-limit", type=int, default=20000, help="training-split crystals to pretrain on")
    p.add_argument("--train-batch-sites", type=int, default=1200, help="unique sites per training batch")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest CPU/device difference accepted")
    p.add_argument("--weights", default=None, help="DIM weights (None: the package default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the structures drawn")
    p.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder for the outputs")
    args = p.parse_args()

    split = read_split(args.data_dir / SPLIT)
    pool = split["train"] + split["test"]
    chosen = np.random.default_rng(args.seed).choice(pool, size=min(args.n, len(pool)), replace=False)
    structures = list(read_frame(args.data_dir / FRAME, chosen)["structure"])
    n_jobs = (os.cpu_count() or 1) if args.n_jobs == -1 else args.n_jobs
    featurizer = DeepInfoMaxFeaturizer(weights=args.weights, device=args.device, n_jobs=n_jobs, pbar=False)
    report: dict = {"device": args.device, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    report["speed"] = speed(featurizer, structures)
    print(json.dumps(report["speed"]), flush=True)
    report["agreement"] = agreement(args.device, structures[: args.n_compare], args.weights, featurizer.n_jobs)
    report["agreement"]["tolerance"] = args.tolerance
    report["agreement"]["ok"] = report["agreement"]["max_abs_diff"] <= args.tolerance
    print(json.dumps(report["agreement"]), flush=True)
    report["training"] = training(
        args.data_dir, args.device, args.train_steps, n_jobs, args.train_limit, args.train_batch_sites
    )
    print(json.dumps(report["training"]), flush=True)
    report["ddp"] = ddp(args.data_dir, min(args.train_steps, 50), args.train_limit)
    ddp_ok = "skipped" in report["ddp"] or report["ddp"]["returncode"] == 0
    report["ok"] = report["agreement"]["ok"] and report["training"]["resumed_from_checkpoint"] and ddp_ok
    print(json.dumps({k: v for k, v in report["ddp"].items() if k != "tail"}), flush=True)

    text = summary(report, args.tolerance)
    print(text)
    stem = args.out / f"gpu_check_{args.device.split(':')[0]}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {stem}.json and .txt")
    raise SystemExit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
