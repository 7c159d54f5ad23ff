"""Training stages: what is trained, what is frozen, and the loss of one batch.

* `segmenter`: Mask2Former on frames (clips of T frames are flattened into the batch, so the same stage
  trains on images and on video frames). MVC-1 masks frames (`ExperimentConfig.mvc`, mode "frame"). With
  `model.reid_head` the re-id head is trained by `segmenter_contrastive_loss` across the frames of each clip
  (DVIS++ starts its tracker from a CTVIS-trained segmenter; without this loss the head would get no
  gradient, which DDP rejects, and the tracker would read a random projection).
* `tracker` (DVIS++ online): the segmenter is frozen (no gradients, eval mode); the referring tracker steps
  through 5-frame clips with denoising; one first-appearance Hungarian matching per clip is used for every
  frame; CE + BCE + dice with deep supervision, plus the reference contrastive loss when
  `model.tracker.use_cl` and `model.refiner.use_cl` are both on (upstream reads the refiner's flag there,
  meta_architecture.py:588). MVC-2 tube masking and OMA on the tracker's cross-attention are options.
* `refiner` (DVIS++ offline): segmenter and tracker frozen; the temporal refiner sees longer clips (time
  reversal comes from `data.reverse_prob`); one clip-level Hungarian matching per clip; the mask losses treat
  the clip as one (T·h)×w image (one BCE and one dice per instance over the volume, T·num_points points,
  `frame_decoder_loss_reshape`, meta_architecture.py:1424-1444); the memory contrastive loss when
  `model.refiner.use_cl`; OMA masks its cross-attention.

For the first `loss.guided_matching` fraction of the iterations the video stages match on the frozen
previous stage's predictions in track order (DVIS++ "guided matching"), which gives the new module a stable
assignment to learn before its own predictions mean anything; every layer then uses that matching. After
it, each auxiliary layer is matched on its own predictions, as upstream's criterion does when no matcher
output is given (criterion.py:241-249). `stage_matchings` is that rule, for both stages.

Every stage's model is the `VideoSegmentationModel` that `vidseg.models.model.load_model` restores from the
checkpoints it writes (the segmenter stage writes the bare segmenter): the method `METHOD_OF_STAGE` names.
Every stage follows the `vidseg.training.registry.Stage` contract and is listed there. Video stages start
from the previous stage's checkpoint (`init`); a checkpoint of another stage is a `CheckpointError`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from vidseg.config import ExperimentConfig, LossConfig, to_dict
from vidseg.data.clips import ClipBatch, FrameTarget
from vidseg.errors import CheckpointError
from vidseg.io.checkpoint import Checkpoint, load_checkpoint, load_weights
from vidseg.losses.contrastive import (
    ClassMemory,
    ReidLosses,
    mean_items,
    refiner_contrastive_items,
    segmenter_contrastive_items,
    tracker_contrastive_items,
)
from vidseg.losses.criterion import SetCriterion
from vidseg.losses.matcher import Matching
from vidseg.losses.targets import ClipTargets, FrameTargets
from vidseg.models.association import reorder
from vidseg.models.methods import METHOD_OF_STAGE
from vidseg.models.model import VideoSegmentationModel, build_model
from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.outputs import LayerPrediction
from vidseg.models.refiner import ClipPrediction
from vidseg.models.segmenter import Segmenter, build_segmenter
from vidseg.models.video import ClipForward, VideoFrameOutput
from vidseg.training.checkpoint import load_weights_skipping
from vidseg.training.engine import StepOutput
from vidseg.training.mvc import MVCMasker

logger = logging.getLogger(__name__)


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
        aux_matching: per auxiliary set, N matchings for that set (overrides `matching` there), or None.
    """

    final: LayerPrediction
    aux: list[LayerPrediction]
    targets: list[FrameTargets]
    matching: list[Matching] | None = None
    aux_matching: list[list[Matching]] | None = None

    def select(self, index: list[int]) -> FramePredictions:
        idx = torch.tensor(index, dtype=torch.long, device=self.final.class_logits.device)

        def pick(p: LayerPrediction) -> LayerPrediction:
            return LayerPrediction(p.class_logits[idx], p.mask_logits[idx])

        return FramePredictions(
            pick(self.final),
            [pick(p) for p in self.aux],
            [self.targets[i] for i in index],
            None if self.matching is None else [self.matching[i] for i in index],
            None if self.aux_matching is None else [[m[i] for i in index] for m in self.aux_matching],
        )


def criterion_loss(criterion: SetCriterion, preds: FramePredictions) -> tuple[Tensor, dict[str, float]]:
    losses = criterion(preds.final, preds.targets, preds.matching, aux=preds.aux, aux_matching=preds.aux_matching)
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

    name: ClassVar[str] = "segmenter"
    requires_init: ClassVar[str | None] = None

    model: Segmenter
    criterion: SetCriterion
    config: ExperimentConfig

    @classmethod
    def from_config(cls, config: ExperimentConfig, init: str | Path | None = None) -> SegmenterStage:
        """`init`: optional segmenter checkpoint to start from (a converted COCO Mask2Former, or a segmenter
        run to fine-tune). With `optim.init_skip_mismatched` tensors whose shape differs (class head of
        another K) or that the file lacks (a re-id head the COCO model never had) keep their fresh init."""
        model = build_segmenter(config.model)
        if init is not None:
            ckpt = load_checkpoint(init, expected_stage="segmenter")
            load_init_weights(model, ckpt, config)
        return cls(model, build_criterion(config), config)

    def loss(self, model: nn.Module, batch: ClipBatch, iteration: int) -> StepOutput:
        """`model` is `self.model` or its DDP wrapper; the loss does not depend on `iteration`."""
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
        if output.reid_embeddings is not None:
            reid = self._reid_losses(output.reid_embeddings, preds, batch.frames.shape[1])
            total = add_reid_terms(total, terms, reid, self.config.loss, "")
        if second is not None:
            out_m = model(self._to_image_space(second))
            preds_m = FramePredictions(LayerPrediction(out_m.class_logits, out_m.mask_logits), out_m.aux, targets)
            masked_loss, _ = criterion_loss(self.criterion, preds_m)
            terms["mvc_masked"] = mvc.weight * masked_loss.item()
            total = total + mvc.weight * masked_loss
        return StepOutput(total, terms)

    def _reid_losses(self, embeddings: Tensor, preds: FramePredictions, t: int) -> ReidLosses:
        """Re-id loss of embeddings [B·T, Q, C] over each clip's frames, matched per frame on the final
        predictions (one extra Hungarian per frame: the criterion's own matching is split by MVC)."""
        final = preds.final
        matchings = self.criterion.matcher(final.class_logits.detach(), final.mask_logits.detach(), preds.targets)
        per_clip = embeddings.unflatten(0, (-1, t))
        items = []
        for b in range(per_clip.shape[0]):
            frames = preds.targets[b * t : (b + 1) * t]
            if any(f.instance_ids is None for f in frames):
                continue  # image data: no identities to contrast
            ids = [f.instance_ids for f in frames if f.instance_ids is not None]
            items += segmenter_contrastive_items(per_clip[b], matchings[b * t : (b + 1) * t], ids)
        return mean_items(items, embeddings)

    def _to_image_space(self, pixels: Tensor) -> Tensor:
        # The model (possibly DDP-wrapped) takes 0-255 images; this inverts its normalisation exactly.
        return pixels * self.model.pixel_std + self.model.pixel_mean


def add_reid_terms(total: Tensor, terms: dict[str, float], reid: ReidLosses, loss: LossConfig, prefix: str) -> Tensor:
    """total + contrastive_weight · reid (+ contrastive_aux_weight · aux); logs `loss_{prefix}reid` (and
    `loss_{prefix}aux_reid`). Upstream computes the aux cosine term but leaves it out of its weight_dict
    (weight 0) for the tracker and refiner; CTVIS weighs it 3 for the segmenter."""
    value = loss.contrastive_weight * reid.reid
    terms[f"loss_{prefix}reid"] = value.item()
    if loss.contrastive_aux_weight > 0:
        aux = loss.contrastive_aux_weight * reid.aux
        terms[f"loss_{prefix}aux_reid"] = aux.item()
        value = value + aux
    return total + value


def load_init_weights(module: nn.Module, ckpt: Checkpoint, config: ExperimentConfig, prefix: str = "") -> None:
    """Load `ckpt` (or its `prefix.` part) into `module`: strictly, or, with `optim.init_skip_mismatched`,
    keeping the module's own init for mis-shaped and missing tensors (listed in one log line)."""
    state = ckpt.state_dict if not prefix else _submodule_state(ckpt.state_dict, prefix)
    if not config.optim.init_skip_mismatched:
        load_weights(module, state, ckpt.path)
        return
    skipped = load_weights_skipping(module, state, ckpt.path)
    if skipped:
        logger.warning("init %s: re-initialised %d tensors (shape differs or not in the file): %s",
                       ckpt.path, len(skipped), ", ".join(skipped))


def load_reinit_class_heads(module: nn.Module, ckpt: Checkpoint, num_classes: int, prefix: str = "") -> list[str]:
    """Load `ckpt` (or its `prefix.` part) into `module` strictly, except the class-head tensors (a
    `class_head` module) whose shape differs, e.g. a checkpoint of another K: those keep the module's fresh
    init and are listed in one log line. Returns their names.

    Raises:
        CheckpointError: any other tensor missing, unexpected or of another shape.
    """
    state = ckpt.state_dict if not prefix else _submodule_state(ckpt.state_dict, prefix)
    own = module.state_dict()
    heads = sorted(k for k in own if k in state and own[k].shape != state[k].shape
                   and "class_head" in k.split(".")[:-1])
    load_weights(module, {**state, **{k: own[k] for k in heads}}, ckpt.path)
    if heads:
        logger.warning("init %s: %d classes -> %d: re-initialised %d class-head tensors: %s", ckpt.path,
                       ckpt.config.model.num_classes, num_classes, len(heads), ", ".join(heads))
    return heads


# Backbone fields that change the parameters or the computation; `pretrained`, `weights` (a path), `freeze_at`
# and `drop_path_rate` only say how it was initialised or trained, and a converted checkpoint's path differs.
_BACKBONE_ARCHITECTURE = ("name", "window_size")


def _architecture(config: ExperimentConfig, name: str) -> object:
    value = getattr(config.model, name)
    if name == "backbone":
        return {k: getattr(value, k) for k in _BACKBONE_ARCHITECTURE}
    return to_dict(value) if hasattr(value, "__dataclass_fields__") else value


def load_previous_stage(
    config: ExperimentConfig, init: str | Path, expected_stage: str | tuple[str, ...], *, same_classes: bool = True
) -> Checkpoint:
    """The checkpoint a stage starts from.

    Args:
        same_classes: also require the same `model.num_classes` (off: the caller re-initialises the class
            heads, see `load_reinit_class_heads`).

    Raises:
        CheckpointError: a checkpoint of another stage, or with another segmenter architecture (backbone:
            `_BACKBONE_ARCHITECTURE` only).
    """
    ckpt = load_checkpoint(init, expected_stage=expected_stage)
    names = ("backbone", "pixel_decoder", "decoder", "num_classes", "classification", "reid_head")
    for name in names if same_classes else tuple(n for n in names if n != "num_classes"):
        a, b = _architecture(config, name), _architecture(ckpt.config, name)
        if a != b:
            raise CheckpointError(f"{ckpt.path}: config.json: model.{name} is {b}, the experiment config has {a}")
    return ckpt


def _submodule_state(state_dict: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of `prefix.` with the prefix removed (one part of a whole-model state dict)."""
    return {k[len(prefix) + 1 :]: v for k, v in state_dict.items() if k.startswith(prefix + ".")}


def stage_model(config: ExperimentConfig, stage: str) -> VideoSegmentationModel:
    """A fresh model of the method `stage` produces (`METHOD_OF_STAGE`: what its checkpoints load as)."""
    return build_model(replace(config.model, method=METHOD_OF_STAGE[stage]))


def build_criterion(config: ExperimentConfig) -> SetCriterion:
    return SetCriterion.from_config(config.loss, config.model.num_classes, config.model.classification)


# ---------------------------------------------------------------------------------------------------------
# Matching of clips (guided matching)

MatchFn = Callable[[Tensor, Tensor, ClipTargets], Matching]
"""(class logits, mask logits, clip targets) -> matching: `HungarianMatcher.match_first_appearance` or
`match_clip`."""


def match_each_clip(match: MatchFn, pred: LayerPrediction, clips: list[ClipTargets]) -> list[Matching]:
    """One matching per clip of a prediction set laid out clip-first (class_logits [B, ...], mask_logits
    [B, ...]), on its detached predictions."""
    return [match(pred.class_logits[b].detach(), pred.mask_logits[b].detach(), c) for b, c in enumerate(clips)]


def stage_matchings(
    match: MatchFn,
    clips: list[ClipTargets],
    final: LayerPrediction,
    aux: Sequence[LayerPrediction],
    guide: LayerPrediction | None,
) -> tuple[list[Matching], list[list[Matching]] | None]:
    """The matchings of a video stage's prediction sets (see the module docstring), all laid out clip-first.

    Args:
        final, aux: the stage's last-layer and auxiliary predictions.
        guide: during guided matching, the frozen previous stage's predictions in track order; else None.

    Returns:
        (B matchings for the last layer, per auxiliary set B matchings -- or None when every set uses the
        first, i.e. while guided). Clips are matched in order, the last layer before the auxiliary sets.
    """
    if guide is not None:
        # The previous stage is frozen: its predictions carry no gradient to detach.
        return [match(guide.class_logits[b], guide.mask_logits[b], c) for b, c in enumerate(clips)], None
    return match_each_clip(match, final, clips), [match_each_clip(match, a, clips) for a in aux]


# ---------------------------------------------------------------------------------------------------------
# DVIS++ video stages


@dataclass
class VideoStage:
    """Shared machinery of the video stages on clips (see the module docstring)."""

    model: VideoSegmentationModel
    criterion: SetCriterion
    config: ExperimentConfig
    oma: ObjectMaskedAttention | None = field(default=None)

    def guided(self, iteration: int) -> bool:
        """Whether `iteration` falls in the guided-matching fraction of the training."""
        return iteration < self.config.loss.guided_matching * self.config.optim.max_iters

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


def _stack_time(preds: Sequence[LayerPrediction]) -> LayerPrediction:
    """T predictions over B clips -> one laid out clip-first, [B, T, ...]."""
    return LayerPrediction(
        torch.stack([p.class_logits for p in preds], dim=1), torch.stack([p.mask_logits for p in preds], dim=1)
    )


def _as_frames(pred: LayerPrediction) -> LayerPrediction:
    """[B, T, ...] -> the B·T frames (clip-major), [B·T, ...]."""
    return LayerPrediction(pred.class_logits.flatten(0, 1), pred.mask_logits.flatten(0, 1))


def _clip_layer(pred: ClipPrediction) -> LayerPrediction:
    """A refiner layer as a clip-first prediction: class_logits [B, Q, K+1], mask_logits [B, T, Q, h, w]."""
    if pred.mask_logits is None:
        raise ValueError("the refiner's training predictions need mask features")
    return LayerPrediction(pred.class_logits, pred.mask_logits)


@dataclass
class TrackerStage(VideoStage):
    """DVIS++ referring tracker on top of a frozen segmenter."""

    name: ClassVar[str] = "tracker"
    requires_init: ClassVar[str | None] = "segmenter"

    @classmethod
    def from_config(cls, config: ExperimentConfig, init: str | Path | None = None) -> TrackerStage:
        """`init`: the `segmenter` checkpoint to track with (required for real training)."""
        model = stage_model(config, cls.name)
        if init is not None:
            ckpt = load_previous_stage(config, init, "segmenter")
            load_init_weights(model.segmenter, ckpt, config)
        model.freeze("segmenter")
        oma = ObjectMaskedAttention(config.oma) if config.oma.enabled and config.oma.tracker else None
        return cls(model, build_criterion(config), config, oma=oma)

    def loss(self, model: nn.Module, batch: ClipBatch, iteration: int) -> StepOutput:
        """`model` is `self.model` or its DDP wrapper."""
        pixels, masked = self._inputs(batch)
        fwd: ClipForward = model(pixels, oma=self.oma)
        frames = fwd.frames
        t = len(frames)
        clips = [clip_targets(c) for c in batch.targets]
        own = _stack_time([LayerPrediction(f.class_logits, f.mask_logits) for f in frames])  # [B, T, ...]
        aux = [_stack_time([f.aux[j] for f in frames]) for j in range(len(frames[0].aux))]
        guide = None
        if self.guided(iteration):
            # The segmenter's predictions in the tracker's slot order.
            guide = _stack_time([LayerPrediction(reorder(s.class_logits, f.indices), reorder(s.mask_logits, f.indices))
                                 for s, f in zip(fwd.segmenter, frames)])
        match = self.criterion.matcher.match_first_appearance
        matchings, aux_matchings = stage_matchings(match, clips, own, aux, guide)
        preds = FramePredictions(
            final=_as_frames(own),
            aux=[_as_frames(a) for a in aux],
            targets=[clip.frame(i) for clip in clips for i in range(t)],
            matching=[m for m in matchings for _ in range(t)],
            aux_matching=None if aux_matchings is None else [[m for m in ms for _ in range(t)]
                                                             for ms in aux_matchings],
        )
        step = self._loss(preds, masked, {})
        if self.use_cl:
            refs = torch.stack([_references(f) for f in frames], dim=1)  # [B, T, Q, C]
            items = []
            for b, m in enumerate(matchings):
                items += tracker_contrastive_items(refs[b], [m] * t)
            step.loss = add_reid_terms(step.loss, step.terms, mean_items(items, refs), self.config.loss, "")
        return step

    @property
    def use_cl(self) -> bool:
        """Upstream adds the tracker's contrastive loss only when both USE_CL flags are set (the switch is
        read from MODEL.REFINER.USE_CL, meta_architecture.py:588, the weight from MODEL.TRACKER.USE_CL)."""
        m = self.config.model
        return m.tracker.use_cl and m.refiner.use_cl and self.config.loss.contrastive_weight > 0


def _references(frame: VideoFrameOutput) -> Tensor:
    if frame.references is None:
        raise ValueError("the tracker's contrastive loss needs the frames' references (a DVIS++ tracker)")
    return frame.references


@dataclass
class RefinerStage(VideoStage):
    """DVIS++ temporal refiner on top of a frozen segmenter and tracker; `memory` holds earlier clips'
    embeddings per class for the contrastive loss (per process, not saved in checkpoints, as upstream)."""

    name: ClassVar[str] = "refiner"
    requires_init: ClassVar[str | None] = "tracker"

    memory: ClassMemory = field(default_factory=ClassMemory)

    @classmethod
    def from_config(cls, config: ExperimentConfig, init: str | Path | None = None) -> RefinerStage:
        """`init`: the `tracker` checkpoint whose segmenter and tracker are refined."""
        model = stage_model(config, cls.name)
        if init is not None:
            ckpt = load_previous_stage(config, init, "tracker")
            load_weights(model.segmenter, _submodule_state(ckpt.state_dict, "segmenter"), ckpt.path)
            load_weights(model.get_submodule("video.online"), _submodule_state(ckpt.state_dict, "video"), ckpt.path)
        model.freeze("segmenter", "video.online")
        oma = ObjectMaskedAttention(config.oma) if config.oma.enabled else None
        return cls(model, build_criterion(config), config, oma=oma, memory=ClassMemory())

    def loss(self, model: nn.Module, batch: ClipBatch, iteration: int) -> StepOutput:
        """`model` is `self.model` or its DDP wrapper."""
        pixels, masked = self._inputs(batch)
        fwd: ClipForward = model(pixels, oma=self.oma)
        clip_out = fwd.clip
        if clip_out is None:
            raise ValueError("the refiner stage needs a model that refines clips (dvis_offline)")
        t = len(fwd.frames)
        clips = [clip_targets(c) for c in batch.targets]
        final = _clip_layer(ClipPrediction(clip_out.class_logits, clip_out.mask_logits))
        aux = [_clip_layer(a) for a in clip_out.aux]
        # The tracker's per-frame predictions; `match_clip` averages their classes over T.
        guide = None
        if self.guided(iteration):
            guide = _stack_time([LayerPrediction(f.class_logits, f.mask_logits) for f in fwd.frames])
        matchings, aux_matching = stage_matchings(self.criterion.matcher.match_clip, clips, final, aux, guide)
        preds = FramePredictions(
            final=volume_prediction(final.class_logits, final.mask_logits),
            aux=[volume_prediction(a.class_logits, a.mask_logits) for a in aux],
            targets=[volume_targets(clip) for clip in clips],
            matching=matchings,
            aux_matching=aux_matching,
        )
        # One "image" per clip: its masked flag is whether any of its frames was masked (tube masks: all).
        clip_masked = None if masked is None else masked.unflatten(0, (-1, t)).any(dim=1)
        criterion = volume_criterion(self.criterion, t)
        total, terms = mvc_frame_loss(criterion, preds, clip_masked, self.config.mvc.weight)
        if self.config.model.refiner.use_cl and self.config.loss.contrastive_weight > 0:
            norm = self.model.get_submodule("video.refiner.decoder_norm")
            embeds = norm(clip_out.embeddings)  # [B, T, Q, C] pred_embds
            items = []
            for b, (m, clip) in enumerate(zip(matchings, clips)):
                items += refiner_contrastive_items(embeds[b], m, clip.class_ids, self.memory)
            total = add_reid_terms(total, terms, mean_items(items, embeds), self.config.loss, "")
        return StepOutput(total, terms)


def volume_prediction(class_logits: Tensor, mask_logits: Tensor) -> LayerPrediction:
    """Clip predictions as one image per clip: class_logits [B, Q, K+1]; mask_logits [B, T, Q, h, w] ->
    [B, Q, T·h, w] (frames stacked top to bottom, `b q t h w -> b q (t h) w`, meta_architecture.py:1424-1444)."""
    b, t, q, h, w = mask_logits.shape
    return LayerPrediction(class_logits, mask_logits.permute(0, 2, 1, 3, 4).reshape(b, q, t * h, w))


def volume_targets(clip: ClipTargets) -> FrameTargets:
    """A clip's N instances as one image: masks [N, T, H, W] -> [N, T·H, W] (empty where absent)."""
    n, t, h, w = clip.masks.shape
    return FrameTargets(clip.class_ids, clip.masks.reshape(n, t * h, w), clip.instance_ids)


def volume_criterion(criterion: SetCriterion, num_frames: int) -> SetCriterion:
    """The criterion with T times the points, for a clip stacked into one image (upstream's refiner uses
    TRAIN_NUM_POINTS · SAMPLING_FRAME_NUM, meta_architecture.py:1176-1211); num_masks then counts instances
    per clip, not per frame."""
    out = copy.copy(criterion)
    if criterion.num_points is not None:
        out.num_points = criterion.num_points * num_frames
    return out
