"""DVIS++ video models: the referring tracker online (`DVISOnline`), and the tracker followed by the temporal
refiner over windows of its outputs (`DVISOffline`). Both are `VideoModel`s.

Online: the segmenter runs on each frame and the tracker follows its queries (`vidseg.models.tracker`).
Offline: the online tracker is stepped as above, the frames are collected into a `RefinerWindow`, and the
refiner returns clip-level classes and per-frame masks (`ClipOutput`); `DVISOffline` is its own
`window_refiner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vidseg.config import ModelConfig
from vidseg.errors import ConfigError
from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.outputs import SegmenterOutput
from vidseg.models.refiner import TemporalRefiner
from vidseg.models.segmenter import Segmenter
from vidseg.models.tracker import ReferringTracker, TrackerState
from vidseg.models.video import (
    ClipForward,
    ClipOutput,
    ModelStep,
    VideoFrameOutput,
    has_trainable,
    run_sequence,
    segment_clip,
)


def tracker_inputs(seg: SegmenterOutput) -> tuple[Tensor, Tensor]:
    """The tracker's per-frame embeddings from a segmenter output.

    With the re-id head (DVIS++), raw = concat[raw_queries, reid] and normed = concat[queries, reid], so the
    width is 2C; without it they are the raw and normed queries (width C).

    Returns:
        (raw [B, Q, C'], normed [B, Q, C']).
    """
    if seg.reid_embeddings is None:
        return seg.raw_queries, seg.queries
    return (
        torch.cat([seg.raw_queries, seg.reid_embeddings], dim=-1),
        torch.cat([seg.queries, seg.reid_embeddings], dim=-1),
    )


class DVISOnline(nn.Module):
    """DVIS++ online: the referring tracker over the segmenter's per-frame outputs."""

    window_refiner = None
    clip_decoder = None

    def __init__(self, tracker: ReferringTracker):
        super().__init__()
        self.tracker = tracker

    def init_state(self) -> TrackerState:
        return self.tracker.init_state()

    def track(
        self,
        seg: SegmenterOutput,
        state: TrackerState,
        attn_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[VideoFrameOutput, TrackerState]:
        """Track one frame.

        Args:
            seg: segmenter output of this time step (needs `mask_features`).
            state: from `init_state()` or the previous step.
            attn_mask: optional additive mask [B, Q or 1, Q] on the tracker's cross-attention keys (OMA).
            generator: CPU generator for denoising noise (training only).
        """
        if seg.mask_features is None:
            raise ValueError("DVISOnline.track needs SegmenterOutput.mask_features")
        raw, normed = tracker_inputs(seg)
        frame_index = state.frame_index
        out, state = self.tracker.forward_frame(raw, normed, seg.mask_features, state, attn_mask, generator)
        return (
            VideoFrameOutput(
                class_logits=out.class_logits,
                mask_logits=out.mask_logits,
                embeddings=out.embeddings,
                indices=out.indices,
                frame_index=frame_index,
                references=out.references,
                aux=out.aux,
            ),
            state,
        )

    def step(self, segmenter: Segmenter, images: Tensor, state: TrackerState) -> tuple[ModelStep, TrackerState]:
        seg = segmenter(images)
        frame, state = self.track(seg, state)
        return ModelStep(frame, seg), state

    def track_clip(
        self,
        segs: Sequence[SegmenterOutput],
        *,
        training: bool,
        oma: ObjectMaskedAttention | None = None,
        generator: torch.Generator | None = None,
    ) -> list[VideoFrameOutput]:
        """`track` through T time steps from a fresh state (without gradients when the tracker is frozen).

        `training` is the enclosing model's mode, which decides whether OMA drops keys (a frozen tracker is in
        eval mode while the refiner above it trains). OMA masks the tracker's keys when its config says so.
        """

        def one(seg: SegmenterOutput, state: TrackerState) -> tuple[VideoFrameOutput, TrackerState]:
            mask = None
            if oma is not None and oma.config.tracker:
                q = seg.class_logits.shape[1]
                mask = oma(seg.class_logits, q, training=training, generator=generator).additive
            return self.track(seg, state, attn_mask=mask, generator=generator)

        with torch.set_grad_enabled(torch.is_grad_enabled() and has_trainable(self)):
            frames, _ = run_sequence(one, segs, self.init_state())
        return frames

    def forward_clip(
        self,
        segmenter: Segmenter,
        pixels: Tensor,
        *,
        oma: ObjectMaskedAttention | None = None,
        generator: torch.Generator | None = None,
    ) -> ClipForward:
        segs = segment_clip(segmenter, pixels)
        return ClipForward(segs, self.track_clip(segs, training=self.training, oma=oma, generator=generator))


@dataclass
class RefinerWindow:
    """A window of frames for the offline refiner.

    Attributes:
        instance_embeds: [B, T, Q, C] tracker slot embeddings, track order.
        frame_embeds: [B, T, Qf, C] segmenter raw embeddings (with re-id), segmenter order.
        mask_features: [B, T, D, h, w] segmenter mask features; may live on the CPU (read in chunks).
        online_class_logits: [B, T, Q, K+1] the tracker's per-frame class logits, track order.
        frame_indices: video frame index of each of the T frames.
    """

    instance_embeds: Tensor
    frame_embeds: Tensor
    mask_features: Tensor | None
    online_class_logits: Tensor | None
    frame_indices: list[int]

    @classmethod
    def from_frames(
        cls,
        segmenter_outputs: Sequence[SegmenterOutput],
        frame_outputs: Sequence[VideoFrameOutput],
        mask_feature_device: torch.device | str | None = None,
    ) -> RefinerWindow:
        """Stack T time steps. `mask_feature_device` (e.g. "cpu") is where the mask features are kept."""
        if len(segmenter_outputs) != len(frame_outputs) or not frame_outputs:
            raise ValueError("RefinerWindow.from_frames: need as many (>= 1) segmenter as tracker outputs")
        features = [s.mask_features for s in segmenter_outputs]
        feats = None
        if all(f is not None for f in features):
            feats = torch.stack([f.to(mask_feature_device) for f in features if f is not None], dim=1)
        return cls(
            instance_embeds=torch.stack([f.embeddings for f in frame_outputs], dim=1),
            frame_embeds=torch.stack([tracker_inputs(s)[0] for s in segmenter_outputs], dim=1),
            mask_features=feats,
            online_class_logits=torch.stack([f.class_logits for f in frame_outputs], dim=1),
            frame_indices=[f.frame_index for f in frame_outputs],
        )


class DVISOffline(nn.Module):
    """DVIS++ offline: the (frozen) online tracker, then the temporal refiner over windows of its outputs."""

    clip_decoder = None

    def __init__(self, tracker: ReferringTracker, refiner: TemporalRefiner):
        super().__init__()
        self.online = DVISOnline(tracker)
        self.refiner = refiner

    @property
    def window_refiner(self) -> DVISOffline:
        return self

    def init_state(self) -> TrackerState:
        return self.online.init_state()

    def step(self, segmenter: Segmenter, images: Tensor, state: TrackerState) -> tuple[ModelStep, TrackerState]:
        """The online tracker step whose outputs feed `refine_steps`."""
        return self.online.step(segmenter, images, state)

    def forward_clip(
        self,
        segmenter: Segmenter,
        pixels: Tensor,
        *,
        oma: ObjectMaskedAttention | None = None,
        generator: torch.Generator | None = None,
    ) -> ClipForward:
        """The segmenter and the tracker (without gradients when frozen) through the T frames, then the
        refiner over the clip; `oma` masks the refiner's cross-attention and, when its config says so, the
        tracker's."""
        segs = segment_clip(segmenter, pixels)
        frames = self.online.track_clip(segs, training=self.training, oma=oma, generator=generator)
        return ClipForward(segs, frames, self._refine(segs, frames, None, oma, generator))

    # --- window refinement (`WindowRefiner`) ----------------------------------------------------------------

    def refine_steps(
        self,
        steps: Sequence[ModelStep],
        *,
        mask_feature_device: torch.device | str | None = None,
        oma: ObjectMaskedAttention | None = None,
    ) -> ClipOutput:
        """Refine a window of streamed steps. In eval mode `oma` drops keys only when its config asks for
        `masked_inference` (the MVC paper's Table 6 variant)."""
        return self._refine([s.segmenter for s in steps], [s.frame for s in steps], mask_feature_device, oma)

    def window_inputs(self, step: ModelStep) -> tuple[Tensor, Tensor]:
        return step.frame.embeddings, tracker_inputs(step.segmenter)[0]

    def refine_embeddings(self, slot_embeds: Tensor, frame_embeds: Tensor) -> tuple[Tensor, Tensor]:
        out = self.refiner(slot_embeds, frame_embeds, None)
        return out.class_logits, out.embeddings

    def predict_masks(self, embeddings: Tensor, mask_features: Tensor) -> Tensor:
        return self.refiner.predict_masks(embeddings, mask_features)

    def refine_window(self, window: RefinerWindow, attn_mask: Tensor | None = None) -> ClipOutput:
        """Refine a window; `attn_mask` is the additive OMA mask [B, T, Q or 1, Qf] on the cross-attention."""
        out = self.refiner(window.instance_embeds, window.frame_embeds, window.mask_features, attn_mask)
        online = None if window.online_class_logits is None else window.online_class_logits.mean(dim=1)
        return ClipOutput(
            class_logits=out.class_logits,
            mask_logits=out.mask_logits,
            embeddings=out.embeddings,
            frame_indices=list(window.frame_indices),
            online_class_logits=online,
            aux=out.aux,
        )

    def _refine(
        self,
        segs: Sequence[SegmenterOutput],
        frames: Sequence[VideoFrameOutput],
        mask_feature_device: torch.device | str | None,
        oma: ObjectMaskedAttention | None,
        generator: torch.Generator | None = None,
    ) -> ClipOutput:
        """The refiner over T steps, with OMA's mask on its cross-attention when `oma` asks for it."""
        window = RefinerWindow.from_frames(segs, frames, mask_feature_device)
        attn_mask = None
        if oma is not None and oma.config.refiner:
            keys = torch.stack([s.class_logits for s in segs], dim=1)  # [B, T, Qf, K+1]
            q = frames[0].embeddings.shape[1]
            attn_mask = oma(keys.flatten(0, 1), q, training=self.training, generator=generator).additive
            attn_mask = attn_mask.unflatten(0, keys.shape[:2])
        return self.refine_window(window, attn_mask)


def tracker_width(config: ModelConfig) -> int:
    """Width of the tracker/refiner: the decoder width, doubled by the DVIS++ re-id branch."""
    return config.decoder.hidden_dim * (2 if config.reid_head else 1)


def build_tracker(config: ModelConfig) -> ReferringTracker:
    t = config.tracker
    return ReferringTracker(
        hidden_dim=tracker_width(config),
        num_classes=config.num_classes,
        mask_dim=config.pixel_decoder.mask_dim,
        num_layers=t.num_layers,
        num_heads=t.num_heads,
        ffn_dim=t.ffn_dim,
        dropout=t.dropout,
        noise_mode=t.noise_mode,
        noise_ratio=t.noise_ratio,
    )


def build_refiner(config: ModelConfig) -> TemporalRefiner:
    r = config.refiner
    return TemporalRefiner(
        hidden_dim=tracker_width(config),
        num_classes=config.num_classes,
        mask_dim=config.pixel_decoder.mask_dim,
        num_layers=r.num_layers,
        num_heads=r.num_heads,
        ffn_dim=r.ffn_dim,
        dropout=r.dropout,
        mask_window=r.mask_window,
    )


def _check_softmax(config: ModelConfig) -> None:
    if config.classification != "softmax":
        raise ConfigError("model.classification: DVIS++ video models need the softmax (K+1) segmenter head")


def build_dvis_online(config: ModelConfig) -> DVISOnline:
    _check_softmax(config)
    return DVISOnline(build_tracker(config))


def build_dvis_offline(config: ModelConfig) -> DVISOffline:
    _check_softmax(config)
    return DVISOffline(build_tracker(config), build_refiner(config))
