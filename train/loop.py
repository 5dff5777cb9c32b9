"""The pretraining loop: seeded, resumable, checkpointed, optionally distributed.

Every random draw of step s in epoch e comes from ``SeedSequence([seed, e, s, rank])``,
so a run resumed from any checkpoint repeats the uninterrupted run exactly.
No label is read: the kept checkpoint is the one with the lowest
self-supervised validation loss.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from dim_featurizer.files import write_atomically, write_json
from dim_featurizer.weights import save_pretrained

from .build import RunSetup, epoch_batches, step_rng
from .config import SPEED_OPTIONS, TrainConfig
from .objective import Losses

__all__ = ["LOSS_NAMES", "TrainConfig", "Trainer", "epoch_batches", "step_rng"]

#: Options added after runs whose checkpoints lack them, with the value those runs trained with.
ADDED_OFF = {"anchor": 0.0, "substitutions": 0}

LOSS_NAMES = (
    "local_js",
    "local_kl",
    "global_js",
    "global_kl",
    "reconstruction",
    "masked",
    "shell",
    "elements",
    "total",
)


def _write_log(history: list[dict], path: Path) -> None:
    if not history:
        return

    def write(target: Path) -> None:
        with open(target, "w", newline="") as f:
            # Rows of a run resumed across versions may hold different columns: write their union.
            fieldnames = list(dict.fromkeys(k for row in history for k in row))
            writer = csv.DictWriter(f, fieldnames=fieldnames, restval="")
            writer.writeheader()
            writer.writerows(history)

    write_atomically(path, write)


class Trainer:
    """Pretrains the model of a :class:`RunSetup` (built by :func:`build.build_setup`).

    Args:
        setup: the model, data, split, hyper-parameters and device.
        run_dir: where checkpoints, the log, the curves and the best model go.
    """

    def __init__(self, setup: RunSetup, run_dir: str | Path) -> None:
        self.setup = setup
        self.model, self.dataset, self.config = setup.model, setup.dataset, setup.config
        self.train_idx, self.val_idx, self.device = setup.train_idx, setup.val_idx, setup.device
        self.run_dir = Path(run_dir)
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        cfg = self.config
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad, eps=cfg.eps
        )
        self.wrapped = self.model
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.model, device_ids=ids)
        self.state = {"epoch": 0, "step": 0, "sums": {}, "history": [], "best_val": math.inf, "best_epoch": -1}
        self._stop = False
        # The encoder's seeded initialisation θ₀ (the setup is freshly built: a checkpoint loads later, in fit).
        self.start = [p.detach().clone() for p in self.model.encoder.parameters()]

    # -- persistence ---------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        """Write model, optimiser and loop state atomically (rank 0 only)."""
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        blob = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": json.dumps(self.state),
            "config": json.dumps(asdict(self.config)),
        }
        write_atomically(self.checkpoint_path, lambda p: torch.save(blob, p))

    def load_checkpoint(self) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (tensors only, no arbitrary pickle)."""
        blob = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        saved, current = json.loads(blob["config"]), asdict(self.config)
        # Only the epoch limit (raising it extends a finished run without changing any draw) and the speed
        # options may change. An option added since (ADDED_OFF) is off in a checkpoint that lacks it.
        free = ("epochs", *SPEED_OPTIONS)
        saved = ADDED_OFF | saved
        changed = sorted(k for k in saved.keys() | current.keys() if k not in free and saved.get(k) != current.get(k))
        if changed:
            raise ValueError(f"{self.checkpoint_path} was written with other settings: {changed}")
        self.model.load_state_dict(blob["model"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.state = json.loads(blob["state"])

    # -- one step --------------------------------------------------------------
    def sample(self, indices: np.ndarray, rng: np.random.Generator):
        """The real batch of crystals ``indices`` with its false samples, and the noise generator."""
        return self.setup.sample(indices, rng)

    def losses(self, module: torch.nn.Module, indices: np.ndarray, rng: np.random.Generator) -> Losses:
        """The losses of ``module`` (the model, or its distributed wrapper) on crystals ``indices`` and their
        false samples drawn from ``rng``; bfloat16 autocast on CUDA when the config asks for it."""
        sample, generator = self.sample(indices, rng)
        use_amp = self.config.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            return module(sample, generator)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation losses, with the same false samples and noise every epoch."""
        self.model.eval()
        sums = dict.fromkeys(LOSS_NAMES, 0.0)
        for batch, rng in self.setup.validation_batches():
            losses = self.losses(self.model, batch, rng).as_floats()
            for k in LOSS_NAMES:
                sums[k] += losses[k] * len(batch)
        self.model.train()
        return {k: v / len(self.val_idx) for k, v in sums.items()}

    def _all_reduce(self, sums: dict[str, float]) -> dict[str, float]:
        if not self.distributed:
            return sums
        keys = sorted(sums)
        t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    # -- the loop -------------------------------------------------------------------
    def fit(
        self,
        resume: bool = False,
        max_steps: int | None = None,
        pbar: bool = True,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> dict:
        """Train until ``epochs`` or a validation plateau.

        Args:
            resume: continue from ``run_dir/checkpoint.pt``.
            max_steps: stop (with a checkpoint) after this many steps in this
                call, as a kill would; for tests and time-boxed runs.
            pbar: show a progress bar.
            on_epoch: called with the loop state after each epoch is logged and checkpointed.

        Returns:
            The loop state: history (one row per epoch), best epoch and loss.
        """
        if resume and self.checkpoint_path.is_file():
            self.load_checkpoint()
        cfg = self.config
        previous = (
            {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if self.rank == 0 else {}
        )
        steps_done = 0
        try:
            while self.state["epoch"] < cfg.epochs and not self.plateaued():
                epoch = self.state["epoch"]
                batches = epoch_batches(self.dataset.n_sites, self.train_idx, cfg.batch_sites, cfg.seed, epoch)
                per_rank = len(batches) // self.world
                mine = batches[self.rank :: self.world][:per_rank]
                started = time.perf_counter() - self.state["sums"].get("seconds", 0.0)
                bar = tqdm(
                    total=per_rank, initial=self.state["step"], desc=f"epoch {epoch}", disable=not pbar or self.rank
                )
                for step in range(self.state["step"], per_rank):
                    losses = self.losses(self.wrapped, mine[step], step_rng(cfg.seed, epoch, step, self.rank))
                    self.optimizer.zero_grad(set_to_none=True)
                    losses.total.backward()
                    if cfg.anchor > 0:
                        self.pull_to_start()
                    if cfg.grad_clip > 0:  # 0 or less: no clipping (the authors' code)
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                    self.optimizer.step()
                    sums = self.state["sums"]
                    for k, v in losses.as_floats().items():
                        sums[k] = sums.get(k, 0.0) + v * len(mine[step])
                    sums["crystals"] = sums.get("crystals", 0) + len(mine[step])
                    sums["seconds"] = time.perf_counter() - started
                    self.state["step"] = step + 1
                    steps_done += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses.as_floats()['total']:.4f}")
                    if self.state["step"] % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self._stop or (max_steps is not None and steps_done >= max_steps):
                        self.save_checkpoint()
                        bar.close()
                        return self.state
                bar.close()
                self._end_epoch(epoch)
                if on_epoch is not None:
                    on_epoch(self.state)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.state

    @torch.no_grad()
    def pull_to_start(self) -> None:
        """Add the L2-SP gradient λ(θ − θ₀) to each encoder weight's gradient (``anchor`` = λ)."""
        for weight, start in zip(self.model.encoder.parameters(), self.start):
            if weight.grad is not None:
                weight.grad.add_(weight - start, alpha=self.config.anchor)

    def distance_from_start(self) -> float:
        """‖θ − θ₀‖ over the encoder's weights: how far training has moved it from its initialisation."""
        with torch.no_grad():
            return math.sqrt(
                sum(float(((w - s) ** 2).sum()) for w, s in zip(self.model.encoder.parameters(), self.start))
            )

    def plateaued(self) -> bool:
        """True once ``patience`` epochs have passed without a validation gain of ``min_delta``."""
        return self.state["epoch"] - 1 - self.state["best_epoch"] >= self.config.patience

    def _on_signal(self, signum, frame) -> None:
        self._stop = True  # finish the step, checkpoint, return

    def _end_epoch(self, epoch: int) -> None:
        sums = self._all_reduce(self.state["sums"])
        seconds = self.state["sums"]["seconds"]
        # .get: a step checkpointed by an older version lacks the newer terms' sums
        train = {k: sums.get(k, 0.0) / sums["crystals"] for k in LOSS_NAMES}
        val = self.evaluate()
        row = {"epoch": epoch + 1, "seconds": round(seconds, 2), "crystals_per_s": round(sums["crystals"] / seconds, 2)}
        row |= {f"train_{k}": round(v, 6) for k, v in train.items()}
        row |= {f"val_{k}": round(v, 6) for k, v in val.items()}
        row["distance_from_start"] = round(self.distance_from_start(), 4)
        self.state["history"].append(row)
        if val["total"] < self.state["best_val"] - self.config.min_delta:
            self.state["best_val"], self.state["best_epoch"] = val["total"], epoch
            if self.rank == 0:
                save_pretrained(self.model.encoder, self.run_dir / "best")
                write_json(self.run_dir / "best" / "training.json", row)
        self.state.update(epoch=epoch + 1, step=0, sums={})
        if self.rank == 0:
            _write_log(self.state["history"], self.run_dir / "log.csv")
            self.save_checkpoint()
