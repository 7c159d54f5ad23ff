"""The `l2g` training stage: Local2Global trained online on clips (L2G §3.2, "Overall Loss", §4.2).

One batch of B clips of T frames:

1. The whole model (segmenter included, unless frozen) unrolls the T frames online (`Local2Global.
   forward_clip`): each frame's final queries are the next frame's global queries, with gradients through
   time unless `model.l2g.detach_global`.
2. **Matching** (Eq. 4 text): each ground-truth instance is matched once, by Hungarian matching at the
   frame where it first appears in the clip, against the queries not yet taken
   (`HungarianMatcher.match_first_appearance`, focal class cost); it keeps that query for the rest of
   the clip. Before its first appearance an instance is not a target (its query must predict nothing); from
   then on it is, with an empty mask in frames where it is absent (occluded / out of view), so its query
   keeps the class and learns to predict no pixels.
3. **Loss**: sigmoid focal classification + mask BCE + dice on point samples, on the final layer and every
   auxiliary layer (deep supervision), normalised by the number of targets over the supervised frames.
4. **Local queries**: the selected encoder tokens' predictions get the same losses with their own per-frame
   Hungarian matching against the instances present in that frame (Mask DINO's interm loss); their terms
   are logged with a `_local` suffix.
5. **Reduced supervision** (`model.l2g.reduced_supervision`): per clip, losses are computed only on the
   frames `supervised_frames` keeps (always the last one, at least `min_supervised_frames`); matching still
   happens at first appearance, skipped frame or not.

Image pre-training (`image_pretraining=True`, L2G §4.2): every frame of the batch is its own 1-frame clip, so
each one starts from the learnable global queries (the decoder's `query_feat`) with their learned positions,
and the loss is per-frame Hungarian. The segmenter is frozen except those learnable queries; the aligner,
the local-query selection and the box position embedding train. Pseudo-videos come from the data side
(`format: coco` gives T affine-moved copies of each image, see `vidseg.data.clips`); with video data the
frames are simply independent images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from vidseg.config import ExperimentConfig
from vidseg.data.clips import ClipBatch
from vidseg.errors import CheckpointError, ConfigError
from vidseg.losses.criterion import SetCriterion
from vidseg.losses.matcher import Matching
from vidseg.losses.targets import ClipTargets, FrameTargets
from vidseg.models.local2global import L2GFrameOutput
from vidseg.models.model import VideoSegmentationModel
from vidseg.models.outputs import LayerPrediction
from vidseg.models.video import ClipForward, VideoFrameOutput
from vidseg.training.engine import StepOutput
from vidseg.training.reduced_supervision import supervised_frames
from vidseg.training.stages import (
    FramePredictions,
    build_criterion,
    clip_targets,
    criterion_loss,
    load_init_weights,
    load_previous_stage,
    load_reinit_class_heads,
    padded_input,
    stage_model,
)

__all__ = ["L2GStage", "L2GSupervision", "appeared_targets"]


def appeared_targets(clip: ClipTargets, matching: Matching, t: int) -> tuple[FrameTargets, Matching]:
    """Targets of frame t under a clip-wide first-appearance matching.

    Keeps the instances that have appeared by frame t (present at t or earlier; masks empty where absent)
    and the matches of those instances, re-indexed into the kept list.

    Returns:
        (targets with N_t instances, matching whose target indices are in [0, N_t)).
    """
    first = clip.first_frames()
    appeared = (first >= 0) & (first <= t)
    kept = torch.nonzero(appeared).flatten()
    remap = torch.full((len(clip),), -1, dtype=torch.long, device=kept.device)
    remap[kept] = torch.arange(kept.numel(), device=kept.device)
    kept_m = kept.to(clip.masks.device)
    ids = None if clip.instance_ids is None else clip.instance_ids[kept_m]
    targets = FrameTargets(clip.class_ids[kept_m], clip.masks[kept_m, t], ids)
    target_idx = matching.target_indices.to(kept.device)
    keep = appeared[target_idx]
    device = matching.query_indices.device
    return targets, Matching(matching.query_indices[keep.to(device)], remap[target_idx[keep]].to(device))


@dataclass
class L2GSupervision:
    """What the loss of one batch is computed on.

    Attributes:
        frames: the supervised (clip, frame) pairs, clip-major.
        matchings: one first-appearance matching per clip (over the whole clip, skipped frames included).
        queries: the supervised frames' decoder predictions (final + aux) with `appeared_targets` and the
            clip matchings restricted to them.
        local: the supervised frames' local-query predictions with the instances present in each frame
            (matched per frame by the criterion), or None when the model has no local queries.
    """

    frames: list[tuple[int, int]]
    matchings: list[Matching]
    queries: FramePredictions
    local: FramePredictions | None


def _stack(preds: list[LayerPrediction]) -> LayerPrediction:
    return LayerPrediction(
        torch.stack([p.class_logits for p in preds]), torch.stack([p.mask_logits for p in preds])
    )


def _at(pred: LayerPrediction, b: int) -> LayerPrediction:
    return LayerPrediction(pred.class_logits[b], pred.mask_logits[b])


@dataclass
class L2GStage:
    """Local2Global online training (see the module docstring).

    Attributes:
        model: the full model (segmenter + `Local2Global`); what the checkpoints hold.
        criterion: sigmoid focal + BCE + dice with deep supervision, and the matcher.
        config: the experiment config.
        image_pretraining: 1-frame clips from the learnable global queries, segmenter frozen.
    """

    name: ClassVar[str] = "l2g"
    requires_init: ClassVar[str | None] = None

    model: VideoSegmentationModel
    criterion: SetCriterion
    config: ExperimentConfig
    image_pretraining: bool = False

    @classmethod
    def from_config(
        cls, config: ExperimentConfig, init: str | Path | None = None, *, image_pretraining: bool | None = None
    ) -> L2GStage:
        """Build the stage.

        Args:
            config: experiment config with `model.method: l2g` and the sigmoid class head.
            init: optional checkpoint to start from: a `segmenter` checkpoint (loaded into the segmenter;
                Local2Global's own modules start fresh) or an `l2g` one (e.g. after image pre-training).
                An image pre-training checkpoint of another `num_classes` (phase 1 on COCO, phase 2 on a
                video dataset) loads with its class heads re-initialised, listed in one log line; any other
                checkpoint of another K needs `optim.init_skip_mismatched` (which also keeps the fresh init
                of every other mis-shaped or missing tensor, see `load_init_weights`).
            image_pretraining: train on independent frames from the learnable global queries with the
                segmenter frozen (see the module docstring); default `config.model.l2g.image_pretraining`.

        Raises:
            ConfigError: wrong method or an option this stage does not support.
            CheckpointError: `init` of another stage or with a different segmenter config.
        """
        if config.model.method != "l2g":
            raise ConfigError(
                f"model.method: the l2g stage trains method 'l2g', the config has {config.model.method!r}"
            )
        if config.mvc.enabled:
            raise ConfigError("mvc.enabled: masked video consistency is not implemented for the l2g stage")
        if image_pretraining is None:
            image_pretraining = config.model.l2g.image_pretraining
        model = stage_model(config, cls.name)
        if init is not None:
            ckpt = load_previous_stage(config, init, ("segmenter", "l2g"), same_classes=False)
            target = model.segmenter if ckpt.stage == "segmenter" else model
            k_ckpt, k = ckpt.config.model.num_classes, config.model.num_classes
            if k_ckpt == k or config.optim.init_skip_mismatched:
                load_init_weights(target, ckpt, config)
            elif ckpt.stage == "l2g" and ckpt.config.model.l2g.image_pretraining:
                load_reinit_class_heads(target, ckpt, k)  # phase 1 (COCO) -> phase 2 (video)
            else:
                raise CheckpointError(
                    f"{ckpt.path}: config.json: model.num_classes is {k_ckpt}, the experiment config has {k} "
                    "(only an image pre-training checkpoint re-initialises the class heads by itself; "
                    "set optim.init_skip_mismatched=true for this one)"
                )
        if image_pretraining:
            model.freeze("segmenter")
            # The learnable substitutes for the global queries train with the aligner.
            model.segmenter.decoder.query_feat.requires_grad_(True)
        return cls(model, build_criterion(config), config, image_pretraining)

    # ------------------------------------------------------------------------------------------------------

    def loss(self, model: nn.Module, batch: ClipBatch, iteration: int) -> StepOutput:
        """`model` is `self.model` or its DDP wrapper; the loss does not depend on `iteration`."""
        segmenter = self.model.segmenter
        t = batch.frames.shape[1]
        pixels = segmenter.normalize(padded_input(batch, segmenter.pixel_mean))
        if self.image_pretraining:
            clip_len, clips = 1, [clip_targets([f]) for frames in batch.targets for f in frames]
        else:
            clip_len, clips = t, [clip_targets(frames) for frames in batch.targets]
        fwd: ClipForward = model(pixels.unflatten(0, (-1, clip_len)))
        plan = self.supervision(fwd.frames, clips)
        total, terms = criterion_loss(self.criterion, plan.queries)
        if plan.local is not None:
            local_total, local_terms = criterion_loss(self.criterion, plan.local)
            total = total + local_total
            terms.update({f"{k}_local": v for k, v in local_terms.items() if k != "loss_total"})
        terms["loss_total"] = total.item()
        terms["supervised_frames"] = float(len(plan.frames))
        return StepOutput(total, terms)

    def supervision(self, frames: Sequence[VideoFrameOutput], clips: list[ClipTargets]) -> L2GSupervision:
        """Match every clip at first appearance and collect the supervised frames' predictions and targets.

        Args:
            frames: T frame outputs over B clips (training mode: `aux` and `local` filled).
            clips: B clips of targets.
        """
        t_len = len(frames)
        l2g = self.config.model.l2g
        matcher = self.criterion.matcher
        pairs: list[tuple[int, int]] = []
        matchings: list[Matching] = []
        for b, clip in enumerate(clips):
            class_logits = torch.stack([f.class_logits[b] for f in frames]).detach()
            mask_logits = torch.stack([f.mask_logits[b] for f in frames]).detach()
            matchings.append(matcher.match_first_appearance(class_logits, mask_logits, clip))
            keep = supervised_frames(
                t_len, enabled=l2g.reduced_supervision, min_frames=l2g.min_supervised_frames
            )
            pairs.extend((b, t) for t in range(t_len) if keep[t])

        final, targets, matching = [], [], []
        num_aux = len(frames[0].aux)
        aux: list[list[LayerPrediction]] = [[] for _ in range(num_aux)]
        local, local_targets = [], []
        local_frames = [f.local for f in frames if isinstance(f, L2GFrameOutput) and f.local is not None]
        has_local = len(local_frames) == t_len
        for b, t in pairs:
            frame = frames[t]
            tg, m = appeared_targets(clips[b], matchings[b], t)
            final.append(LayerPrediction(frame.class_logits[b], frame.mask_logits[b]))
            for j in range(num_aux):
                aux[j].append(_at(frame.aux[j], b))
            targets.append(tg)
            matching.append(m)
            if has_local:
                local.append(_at(local_frames[t], b))
                local_targets.append(clips[b].frame(t, only_present=True))
        queries = FramePredictions(_stack(final), [_stack(a) for a in aux], targets, matching)
        local_preds = FramePredictions(_stack(local), [], local_targets) if has_local else None
        return L2GSupervision(pairs, matchings, queries, local_preds)

