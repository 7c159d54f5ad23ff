"""`vidseg train`: config → stage → data → engine."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vidseg.config import apply_overrides, dump_yaml, load_preset_or_file
from vidseg.data.build import build_clip_dataset
from vidseg.data.clips import collate_clips
from vidseg.errors import ConfigError
from vidseg.training.engine import EngineOptions, Trainer, TrainSummary
from vidseg.training.l2g import L2GStage
from vidseg.training.stages import STAGES, TASK_OF_INFERENCE
from vidseg.training.video_mask2former import VideoMask2FormerStage


def train(config: str, stage: str, out_dir: str | Path, *, overrides: list[str] | tuple[str, ...] = (),
          resume: bool = False, device: str | None = None, checkpoint_every: int = 500,
          init: str | Path | None = None) -> TrainSummary:
    """Train `stage` of the experiment `config` (preset name or YAML path) into `out_dir`.

    `init` is the previous stage's checkpoint (required for `tracker` and `refiner`).
    """
    cfg = apply_overrides(load_preset_or_file(config), list(overrides))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    stages = {**STAGES, "l2g": L2GStage, "video_mask2former": VideoMask2FormerStage}
    if stage not in stages:
        raise ConfigError(f"--stage: unknown stage {stage!r}; expected one of {', '.join(stages)}")
    if stage in ("tracker", "refiner") and init is None and not resume:
        previous = "segmenter" if stage == "tracker" else "tracker"
        raise ConfigError(f"--init: the {stage} stage starts from a {previous} checkpoint; pass --init CKPT")
    torch.manual_seed(cfg.seed)
    runner = stages[stage].from_config(cfg, init)
    task = TASK_OF_INFERENCE[cfg.inference.task]
    dataset = build_clip_dataset(cfg.data, task, train=True, seed=cfg.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(dump_yaml(cfg))
    options = EngineOptions(out_dir=out_dir, stage=stage, device=device, checkpoint_every=checkpoint_every)

    def set_iteration(i: int) -> None:
        runner.iteration = i

    trainer = Trainer(runner.model, dataset, collate_clips, runner.loss, cfg, options,
                      iteration_hook=set_iteration)
    return trainer.fit(resume=resume)
