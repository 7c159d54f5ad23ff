"""Training stages: what is trained, what is frozen, and the loss of one batch.

* `segmenter`: Mask2Former on frames (clips of T frames are flattened into the batch, so the same stage
  trains on images and on video frames). MVC-1 masks frames (`ExperimentConfig.mvc`, mode "frame").
* `tracker` (DVIS++ online): the segmenter is frozen (no gradients, eval mode); the referring tracker steps
  through 5-frame clips with denoising; one first-appearance Hungarian matching per clip is used for every
  frame and layer; CE + BCE + dice with deep supervision, plus the reference contrastive loss. MVC-2 tube
  masking and OMA on the tracker's cross-attention are options.
* `refiner` (DVIS++ offline): segmenter and tracker frozen; the temporal refiner sees longer clips (time
  reversal comes from `data.reverse_prob`); one clip-level Hungarian matching per clip; OMA masks its
  cross-attention.

For the first `loss.guided_matching` fraction of the iterations the video stages match on the frozen
previous stage's predictions in track order (DVIS++ "guided matching"), which gives the new module a stable
assignment to learn before its own predictions mean anything.

Every stage's model is the `VideoSegmentationModel` that `vidseg.models.model.load_model` restores from the
checkpoints it writes (the segmenter stage writes the bare segmenter). Video stages start from the previous
stage's checkpoint (`init`); a checkpoint of another stage is a `CheckpointError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from vidseg.config import ExperimentConfig, to_dict
from vidseg.data.clips import ClipBatch, FrameTarget
from vidseg.errors import CheckpointError
from vidseg.losses.contrastive import reference_contrastive_loss
from vidseg.losses.criterion import SetCriterion
from vidseg.losses.matcher import Matching
from vidseg.losses.targets import ClipTargets, FrameTargets
from vidseg.models.association import reorder
from vidseg.models.model import ClipForward, VideoSegmentationModel, build_model, load_weights
from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.outputs import LayerPrediction
from vidseg.models.segmenter import Segmenter, build_segmenter
from vidseg.training.checkpoint import Checkpoint, load_checkpoint
from vidseg.training.engine import StepOutput
from vidseg.training.mvc import MVCMasker

TASK_OF_INFERENCE = {"vis": "instance", "vps": "panoptic", "vss": "semantic",
                     "instance": "instance", "panoptic": "panoptic", "semantic": "semantic"}


# ---------------------------------------------------------------------------------------------------------
# Targets and inputs


def frame_targets(target: FrameTarget) -> FrameTargets:
    """Per-frame loss targets: the entries present in this frame (absent ones are not objects here)."""
    keep = target.present
    return FrameTargets(target.class_ids[keep], target.masks[keep], target.instance_ids[keep])


def clip_targets(frames: list[FrameTarget]) -> ClipTargets:
    """The instances of one clip (entries are aligned over its frames); those never present are dropped."""
    masks = torch.stack([f.masks for f in frames], dim=1)
    present = torch.stack([f.present for f in frames], dim=1)
    keep = present.any(dim=1)
    return ClipTargets(frames[0].class_ids[keep], masks[keep], present[keep], frames[0].instance_ids[keep])


def padded_input(batch: ClipBatch, pixel_mean: Tensor) -> Tensor:
    """[B·T, 3, Hp, Wp] float 0-255 frames with the padding set to the pixel mean (0 once normalised)."""
    b, t = batch.frames.shape[:2]
    frames = batch.frames.flatten(0, 1).float()
    padding = batch.padding[:, None].expand(b, t, *batch.padding.shape[1:]).flatten(0, 1)[:, None]
    return torch.where(padding, pixel_mean.to(frames.device).view(1, 3, 1, 1), frames)


def mvc_input(pixels: Tensor, masker: MVCMasker, clip_length: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """Apply MVC to normalised frames [B·T, 3, H, W] (clip-major), masks drawn on the clip layout (per frame
    for MVC-1, one per clip for MVC-2).

    Returns:
        (first-pass input [B·T, 3, H, W], masked [B·T] bool: whether each frame's unit was masked,
        the fully masked frames for the "both" variant's second pass or None).
    """
    out = masker(pixels.unflatten(0, (-1, clip_length)))
    masked = out.masked
    per_frame = masked[:, None].expand(-1, clip_length) if masked.dim() == 1 else masked
    second = None if out.masked_images is None else out.masked_images.flatten(0, 1)
    return out.images.flatten(0, 1), per_frame.flatten(), second


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ---------------------------------------------------------------------------------------------------------
# Per-frame losses over a set of frames (with MVC's clean/masked weighting)


@dataclass
class FramePredictions:
    """Predictions and targets of N frames for the criterion.

    Attributes:
        final: last-layer predictions, class_logits [N, Q, K(+1)], mask_logits [N, Q, h, w].
        aux: per-layer predictions of the same layout (deep supervision).
        targets: N frames of targets.
        matching: N matchings to use for every prediction set, or None (the criterion matches).
    """

    final: LayerPrediction
    aux: list[LayerPrediction]
    targets: list[FrameTargets]
    matching: list[Matching] | None = None

    def select(self, index: list[int]) -> FramePredictions:
        idx = torch.tensor(index, dtype=torch.long, device=self.final.class_logits.device)

        def pick(p: LayerPrediction) -> LayerPrediction:
            return LayerPrediction(p.class_logits[idx], p.mask_logits[idx])

        return FramePredictions(
            pick(self.final),
            [pick(p) for p in self.aux],
            [self.targets[i] for i in index],
            None if self.matching is None else [self.matching[i] for i in index],
        )


def criterion_loss(criterion: SetCriterion, preds: FramePredictions) -> tuple[Tensor, dict[str, float]]:
    losses = criterion(preds.final, preds.targets, preds.matching, aux=preds.aux)
    terms = {k: v.item() for k, v in losses.as_dict(weighted=True).items() if "_aux" not in k}
    return losses.total, terms


def mvc_frame_loss(
    criterion: SetCriterion, preds: FramePredictions, masked: Tensor | None, weight: float
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 4 over frames: clean frames contribute their loss, masked frames λ times theirs.

    `masked` is [N] bool (None: no MVC). With λ = 1 this is the plain loss of the mixed batch; otherwise the
    clean and the masked frames are two criterion calls, weighted by their share of the frames.
    """
    if masked is None or weight == 1.0 or bool(masked.all()) or not bool(masked.any()):
        total, terms = criterion_loss(criterion, preds)
        if masked is not None and bool(masked.all()):
            total = total * weight
        return total, terms
    flags = masked.tolist()
    clean = [i for i, m in enumerate(flags) if not m]
    hidden = [i for i, m in enumerate(flags) if m]
    clean_loss, terms = criterion_loss(criterion, preds.select(clean))
    masked_loss, _ = criterion_loss(criterion, preds.select(hidden))
    n = len(flags)
    return (len(clean) * clean_loss + weight * len(hidden) * masked_loss) / n, terms


# ---------------------------------------------------------------------------------------------------------
# Stages


@dataclass
class SegmenterStage:
    """Mask2Former trained per frame with Hungarian matching and deep supervision (+ MVC-1)."""

    model: Segmenter
    criterion: SetCriterion
    config: ExperimentConfig
    name: str = "segmenter"
    iteration: int = 0

    @classmethod
    def from_config(cls, config: ExperimentConfig, init: str | Path | None = None) -> SegmenterStage:
        """`init`: optional segmenter checkpoint to start from (e.g. COCO pre-training)."""
        model = build_segmenter(config.model)
        if init is not None:
            ckpt = load_checkpoint(init, expected_stage="segmenter")
            load_weights(model, ckpt.state_dict, ckpt.path)
        return cls(model, build_criterion(config), config)

    def loss(self, model: nn.Module, batch: ClipBatch) -> StepOutput:
        """`model` is `self.model` or its DDP wrapper."""
        mvc = self.config.mvc
        images = padded_input(batch, self.model.pixel_mean)
        targets = [frame_targets(f) for clip in batch.targets for f in clip]
        masked, second = None, None
        if mvc.enabled:
            pixels, masked, second = mvc_input(self.model.normalize(images), MVCMasker(mvc), batch.frames.shape[1])
            images = self._to_image_space(pixels)
            if mvc.variant == "both":
                masked = None
        output = model(images)
        preds = FramePredictions(LayerPrediction(output.class_logits, output.mask_logits), output.aux, targets)
        total, terms = mvc_frame_loss(self.criterion, preds, masked, mvc.weight)
        if second is not None:
            out_m = model(self._to_image_space(second))
            preds_m = FramePredictions(LayerPrediction(out_m.class_logits, out_m.mask_logits), out_m.aux, targets)
            masked_loss, _ = criterion_loss(self.criterion, preds_m)
            terms["mvc_masked"] = mvc.weight * masked_loss.item()
            total = total + mvc.weight * masked_loss
        return StepOutput(total, terms)

    def _to_image_space(self, pixels: Tensor) -> Tensor:
        # The model (possibly DDP-wrapped) takes 0-255 images; this inverts its normalisation exactly.
        return pixels * self.model.pixel_std + self.model.pixel_mean


def load_previous_stage(
    config: ExperimentConfig, init: str | Path, expected_stage: str | tuple[str, ...]
) -> Checkpoint:
    """The checkpoint a stage starts from.

    Raises:
        CheckpointError: a checkpoint of another stage, or with another segmenter architecture.
    """
    ckpt = load_checkpoint(init, expected_stage=expected_stage)
    saved = ckpt.config.model
    for name in ("backbone", "pixel_decoder", "decoder", "num_classes", "classification", "reid_head"):
        a, b = getattr(config.model, name), getattr(saved, name)
        if a != b:
            a_s = to_dict(a) if hasattr(a, "__dataclass_fields__") else a
            b_s = to_dict(b) if hasattr(b, "__dataclass_fields__") else b
            raise CheckpointError(f"{ckpt.path}: config.json: model.{name} is {b_s}, the experiment config has {a_s}")
    return ckpt


def _submodule_state(state_dict: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of `prefix.` with the prefix removed (one part of a whole-model state dict)."""
    return {k[len(prefix) + 1 :]: v for k, v in state_dict.items() if k.startswith(prefix + ".")}


def _video_model(config: ExperimentConfig, method: str) -> VideoSegmentationModel:
    return build_model(replace(config.model, method=method))


def build_criterion(config: ExperimentConfig) -> SetCriterion:
    return SetCriterion.from_config(config.loss, config.model.num_classes, config.model.classification)


@dataclass
class VideoStage:
    """Shared machinery of the tracker and refiner stages (see the module docstring)."""

    model: VideoSegmentationModel
    criterion: SetCriterion
    config: ExperimentConfig
    name: str
    iteration: int = 0
    oma: ObjectMaskedAttention | None = field(default=None)

    @property
    def guided(self) -> bool:
        return self.iteration < self.config.loss.guided_matching * self.config.optim.max_iters

    def _inputs(self, batch: ClipBatch) -> tuple[Tensor, Tensor | None]:
        """Normalised clips [B, T, 3, H, W] (MVC-masked when enabled) and per-frame masked flags [B·T]."""
        segmenter = self.model.segmenter
        t = batch.frames.shape[1]
        pixels = segmenter.normalize(padded_input(batch, segmenter.pixel_mean))
        masked = None
        mvc = self.config.mvc
        if mvc.enabled:
            if mvc.variant == "both":
                raise ValueError("mvc.variant 'both' is implemented for the segmenter stage only")
            pixels, masked, _ = mvc_input(pixels, MVCMasker(mvc), t)
        return pixels.unflatten(0, (-1, t)), masked

    def _loss(self, preds: FramePredictions, masked: Tensor | None, extra: dict[str, Tensor]) -> StepOutput:
        total, terms = mvc_frame_loss(self.criterion, preds, masked, self.config.mvc.weight)
        for name, value in extra.items():
            terms[name] = value.item()
            total = total + value
        return StepOutput(total, terms)


def _stack_frames(preds: list[LayerPrediction]) -> LayerPrediction:
    """T predictions over B clips -> one over B·T frames (clip-major)."""
    return LayerPrediction(
        torch.stack([p.class_logits for p in preds], dim=1).flatten(0, 1),
        torch.stack([p.mask_logits for p in preds], dim=1).flatten(0, 1),
    )


class TrackerStage(VideoStage):
    """DVIS++ referring tracker on top of a frozen segmenter."""

    @classmethod
    def from_config(cls, config: ExperimentConfig, init: str | Path | None = None) -> TrackerStage:
        """`init`: the `segmenter` checkpoint to track with (required for real training)."""
        model = _video_model(config, "dvis_online")
        if init is not None:
            ckpt = load_previous_stage(config, init, "segmenter")
            load_weights(model.segmenter, ckpt.state_dict, ckpt.path)
        model.freeze("segmenter")
        oma = ObjectMaskedAttention(config.oma) if config.oma.enabled and config.oma.tracker else None
        return cls(model, build_criterion(config), config, "tracker", oma=oma)

    def loss(self, model: nn.Module, batch: ClipBatch) -> StepOutput:
        pixels, masked = self._inputs(batch)
        fwd: ClipForward = model(pixels, oma=self.oma)
        t = len(fwd.frames)
        clips = [clip_targets(c) for c in batch.targets]
        matcher = self.criterion.matcher
        matchings = []
        for b, clip in enumerate(clips):
            if self.guided:
                # The segmenter's predictions in the tracker's slot order.
                cls_logits = torch.stack([reorder(s.class_logits[b : b + 1], f.indices[b : b + 1])[0]
                                          for s, f in zip(fwd.segmenter, fwd.frames)])
                masks = torch.stack([reorder(s.mask_logits[b : b + 1], f.indices[b : b + 1])[0]
                                     for s, f in zip(fwd.segmenter, fwd.frames)])
            else:
                cls_logits = torch.stack([f.class_logits[b] for f in fwd.frames]).detach()
                masks = torch.stack([f.mask_logits[b] for f in fwd.frames]).detach()
            matchings.append(matcher.match_first_appearance(cls_logits, masks, clip))
        num_aux = len(fwd.frames[0].aux)
        preds = FramePredictions(
            final=_stack_frames([LayerPrediction(f.class_logits, f.mask_logits) for f in fwd.frames]),
            aux=[_stack_frames([f.aux[j] for f in fwd.frames]) for j in range(num_aux)],
            targets=[clip.frame(i) for clip in clips for i in range(t)],
            matching=[m for m in matchings for _ in range(t)],
        )
        extra = {}
        weight = self.config.loss.contrastive_weight
        if weight > 0:
            refs = torch.stack([f.references for f in fwd.frames], dim=1)  # [B, T, Q, C]
            cl = [reference_contrastive_loss(refs[b], m.query_indices, clips[b].present[m.target_indices])
                  for b, m in enumerate(matchings)]
            extra["loss_contrastive"] = weight * torch.stack(cl).mean()
        return self._loss(preds, masked, extra)


class RefinerStage(VideoStage):
    """DVIS++ temporal refiner on top of a frozen segmenter and tracker."""

    @classmethod
    def from_config(cls, config: ExperimentConfig, init: str | Path | None = None) -> RefinerStage:
        """`init`: the `tracker` checkpoint whose segmenter and tracker are refined."""
        model = _video_model(config, "dvis_offline")
        if init is not None:
            ckpt = load_previous_stage(config, init, "tracker")
            load_weights(model.segmenter, _submodule_state(ckpt.state_dict, "segmenter"), ckpt.path)
            load_weights(model.video.online, _submodule_state(ckpt.state_dict, "video"), ckpt.path)
        model.freeze("segmenter", "video.online")
        oma = ObjectMaskedAttention(config.oma) if config.oma.enabled else None
        return cls(model, build_criterion(config), config, "refiner", oma=oma)

    def loss(self, model: nn.Module, batch: ClipBatch) -> StepOutput:
        pixels, masked = self._inputs(batch)
        fwd: ClipForward = model(pixels, oma=self.oma)
        clip_out = fwd.clip
        t = len(fwd.frames)
        clips = [clip_targets(c) for c in batch.targets]
        matcher = self.criterion.matcher
        matchings = []
        for b, clip in enumerate(clips):
            if self.guided:
                cls_logits = torch.stack([f.class_logits[b] for f in fwd.frames])  # averaged over T by match_clip
                masks = torch.stack([f.mask_logits[b] for f in fwd.frames])
            else:
                cls_logits = clip_out.class_logits[b].detach()
                masks = clip_out.mask_logits[b].detach()
            matchings.append(matcher.match_clip(cls_logits, masks, clip))

        def per_frame(class_logits: Tensor, mask_logits: Tensor) -> LayerPrediction:
            # The clip-level class is the class of the slot in every frame.
            k1 = class_logits.shape[-1]
            return LayerPrediction(
                class_logits[:, None].expand(-1, t, -1, -1).reshape(-1, class_logits.shape[1], k1),
                mask_logits.flatten(0, 1),
            )

        preds = FramePredictions(
            final=per_frame(clip_out.class_logits, clip_out.mask_logits),
            aux=[per_frame(a.class_logits, a.mask_logits) for a in clip_out.aux],
            targets=[clip.frame(i) for clip in clips for i in range(t)],
            matching=[m for m in matchings for _ in range(t)],
        )
        return self._loss(preds, masked, {})


STAGES = {"segmenter": SegmenterStage, "tracker": TrackerStage, "refiner": RefinerStage}
