"""The training loop shared by every stage: DDP, AMP, accumulation, checkpoints, exact resume.

The engine knows nothing about segmentation: a stage supplies a map-style dataset, a collate function and
a `loss_fn(model, batch, iteration) -> StepOutput` (the iteration is the 0-based index of the update the
batch is for, right after `--resume` too: stages whose loss depends on training progress read it there).
The engine owns the data order (a seeded, resumable sampler), the optimiser and schedule, mixed precision,
gradient clipping and accumulation, non-finite-loss handling, checkpoints (every N iterations and on
SIGTERM/SIGINT) and logs.

Data parallel: launched under `torchrun`, the engine joins the process group (NCCL on GPU, gloo on CPU)
and each rank takes its slice of every global batch, so 1 process and W processes with the same global
batch compute the same update.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Sized
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vidseg.config import ExperimentConfig
from vidseg.errors import VidsegError
from vidseg.io.checkpoint import load_checkpoint, save_checkpoint
from vidseg.training.checkpoint import latest_checkpoint
from vidseg.training.optim import build_optimizer, set_lr
from vidseg.types import ClassInfo


class TrainingError(VidsegError):
    """Training cannot go on (e.g. the loss stayed non-finite); the last good checkpoint is kept."""


@dataclass
class StepOutput:
    """What a stage's loss function returns for one micro-batch.

    Attributes:
        loss: scalar tensor to back-propagate.
        terms: named loss terms (already weighted) for the logs.
    """

    loss: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)


LossFn = Callable[[nn.Module, Any, int], StepOutput]


@dataclass(frozen=True)
class EngineOptions:
    """Run-level options that are not part of the experiment config."""

    out_dir: Path
    stage: str
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    max_nonfinite: int = 5
    device: str = "cpu"
    progress: bool = True
    classes: ClassInfo | None = None  # the model's classes, stored with every checkpoint


@dataclass
class TrainSummary:
    """How a `fit` call ended."""

    iteration: int
    last_checkpoint: Path | None
    interrupted: bool
    skipped_steps: int


class ResumableBatchSampler:
    """Deterministic, infinite stream of this rank's micro-batches, starting at any iteration.

    Epoch e visits the dataset in the order of `torch.randperm(n)` seeded with `seed + e`. Iteration i
    takes global positions [i·B, (i+1)·B) of that endless stream; rank r of W takes its contiguous B/W
    share, split into `accumulation` micro-batches.

    With `with_epoch`, each sample key is `(index, epoch)` instead of `index`, for datasets that draw a new
    clip (frames, augmentation) every epoch: the epoch travels with the key, so it reaches DataLoader worker
    processes and is right after `--resume` (a `set_epoch` call on the main process's copy would do neither).
    """

    def __init__(self, num_samples: int, global_batch: int, rank: int, world_size: int,
                 accumulation: int, seed: int, start_iteration: int, with_epoch: bool = False):
        if global_batch % (world_size * accumulation):
            raise ValueError(
                f"batch size {global_batch} is not divisible by world size {world_size} × "
                f"accumulation {accumulation}"
            )
        if num_samples == 0:
            raise ValueError("the training dataset is empty")
        self.n, self.batch, self.rank, self.world = num_samples, global_batch, rank, world_size
        self.accumulation, self.seed, self.start = accumulation, seed, start_iteration
        self.with_epoch = with_epoch
        self._perms: dict[int, torch.Tensor] = {}

    def _index(self, position: int) -> int | tuple[int, int]:
        epoch, offset = divmod(position, self.n)
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        index = int(self._perms[epoch][offset])
        return (index, epoch) if self.with_epoch else index

    def __iter__(self) -> Iterator[list[int | tuple[int, int]]]:
        per_rank = self.batch // self.world
        micro = per_rank // self.accumulation
        iteration = self.start
        while True:
            first = iteration * self.batch + self.rank * per_rank
            for m in range(self.accumulation):
                yield [self._index(first + m * micro + j) for j in range(micro)]
            iteration += 1


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy: (name, keys, position, has_gauss, cached_gaussian)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if hasattr(batch, "to") and callable(batch.to):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    return batch


def init_distributed(device: str) -> tuple[int, int]:
    """Join the torchrun process group if launched under torchrun; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """Runs `config.optim.max_iters` iterations of one stage.

    Args:
        model: the module to train (parameters with requires_grad=False stay frozen).
        dataset: map-style dataset of training samples.
        collate_fn: list of samples -> batch (anything `_to_device` understands, or with a `.to`).
        loss_fn: (model, batch, iteration) -> StepOutput; under DDP it receives the DDP wrapper.
        config: experiment config (optim, seed, data.num_workers); saved in every checkpoint.
        options: output directory, stage tag, checkpoint/log cadence, device.
    """

    def __init__(self, model: nn.Module, dataset: Dataset, collate_fn: Callable[[list], Any],
                 loss_fn: LossFn, config: ExperimentConfig, options: EngineOptions):
        self.config, self.options = config, options
        self.device = torch.device(options.device)
        self.rank, self.world = init_distributed(options.device)
        self.model = model.to(self.device)
        self.dataset, self.collate_fn, self.loss_fn = dataset, collate_fn, loss_fn
        self.optimizer = build_optimizer(self.model, config.optim)
        amp = config.optim.amp
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None
        self.iteration = 0
        self.nonfinite_streak = 0
        self.skipped_steps = 0
        self._stop_signal: int | None = None
        self.out_dir = Path(options.out_dir)
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    # -- checkpoints -------------------------------------------------------------------------------------

    def _trainer_state(self) -> dict[str, Any]:
        state = {
            "iteration": self.iteration,
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(),
            "nonfinite_streak": self.nonfinite_streak,
            "skipped_steps": self.skipped_steps,
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def save(self) -> Path | None:
        """Write `ckpt_<iteration>` (rank 0) and prune old ones; returns its path on rank 0."""
        path = None
        if self.rank == 0:
            path = save_checkpoint(self.out_dir / f"ckpt_{self.iteration:07d}", self.model.state_dict(),
                                   self.config, self.options.stage, self.iteration, self._trainer_state(),
                                   classes=self.options.classes)
            kept = sorted(p for p in self.out_dir.glob("ckpt_*") if p.is_dir() and p.name[5:].isdigit())
            for old in kept[: -self.options.keep_checkpoints]:
                for f in old.iterdir():
                    f.unlink()
                old.rmdir()
        if dist.is_initialized():
            dist.barrier()
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore model, optimiser, schedule, scaler, RNG and data position; False if nothing to resume."""
        path = Path(path) if path else latest_checkpoint(self.out_dir)
        if path is None:
            return False
        ckpt = load_checkpoint(path, expected_stage=self.options.stage, with_trainer_state=True)
        self.model.load_state_dict(ckpt.state_dict)
        state = ckpt.trainer_state or {}
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        return True

    # -- loop ----------------------------------------------------------------------------------------------

    def _loader(self) -> Iterator[Any]:
        optim = self.config.optim
        # Datasets with `set_epoch` (clip datasets) draw new clips each epoch: they get (index, epoch) keys.
        with_epoch = callable(getattr(self.dataset, "set_epoch", None))
        if not isinstance(self.dataset, Sized):
            raise TypeError("the engine takes a map-style dataset (with __len__)")
        sampler = ResumableBatchSampler(len(self.dataset), optim.batch_size, self.rank, self.world,
                                        optim.grad_accumulation, self.config.seed, self.iteration, with_epoch)
        workers = self.config.data.num_workers
        # An explicit generator keeps the loader from drawing on the global RNG, whose state a resumed
        # run restores; worker seeds then depend only on (seed, start iteration, rank).
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.iteration * 31 + self.rank)
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate_fn,
                            num_workers=workers, persistent_workers=False, generator=generator,
                            pin_memory=self.device.type == "cuda")
        return iter(loader)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop_signal = signum

    def fit(self, resume: bool = False, max_iters: int | None = None) -> TrainSummary:
        """Train until `max_iters` (default: config.optim.max_iters) or a stop signal."""
        if resume:
            self.resume()
        max_iters = self.config.optim.max_iters if max_iters is None else max_iters
        model: nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        log_file = (self.out_dir / "log.jsonl").open("a") if self.rank == 0 else None
        tb = self._tensorboard()
        bar = tqdm(total=max_iters, initial=self.iteration, disable=not self.options.progress or self.rank,
                   desc=self.options.stage, dynamic_ncols=True)
        last_ckpt: Path | None = None
        data = self._loader()
        start = time.perf_counter()
        try:
            model.train()
            while self.iteration < max_iters and self._stop_signal is None:
                loss_value, terms = self._step(model, data)
                self.iteration += 1
                bar.update(1)
                if log_file is not None and (self.iteration % self.options.log_every == 0 or self.iteration == 1):
                    record = {"iter": self.iteration, "loss": loss_value, **terms,
                              "lr": self.optimizer.param_groups[0]["lr"],
                              "time": round(time.perf_counter() - start, 3)}
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    bar.set_postfix(loss=f"{loss_value:.4f}")
                    if tb is not None:
                        for k, v in record.items():
                            if k != "iter":
                                tb.add_scalar(f"train/{k}", v, self.iteration)
                if self.iteration % self.options.checkpoint_every == 0:
                    last_ckpt = self.save()
            if self._stop_signal is not None or (last_ckpt is None or
                                                 last_ckpt.name != f"ckpt_{self.iteration:07d}"):
                last_ckpt = self.save()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            bar.close()
            if log_file is not None:
                log_file.close()
            if tb is not None:
                tb.close()
        return TrainSummary(self.iteration, last_ckpt, self._stop_signal is not None, self.skipped_steps)

    def _step(self, model: nn.Module, data: Iterator[Any]) -> tuple[float, dict[str, float]]:
        optim = self.config.optim
        self.optimizer.zero_grad(set_to_none=True)
        set_lr(self.optimizer, self.iteration, optim)
        total = torch.zeros((), device=self.device)
        terms: dict[str, float] = {}
        for micro in range(optim.grad_accumulation):
            batch = _to_device(next(data), self.device)
            last = micro == optim.grad_accumulation - 1
            sync = nullcontext() if last or not isinstance(model, nn.parallel.DistributedDataParallel) \
                else model.no_sync()
            with sync:
                autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype \
                    else nullcontext()
                with autocast:
                    out = self.loss_fn(model, batch, self.iteration)
                loss = out.loss.float() / optim.grad_accumulation
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            total += loss.detach()
            for k, v in out.terms.items():
                terms[k] = terms.get(k, 0.0) + float(v) / optim.grad_accumulation
        finite = torch.isfinite(total).float()
        if dist.is_initialized():
            dist.all_reduce(total)
            total /= self.world
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not bool(finite):
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_streak += 1
            self.skipped_steps += 1
            if self.rank == 0:
                tqdm.write(f"iteration {self.iteration + 1}: non-finite loss, step skipped "
                           f"({self.nonfinite_streak} in a row)")
            if self.nonfinite_streak >= self.options.max_nonfinite:
                # Skipped steps left the weights untouched, so they are still the last good ones.
                path = self.save()
                raise TrainingError(
                    f"loss was non-finite for {self.nonfinite_streak} iterations in a row at iteration "
                    f"{self.iteration + 1}; stopped (last good weights: {path or self.out_dir})"
                )
            return float("nan"), terms
        self.nonfinite_streak = 0
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), optim.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return float(total), terms

    def _tensorboard(self) -> Any:
        if self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.out_dir / "tb"))

