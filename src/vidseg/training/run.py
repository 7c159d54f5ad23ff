"""`vidseg train`: config → stage → data → engine."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vidseg.config import apply_overrides, dump_yaml, load_preset_or_file
from vidseg.data.build import build_clip_dataset
from vidseg.data.classes import dataset_classes
from vidseg.data.clips import collate_clips
from vidseg.errors import ConfigError
from vidseg.training.engine import EngineOptions, Trainer, TrainSummary
from vidseg.training.registry import STAGES
from vidseg.types import FRAME_TASK


def train(config: str, stage: str, out_dir: str | Path, *, overrides: list[str] | tuple[str, ...] = (),
          resume: bool = False, device: str | None = None, checkpoint_every: int = 500,
          init: str | Path | None = None) -> TrainSummary:
    """Train `stage` of the experiment `config` (preset name or YAML path) into `out_dir`.

    `init` is the previous stage's checkpoint (required by the stages that name one, `requires_init`).
    """
    cfg = apply_overrides(load_preset_or_file(config), list(overrides))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    stage_class = STAGES.get(stage)
    if stage_class is None:
        raise ConfigError(f"--stage: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    previous = stage_class.requires_init
    if previous is not None and init is None and not resume:
        raise ConfigError(f"--init: the {stage} stage starts from a {previous} checkpoint; pass --init CKPT")
    torch.manual_seed(cfg.seed)
    runner = stage_class.from_config(cfg, init)
    task = FRAME_TASK[cfg.inference.task]
    dataset = build_clip_dataset(cfg.data, task, train=True, seed=cfg.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(dump_yaml(cfg))
    options = EngineOptions(out_dir=out_dir, stage=stage, device=device, checkpoint_every=checkpoint_every,
                            classes=dataset_classes(cfg.data, cfg.model.num_classes))
    trainer = Trainer(runner.model, dataset, collate_clips, runner.loss, cfg, options)
    return trainer.fit(resume=resume)
