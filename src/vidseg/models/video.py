"""Video models on top of the segmenter, behind one contract.

Online models (`MinVIS`, `DVISOnline`):

    state = model.init_state()
    for seg in segmenter_outputs:            # one SegmenterOutput per time step, batch = B videos
        frame, state = model.step(seg, state)

`run(sequence)` is exactly that loop, so stepping frame by frame and running a sequence (or a sequence in
windows, carrying the state) give identical results. Every `VideoFrameOutput` is in *slot order*: slot i is
the same object in every frame of a video, its identity is the slot index.

Offline model (`DVISOffline`): the online tracker is stepped as above, the frames are collected into a
`RefinerWindow`, and `refine(window)` returns clip-level classes and per-frame masks (`ClipOutput`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vidseg.config import ModelConfig
from vidseg.errors import ConfigError
from vidseg.models.association import match_queries, reorder
from vidseg.models.outputs import LayerPrediction, SegmenterOutput
from vidseg.models.refiner import ClipPrediction, TemporalRefiner
from vidseg.models.tracker import ReferringTracker, TrackerState


@dataclass
class VideoFrameOutput:
    """One frame of an online video model, slots in track order.

    Attributes:
        class_logits: [B, Q, K+1] per-slot class logits of this frame.
        mask_logits: [B, Q, h, w] per-slot mask logits at the mask-feature resolution (stride 4).
        embeddings: [B, Q, C] per-slot embedding (MinVIS: the normed segmenter query; DVIS++: the tracker's
            last-layer output, the refiner's input).
        indices: [B, Q] int64 segmenter query assigned to each slot (reorders segmenter predictions into
            track order, e.g. for guided matching).
        frame_index: position of this frame in the video (0-based, counted by the state).
        references: [B, Q, C] the tracker's references (DVIS++ only; contrastive loss).
        aux: per-layer predictions for deep supervision (DVIS++ in training only).
    """

    class_logits: Tensor
    mask_logits: Tensor
    embeddings: Tensor
    indices: Tensor
    frame_index: int
    references: Tensor | None = None
    aux: list[LayerPrediction] = field(default_factory=list)


@dataclass
class MinVISState:
    """MinVIS stream state.

    Attributes:
        previous: [B, Q, C] previous frame's normed queries in slot order (None before the first frame).
        frame_index: number of frames already processed.
    """

    previous: Tensor | None = None
    frame_index: int = 0


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


class MinVIS:
    """Parameter-free online association: chain Hungarian matching on query cosine similarity."""

    def init_state(self) -> MinVISState:
        return MinVISState()

    def step(self, seg: SegmenterOutput, state: MinVISState) -> tuple[VideoFrameOutput, MinVISState]:
        """Reorder one frame's predictions into slot order by matching to the previous reordered frame."""
        b, q, _ = seg.queries.shape
        if state.previous is None:
            indices = torch.arange(q, device=seg.queries.device).expand(b, q)
        else:
            indices = match_queries(state.previous, seg.queries)
        embeddings = reorder(seg.queries, indices)
        out = VideoFrameOutput(
            class_logits=reorder(seg.class_logits, indices),
            mask_logits=reorder(seg.mask_logits, indices),
            embeddings=embeddings,
            indices=indices,
            frame_index=state.frame_index,
        )
        return out, MinVISState(previous=embeddings, frame_index=state.frame_index + 1)

    def run(
        self, outputs: Iterable[SegmenterOutput], state: MinVISState | None = None
    ) -> tuple[list[VideoFrameOutput], MinVISState]:
        """`step` over a sequence; returns the frame outputs and the state after the last frame."""
        state = self.init_state() if state is None else state
        frames = []
        for seg in outputs:
            out, state = self.step(seg, state)
            frames.append(out)
        return frames, state


class DVISOnline(nn.Module):
    """DVIS++ online: the referring tracker over the segmenter's per-frame outputs."""

    def __init__(self, tracker: ReferringTracker):
        super().__init__()
        self.tracker = tracker

    def init_state(self) -> TrackerState:
        return self.tracker.init_state()

    def step(
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
            raise ValueError("DVISOnline.step needs SegmenterOutput.mask_features")
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

    def run(
        self,
        outputs: Iterable[SegmenterOutput],
        state: TrackerState | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[VideoFrameOutput], TrackerState]:
        """`step` over a sequence; returns the frame outputs and the state after the last frame."""
        state = self.init_state() if state is None else state
        frames = []
        for seg in outputs:
            out, state = self.step(seg, state, generator=generator)
            frames.append(out)
        return frames, state


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
        feats = None
        if all(s.mask_features is not None for s in segmenter_outputs):
            feats = torch.stack([s.mask_features.to(mask_feature_device) for s in segmenter_outputs], dim=1)
        return cls(
            instance_embeds=torch.stack([f.embeddings for f in frame_outputs], dim=1),
            frame_embeds=torch.stack([tracker_inputs(s)[0] for s in segmenter_outputs], dim=1),
            mask_features=feats,
            online_class_logits=torch.stack([f.class_logits for f in frame_outputs], dim=1),
            frame_indices=[f.frame_index for f in frame_outputs],
        )


@dataclass
class ClipOutput:
    """Clip-level predictions of an offline model, slots in track order.

    Attributes:
        class_logits: [B, Q, K+1] refiner clip-level class logits.
        mask_logits: [B, T, Q, h, w] per-frame mask logits (on the mask features' device).
        embeddings: [B, T, Q, C] refined slot embeddings.
        frame_indices: video frame index of each of the T frames.
        online_class_logits: [B, Q, K+1] the tracker's class logits averaged over the window, if known.
        aux: refiner per-layer predictions (training only).
    """

    class_logits: Tensor
    mask_logits: Tensor | None
    embeddings: Tensor
    frame_indices: list[int]
    online_class_logits: Tensor | None = None
    aux: list[ClipPrediction] = field(default_factory=list)

    def class_probs(self) -> Tensor:
        """[B, Q, K+1] video-level class probabilities (see `offline_class_probs`)."""
        return offline_class_probs(self.class_logits, self.online_class_logits)


def offline_class_probs(class_logits: Tensor, online_class_logits: Tensor | None) -> Tensor:
    """[..., Q, K+1] class probabilities of an offline model, as DVIS++ computes them (`aux_pred_cls`,
    meta_architecture.py:818-979): the refiner's softmax, its K real classes max-combined with the softmax
    of the tracker's time-averaged logits when given; the no-object column stays the refiner's."""
    probs = class_logits.float().softmax(-1)
    if online_class_logits is None:
        return probs
    online = online_class_logits.float().softmax(-1).to(probs)
    return torch.cat([torch.maximum(probs[..., :-1], online[..., :-1]), probs[..., -1:]], dim=-1)


class DVISOffline(nn.Module):
    """DVIS++ offline: the (frozen) online tracker, then the temporal refiner over windows of its outputs."""

    def __init__(self, tracker: ReferringTracker, refiner: TemporalRefiner):
        super().__init__()
        self.online = DVISOnline(tracker)
        self.refiner = refiner

    def init_state(self) -> TrackerState:
        return self.online.init_state()

    def step(self, seg: SegmenterOutput, state: TrackerState) -> tuple[VideoFrameOutput, TrackerState]:
        """The online tracker step whose outputs feed `refine` (see `RefinerWindow.from_frames`)."""
        return self.online.step(seg, state)

    def refine(self, window: RefinerWindow, attn_mask: Tensor | None = None) -> ClipOutput:
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


def build_video_model(config: ModelConfig) -> MinVIS | DVISOnline | DVISOffline:
    """The video model named by `config.method` (the segmenter is built and loaded separately)."""
    if config.classification != "softmax" and config.method in ("dvis_online", "dvis_offline"):
        raise ConfigError("model.classification: DVIS++ video models need the softmax (K+1) segmenter head")
    if config.method == "minvis":
        return MinVIS()
    if config.method == "dvis_online":
        return DVISOnline(build_tracker(config))
    if config.method == "dvis_offline":
        return DVISOffline(build_tracker(config), build_refiner(config))
    raise ConfigError(f"model.method: {config.method!r} has no video model in vidseg.models.video")
