"""Training stages: what is trained, what is frozen, and the loss of one batch.

`segmenter` trains Mask2Former on frames (clips of T frames are flattened into the batch, so the same
stage trains on images and on video frames). Later stages (`tracker`, `refiner`, `l2g`) build on a
trained segmenter and freeze it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidseg.config import ExperimentConfig
from vidseg.data.clips import ClipBatch, FrameTarget
from vidseg.losses.criterion import SetCriterion
from vidseg.losses.targets import FrameTargets
from vidseg.models.segmenter import Segmenter, build_segmenter
from vidseg.training.engine import StepOutput

TASK_OF_INFERENCE = {"vis": "instance", "vps": "panoptic", "vss": "semantic",
                     "instance": "instance", "panoptic": "panoptic", "semantic": "semantic"}


def frame_targets(target: FrameTarget) -> FrameTargets:
    """Per-frame loss targets: the entries present in this frame (absent ones are not objects here)."""
    keep = target.present
    return FrameTargets(target.class_ids[keep], target.masks[keep], target.instance_ids[keep])


def padded_input(batch: ClipBatch, pixel_mean: torch.Tensor) -> torch.Tensor:
    """[B·T, 3, Hp, Wp] float 0-255 frames with the padding set to the pixel mean (0 once normalised)."""
    b, t = batch.frames.shape[:2]
    frames = batch.frames.flatten(0, 1).float()
    padding = batch.padding[:, None].expand(b, t, *batch.padding.shape[1:]).flatten(0, 1)[:, None]
    return torch.where(padding, pixel_mean.to(frames.device).view(1, 3, 1, 1), frames)


@dataclass
class SegmenterStage:
    """Mask2Former trained per frame with Hungarian matching and deep supervision."""

    model: Segmenter
    criterion: SetCriterion
    name: str = "segmenter"

    @classmethod
    def from_config(cls, config: ExperimentConfig) -> SegmenterStage:
        model = build_segmenter(config.model)
        criterion = SetCriterion.from_config(config.loss, config.model.num_classes, config.model.classification)
        return cls(model, criterion)

    def loss(self, model: nn.Module, batch: ClipBatch) -> StepOutput:
        """`model` is `self.model` or its DDP wrapper."""
        images = padded_input(batch, self.model.pixel_mean)
        output = model(images)
        targets = [frame_targets(t) for clip in batch.targets for t in clip]
        losses = self.criterion(output, targets)
        terms = {k: v.item() for k, v in losses.as_dict(weighted=True).items() if "_aux" not in k}
        return StepOutput(losses.total, terms)
