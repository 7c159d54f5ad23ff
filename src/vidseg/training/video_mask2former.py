"""The `video_mask2former` training stage: Video Mask2Former on clips (`mask2former_video/`, `VideoSetCriterion`).

* Clips of `data.num_frames` frames (the official `INPUT.SAMPLING_FRAME_NUM`, 2) go through the whole model;
  nothing is frozen. `--init` takes a segmenter checkpoint (the official recipe starts from the COCO-instance
  Mask2Former; `optim.init_skip_mismatched` re-initialises its class head of another K) or a
  `video_mask2former` checkpoint to fine-tune.
* Every prediction set (the initial queries and each layer, deep supervision) is matched on its own
  predictions with one clip-level Hungarian matching per clip (`HungarianMatcher.match_clip`: the clip class
  and mask costs over sampled points of every frame of the tube).
* Losses as the official criterion: cross-entropy of the clip class per query (no-object weight 0.1); BCE and
  dice of each matched (instance, frame) mask on its own importance-sampled points (an instance absent from
  a frame has an empty target there), summed over the tube and divided by the number of *instances*, not
  instance-frames (`loss_masks`: `flatten(0, 1)` of the [N, T, H, W] masks, `num_masks` = instances).

Here that is the per-frame `SetCriterion` on the clip's frames with each clip's class logits and matching
repeated over its frames (the weighted mean cross-entropy is unchanged by the repetition) and the mask count
divided by T.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch import Tensor, nn

from vidseg.config import ExperimentConfig
from vidseg.data.clips import ClipBatch
from vidseg.io.checkpoint import load_checkpoint
from vidseg.losses.criterion import SetCriterion
from vidseg.models.outputs import LayerPrediction
from vidseg.models.refiner import ClipPrediction
from vidseg.models.video import ClipForward
from vidseg.training.engine import StepOutput
from vidseg.training.stages import (
    FramePredictions,
    VideoStage,
    build_criterion,
    clip_targets,
    load_init_weights,
    match_each_clip,
    mvc_frame_loss,
    stage_model,
)


def tube_frames(pred: ClipPrediction) -> LayerPrediction:
    """Clip predictions as B·T frames (clip-major): class_logits [B, Q, K+1] repeated per frame, mask tubes
    [B, T, Q, h, w] -> [B·T, Q, h, w]."""
    if pred.mask_logits is None:
        raise ValueError("tube_frames: a clip prediction without masks")
    b, t = pred.mask_logits.shape[:2]
    class_logits = pred.class_logits[:, None].expand(-1, t, -1, -1).flatten(0, 1)
    return LayerPrediction(class_logits, pred.mask_logits.flatten(0, 1))


def tube_criterion(criterion: SetCriterion, num_frames: int) -> SetCriterion:
    """The criterion whose mask count is per instance of a clip, not per instance-frame (see module doc)."""
    out = copy.copy(criterion)
    reducer: Callable[[Tensor], Tensor] = criterion.num_masks_reducer
    out.num_masks_reducer = lambda local: reducer(local) / num_frames
    return out


@dataclass
class VideoMask2FormerStage(VideoStage):
    """Video Mask2Former trained on clips (see the module docstring)."""

    name: ClassVar[str] = "video_mask2former"
    requires_init: ClassVar[str | None] = None

    @classmethod
    def from_config(cls, config: ExperimentConfig, init: str | Path | None = None) -> VideoMask2FormerStage:
        """`init`: optional `segmenter` (e.g. a converted COCO Mask2Former) or `video_mask2former` checkpoint."""
        model = stage_model(config, cls.name)
        if init is not None:
            ckpt = load_checkpoint(init, expected_stage=("segmenter", "video_mask2former"))
            prefix = "" if ckpt.stage == "segmenter" else "segmenter"
            load_init_weights(model.segmenter, ckpt, config, prefix=prefix)
        return cls(model, build_criterion(config), config)

    def loss(self, model: nn.Module, batch: ClipBatch, iteration: int) -> StepOutput:
        """`model` is `self.model` or its DDP wrapper; the loss does not depend on `iteration` (no guided
        matching: there is no previous stage to follow)."""
        pixels, masked = self._inputs(batch)
        fwd: ClipForward = model(pixels)
        if fwd.clip is None:
            raise ValueError("the video_mask2former stage needs a model that decodes clips")
        t = pixels.shape[1]
        clips = [clip_targets(c) for c in batch.targets]
        layers = [*fwd.clip.aux, ClipPrediction(fwd.clip.class_logits, fwd.clip.mask_logits)]
        matchings = []
        for pred in layers:  # every set on its own predictions, the initial queries first
            if pred.mask_logits is None:
                raise ValueError("Video Mask2Former predicts mask tubes for every prediction set")
            per_clip = match_each_clip(self.criterion.matcher.match_clip,
                                       LayerPrediction(pred.class_logits, pred.mask_logits), clips)
            matchings.append([m for m in per_clip for _ in range(t)])
        preds = FramePredictions(
            final=tube_frames(layers[-1]),
            aux=[tube_frames(p) for p in layers[:-1]],
            targets=[clip.frame(i) for clip in clips for i in range(t)],
            matching=matchings[-1],
            aux_matching=matchings[:-1],
        )
        total, terms = mvc_frame_loss(tube_criterion(self.criterion, t), preds, masked, self.config.mvc.weight)
        return StepOutput(total, terms)
