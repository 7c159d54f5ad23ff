"""`vidseg train`: config → stage → data → engine."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vidseg.config import apply_overrides, dump_yaml, load_preset_or_file
from vidseg.data.build import build_clip_dataset
from vidseg.data.clips import collate_clips
from vidseg.training.engine import EngineOptions, Trainer, TrainSummary
from vidseg.training.stages import TASK_OF_INFERENCE, SegmenterStage


def train(config: str, stage: str, out_dir: str | Path, *, overrides: list[str] | tuple[str, ...] = (),
          resume: bool = False, device: str | None = None, checkpoint_every: int = 500) -> TrainSummary:
    """Train `stage` of the experiment `config` (preset name or YAML path) into `out_dir`."""
    cfg = apply_overrides(load_preset_or_file(config), list(overrides))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    torch.manual_seed(cfg.seed)
    if stage != "segmenter":
        raise ValueError(f"unknown stage {stage!r}")
    runner = SegmenterStage.from_config(cfg)
    task = TASK_OF_INFERENCE[cfg.inference.task]
    dataset = build_clip_dataset(cfg.data, task, train=True, seed=cfg.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(dump_yaml(cfg))
    options = EngineOptions(out_dir=out_dir, stage=stage, device=device, checkpoint_every=checkpoint_every)
    trainer = Trainer(runner.model, dataset, collate_clips, runner.loss, cfg, options)
    return trainer.fit(resume=resume)
