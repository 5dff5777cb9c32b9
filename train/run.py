"""``pretrain``: data → encoding cache → Trainer → run folder, as one Python call."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch.distributed as dist

from dim_featurizer.encoding import EncodingConfig
from dim_featurizer.files import write_json
from dim_featurizer.provenance import run_record
from dim_featurizer.readers import read_ids_csv

from .build import RunSetup, build_setup
from .cache import cached_dataset
from .config import TrainConfig
from .data import count_held_out, load_structures
from .loop import Trainer
from .substitution import substituted_copies


def _init_distributed() -> None:
    """Join the torchrun process group when launched by torchrun with more than one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def _reason_summary(excluded: dict[str, str]) -> str:
    kinds = Counter(
        reason.split(":", 1)[0] if "max_atoms" not in reason else "primitive cell over max_atoms"
        for reason in excluded.values()
    )
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()) or "none"


def prepare_setup(
    source: str | Path | pd.DataFrame | pd.Series,
    config: TrainConfig | None = None,
    encoding: EncodingConfig | None = None,
    split: str | Path | None = None,
    subset: str = "train",
    ids_csv: str | Path | None = None,
    exclude_ids: str | Path | None = None,
    cache_dir: str | Path = ".cache/dim-encodings",
    limit: int | None = None,
    n_jobs: int = 1,
    device: str = "auto",
    pbar: bool = True,
) -> tuple[RunSetup, dict]:
    """Read and encode the data (cached) and build the seeded model and split, without training.

    Args:
        source: JSON frame file, CIF folder/zip/tar (with ``ids_csv``), or a DataFrame/Series of Structures.
        config: training hyper-parameters.
        encoding: encoding options (max_atoms, ...).
        split: split file; only ``subset`` ids are read (test ids never).
        subset: the split's key to read.
        ids_csv: for a CIF folder/archive, the CSV whose first column lists the ids.
        exclude_ids: a CSV whose first column lists ids to leave out (before ``limit``).
        cache_dir: where encoded datasets are cached.
        limit: keep only the first ``limit`` ids (quick runs).
        n_jobs: encoding processes.
        device: torch device or "auto".
        pbar: show progress bars.

    Returns:
        The :class:`RunSetup` and the run description written to ``run.json``.
    """
    _init_distributed()
    config = config or TrainConfig()
    encoding = encoding or EncodingConfig()
    rank = dist.get_rank() if dist.is_initialized() else 0
    structures = load_structures(source, split=split, subset=subset, ids_csv=ids_csv, pbar=pbar)
    left_out = 0
    if exclude_ids is not None:
        drop = structures.index.isin(read_ids_csv(exclude_ids))
        structures, left_out = structures[~drop], int(drop.sum())
    if limit is not None:
        structures = structures.iloc[:limit]
    hypothetical = substituted_copies(structures, config.substitutions, config.seed)  # empty for 0
    structures = pd.concat([structures, hypothetical]) if len(hypothetical) else structures
    if rank == 0:
        dataset, cache = cached_dataset(structures, encoding, cache_dir, n_jobs=n_jobs, pbar=pbar)
    if dist.is_initialized():
        dist.barrier()
    if rank != 0:
        dataset, cache = cached_dataset(structures, encoding, cache_dir, n_jobs=n_jobs, pbar=False)
    setup = build_setup(dataset, config, encoding, device=device, rank=rank)
    in_memory = isinstance(source, (pd.DataFrame, pd.Series))
    info = {
        "data": {
            "name": "dataframe" if in_memory else Path(str(source)).name.split(".")[0],
            "source": "in-memory DataFrame" if in_memory else str(source),
            "split": str(split) if split else "none",
            "subset": subset if split else "all",
            "left_out": {"file": str(exclude_ids), "ids": left_out} if exclude_ids else None,
            "offered": len(structures),
            "hypothetical": len(hypothetical),
            # load_structures passes on the structure column alone: no property label reaches training.
            "labels_read": [],
            "test_ids_read": count_held_out(list(structures.index), split),
            "excluded": len(dataset.excluded),
            "excluded_reasons": _reason_summary(dataset.excluded),
            "used": len(dataset),
            "train": len(setup.train_idx),
            "validation": len(setup.val_idx),
            "cache": str(cache),
            "excluded_ids": excluded_by_reason(dataset.excluded),
        },
        "train_config": asdict(config),
    }
    info = run_record(**info)
    if dist.is_initialized():
        info["hardware"] += f" x{dist.get_world_size()} processes"
    return setup, info


def excluded_by_reason(excluded: dict[str, str]) -> dict[str, str]:
    """``{reason: "id id ..."}``: the excluded ids, sorted and space-joined per reason (compact in run.json)."""
    groups: dict[str, list[str]] = {}
    for key, reason in excluded.items():
        groups.setdefault(reason, []).append(key)
    return {reason: " ".join(sorted(ids)) for reason, ids in sorted(groups.items())}


def prepare_run(source: str | Path | pd.DataFrame | pd.Series, run_dir: str | Path, **options: Any):
    """:func:`prepare_setup`, then the :class:`Trainer` writing into ``run_dir``; returns (trainer, run description)."""
    setup, info = prepare_setup(source, **options)
    return Trainer(setup, run_dir), info


#: What a run folder holds once a run has started in it.
RUN_FILES = ("run.json", "checkpoint.pt", "log.csv", "best")


class RunExistsError(ValueError):
    """A run folder already holds a run, and neither resuming nor overwriting it was asked for."""


def check_run_dir(run_dir: Path, info: dict, resume: bool, overwrite: bool, clear: bool = True) -> None:
    """Refuse to start a fresh run over an existing one, unless ``overwrite`` (which clears it when ``clear``).

    Under torchrun every process checks but only rank 0 clears (``clear``), so all ranks decide alike.

    Raises:
        RunExistsError: naming the folder and the options that differ from the stored run's.
    """
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not found or resume:
        return
    if overwrite:
        for name in found if clear else ():
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    stored = json.loads((run_dir / "run.json").read_text()).get("train_config", {}) if "run.json" in found else {}
    now = info["train_config"]
    differ = [f"{k}: {stored[k]!r} there, {now.get(k)!r} now" for k in sorted(stored) if stored[k] != now.get(k)]
    detail = f"options that differ: {'; '.join(differ)}" if differ else "the same options"
    raise RunExistsError(
        f"{run_dir} already holds a run ({', '.join(found)}; {detail}): pass --resume to continue it, "
        "--overwrite to replace it, or choose another --run-dir"
    )


def pretrain(
    source: str | Path | pd.DataFrame | pd.Series,
    run_dir: str | Path,
    resume: bool = False,
    max_steps: int | None = None,
    pbar: bool = True,
    overwrite: bool = False,
    **options: Any,
) -> Trainer:
    """Pretrain an encoder with Deep InfoMax and leave everything in ``run_dir``.

    Args:
        source: as for :func:`prepare_setup`.
        run_dir: output folder: checkpoint.pt, log.csv, best/, run.json (with every excluded id and why),
            loss_curves.png.
        resume: continue from run_dir's checkpoint.
        max_steps: stop after this many steps (with a checkpoint).
        pbar: show progress bars.
        overwrite: replace a run already in ``run_dir`` (without it, and without ``resume``, that is an error).
        options: any other argument of :func:`prepare_setup` (config, encoding, split, cache_dir, ...).

    Returns:
        The :class:`Trainer`, its state holding the per-epoch history.

    Raises:
        RunExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` was given.
        ValueError: ``resume`` with settings other than the checkpoint's (named).
    """
    trainer, info = prepare_run(source, run_dir, pbar=pbar, **options)
    config, run_dir = trainer.config, Path(run_dir)
    check_run_dir(run_dir, info, resume, overwrite, clear=trainer.rank == 0)
    if dist.is_initialized():  # every rank has seen the folder as it was before rank 0 writes into it
        dist.barrier()
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume and trainer.checkpoint_path.is_file():
        trainer.load_checkpoint()
    first_epoch = trainer.state["epoch"] + 1
    run_json = run_dir / "run.json"
    previous = json.loads(run_json.read_text()).get("segments", []) if resume and run_json.is_file() else []
    # A killed segment ends at the epoch its checkpoint reached: the record is fixed up, never lost.
    previous = [s for s in previous if s["epochs"][1] >= s["epochs"][0]]
    if previous and previous[-1]["epochs"][1] > first_epoch - 1:
        previous[-1]["epochs"][1] = first_epoch - 1

    def record(state: dict) -> None:
        """Write run.json with this segment as it stands (after every epoch, so a kill loses nothing)."""
        segment = {"epochs": [first_epoch, state["epoch"]], "commit": info["commit"], "hardware": info["hardware"]}
        info["segments"] = previous + ([segment] if state["epoch"] >= first_epoch else [])
        finished = state["epoch"] >= config.epochs
        info["stop_reason"] = (
            "validation loss plateau"
            if trainer.plateaued()
            else "epoch limit"
            if finished
            else "interrupted before a validation plateau; resumable"
        )
        info["epochs_done"] = state["epoch"]
        if trainer.rank == 0:
            write_json(run_json, info)

    record(trainer.state)
    trainer.fit(max_steps=max_steps, pbar=pbar, on_epoch=record)
    record(trainer.state)
    if trainer.rank == 0 and trainer.state["history"]:
        from .plot import plot_curves

        plot_curves(run_dir / "log.csv", run_dir / "loss_curves.png")
    return trainer
