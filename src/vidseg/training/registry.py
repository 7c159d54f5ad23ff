"""The training stages: the `Stage` contract `vidseg train` runs, and the one table of them.

The stage names, and which method each produces, come from `vidseg.models.methods` (`STAGE_NAMES`,
`METHOD_OF_STAGE`); `STAGES` maps each name to the class that trains it (a test checks both tables agree).
A new stage is a module with its class plus one entry in `_CLASSES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from torch import nn

from vidseg.config import ExperimentConfig
from vidseg.data.clips import ClipBatch
from vidseg.training.engine import StepOutput
from vidseg.training.l2g import L2GStage
from vidseg.training.stages import RefinerStage, SegmenterStage, TrackerStage
from vidseg.training.video_mask2former import VideoMask2FormerStage


class Stage(Protocol):
    """One training stage of an experiment: what is trained and the loss of a batch."""

    @property
    def model(self) -> nn.Module:
        """What is trained, and what its checkpoints hold."""
        ...

    def loss(self, model: nn.Module, batch: ClipBatch, iteration: int) -> StepOutput:
        """The loss of one micro-batch for update `iteration` (0-based); `model` is `self.model` or its DDP
        wrapper (call it, not `self.model`, so that DDP synchronises the gradients)."""
        ...


class StageClass(Protocol):
    """A stage's class: its name, the stage its `--init` checkpoint must come from, and its builder."""

    @property
    def name(self) -> str:
        """The stage's name (a `vidseg.models.methods.STAGE_NAMES` entry)."""
        ...

    @property
    def requires_init(self) -> str | None:
        """The stage whose checkpoint `--init` must give when not resuming, or None (optional)."""
        ...

    def from_config(self, config: ExperimentConfig, init: str | Path | None = None) -> Stage:
        """The stage for an experiment config, starting from the checkpoint `init` when given."""
        ...


_CLASSES: tuple[StageClass, ...] = (SegmenterStage, TrackerStage, RefinerStage, L2GStage, VideoMask2FormerStage)

STAGES: dict[str, StageClass] = {cls.name: cls for cls in _CLASSES}
"""Stage name -> the class that trains it."""
