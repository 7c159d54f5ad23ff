"""The video-model contract: what every method on top of the segmenter implements, and the types it returns.

    video = METHODS[config.method].build(config)      # a VideoModel (`vidseg.models.methods`)
    state = video.init_state()
    for images in frames:                             # [B, 3, H, W] float 0-255: one frame of B videos
        step, state = video.step(segmenter, images, state)

A video model is handed the segmenter on every call and decides how to run it: MinVIS and DVIS++ run it
whole and track its output (`vidseg.models.minvis`, `vidseg.models.dvis`), Local2Global runs its encoder and
drives its decoder with the propagated queries (`vidseg.models.local2global`), Video Mask2Former decodes
clips (`vidseg.models.video_mask2former`). `vidseg.models.model.VideoSegmentationModel` pairs one with its
segmenter. In training, `forward_clip` runs B clips of T frames at once.

Every `VideoFrameOutput` is in *slot order*: slot i is the same object in every frame of a video, its identity
is the slot index. `run_sequence` is the one stepping loop, so stepping frame by frame, running a sequence and
running it in windows that carry the state give identical results.

Two capabilities only some models have are typed attributes, None elsewhere: `window_refiner` (DVIS++
offline: clip-level refinement of a window of streamed steps) and `clip_decoder` (Video Mask2Former:
decoding recorded pixel-decoder outputs as whole clips).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import torch
from torch import Tensor, nn

from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.outputs import LayerPrediction, SegmenterOutput
from vidseg.models.refiner import ClipPrediction
from vidseg.models.segmenter import Segmenter

StateT = TypeVar("StateT")
InT = TypeVar("InT")
OutT = TypeVar("OutT")


@dataclass
class VideoFrameOutput:
    """One frame of a video model, slots in track order.

    Attributes:
        class_logits: [B, Q, K+1] per-slot class logits of this frame ([B, Q, K] for sigmoid heads).
        mask_logits: [B, Q, h, w] per-slot mask logits at the mask-feature resolution (stride 4).
        embeddings: [B, Q, C] per-slot embedding (MinVIS: the normed segmenter query; DVIS++: the tracker's
            last-layer output, the refiner's input).
        indices: [B, Q] int64 segmenter query assigned to each slot (reorders segmenter predictions into
            track order, e.g. for guided matching).
        frame_index: position of this frame in the video (0-based, counted by the state).
        references: [B, Q, C] the tracker's references (DVIS++ only; contrastive loss).
        aux: per-layer predictions for deep supervision (training only).
    """

    class_logits: Tensor
    mask_logits: Tensor
    embeddings: Tensor
    indices: Tensor
    frame_index: int
    references: Tensor | None = None
    aux: list[LayerPrediction] = field(default_factory=list)


@dataclass
class ModelStep:
    """One streamed frame.

    Attributes:
        frame: the video model's output for this frame, slots in track order.
        segmenter: the segmenter's output for this frame (what an offline refiner window or a clip record is
            built from).
    """

    frame: VideoFrameOutput
    segmenter: SegmenterOutput


@dataclass
class ClipOutput:
    """Clip-level predictions (an offline refiner or a clip decoder), slots in track order.

    Attributes:
        class_logits: [B, Q, K+1] clip-level class logits.
        mask_logits: [B, T, Q, h, w] per-frame mask logits (on the mask features' device), None when the
            mask features were not given.
        embeddings: [B, T, Q, C] slot embeddings per frame.
        frame_indices: video frame index of each of the T frames.
        online_class_logits: [B, Q, K+1] the tracker's class logits averaged over the window, if known.
        aux: per-layer predictions (training only).
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


@dataclass
class ClipForward:
    """A training forward pass over B clips of T frames.

    Attributes:
        segmenter: T per-time-step segmenter outputs (batch B); empty when the model decodes whole clips.
        frames: T video-model outputs (batch B), slots in track order; `aux` holds per-layer predictions.
        clip: clip-level predictions over the T frames (offline refiner, clip decoder), else None.
    """

    segmenter: list[SegmenterOutput]
    frames: Sequence[VideoFrameOutput]
    clip: ClipOutput | None = None


ClipFeatures = tuple[list[Tensor], Tensor]
"""A clip's pixel-decoder outputs: (num_levels maps [B, T, C, h_l, w_l] coarsest first, mask features
[B, T, D, H/4, W/4])."""


@dataclass
class ClipWindow:
    """The clip-level predictions of frames [start, stop) of a video (batch 1), slots in track order.

    Attributes:
        class_logits: [Q, K+1] clip-level class logits.
        mask_logits: [Q, T, h, w] mask tubes at stride 4.
        queries: [1, Q, C] final normed queries (what the next window is matched to).
    """

    start: int
    stop: int
    class_logits: Tensor
    mask_logits: Tensor
    queries: Tensor


class WindowRefiner(Protocol):
    """Offline refinement (DVIS++ offline): clip-level predictions over a window of streamed frames."""

    def refine_steps(
        self,
        steps: Sequence[ModelStep],
        *,
        mask_feature_device: torch.device | str | None = None,
        oma: ObjectMaskedAttention | None = None,
    ) -> ClipOutput:
        """Refine T streamed steps of B videos; `oma` masks the refiner's cross-attention as in training."""
        ...

    def window_inputs(self, step: ModelStep) -> tuple[Tensor, Tensor]:
        """What the refiner reads of one step besides the mask features: (slot embeddings [B, Q, C],
        segmenter embeddings [B, Qf, C'])."""
        ...

    def refine_embeddings(self, slot_embeds: Tensor, frame_embeds: Tensor) -> tuple[Tensor, Tensor]:
        """The refiner without masks on [B, T, Q, C] / [B, T, Qf, C'] from `window_inputs`:
        (clip class logits [B, Q, K+1], refined embeddings [B, T, Q, C])."""
        ...

    def predict_masks(self, embeddings: Tensor, mask_features: Tensor) -> Tensor:
        """Masks [B, T, Q, h, w] of refined embeddings [B, T, Q, C] from mask features [B, T, D, h, w]."""
        ...


class ClipDecoder(Protocol):
    """Whole-clip decoding (Video Mask2Former) of recorded pixel-decoder outputs."""

    def decode_windows(
        self,
        segmenter: Segmenter,
        load: Callable[[int, int], ClipFeatures],
        num_frames: int,
        max_frames: int,
    ) -> Iterator[ClipWindow]:
        """Decode a video (batch 1) in windows of at most `max_frames` frames, slots consistent across them.

        Args:
            load: (start, stop) -> that window's pixel-decoder outputs, batch 1, on the model's device.
        """
        ...


class VideoModel(Protocol[StateT]):
    """What every method on top of the segmenter implements (see the module docstring).

    Implementations are `nn.Module`s (parameter-free ones too, so that they move and nest like the others)
    and receive the segmenter, which they do not own, on every call.
    """

    @property
    def window_refiner(self) -> WindowRefiner | None:
        """Offline refinement of windows of steps (DVIS++ offline), else None."""
        ...

    @property
    def clip_decoder(self) -> ClipDecoder | None:
        """Whole-clip decoding of recorded frames (Video Mask2Former), else None."""
        ...

    def init_state(self) -> StateT:
        """The state before the first frame of B videos."""
        ...

    def step(self, segmenter: Segmenter, images: Tensor, state: StateT) -> tuple[ModelStep, StateT]:
        """Segment and track one time step: images [B, 3, H, W] float 0-255 (one frame of each of B videos)."""
        ...

    def forward_clip(
        self,
        segmenter: Segmenter,
        pixels: Tensor,
        *,
        oma: ObjectMaskedAttention | None = None,
        generator: torch.Generator | None = None,
    ) -> ClipForward:
        """Training forward over clips: pixels [B, T, 3, H, W] normalised and padded (`Segmenter.normalize`).

        A segmenter with no trainable parameter runs without gradients. `oma` (Object Masked Attention)
        masks the cross-attentions its config names (DVIS++ only); `generator` draws training noise.
        """
        ...


def run_sequence(
    step: Callable[[InT, StateT], tuple[OutT, StateT]], inputs: Iterable[InT], state: StateT
) -> tuple[list[OutT], StateT]:
    """`step` over `inputs` in order, carrying the state: every output and the state after the last input.

    The one stepping loop of every video model (streaming, training clips, sequences in windows).
    """
    outputs = []
    for x in inputs:
        out, state = step(x, state)
        outputs.append(out)
    return outputs, state


def has_trainable(module: nn.Module) -> bool:
    """Whether any parameter of `module` trains (a frozen module runs without gradients)."""
    return any(p.requires_grad for p in module.parameters())


def split_time(seg: SegmenterOutput, num_frames: int) -> list[SegmenterOutput]:
    """A segmenter output over B*T frames (clip-major) -> T outputs over the B clips."""

    def pick(x: Tensor, t: int) -> Tensor:
        return x.unflatten(0, (-1, num_frames))[:, t]

    def pick_optional(x: Tensor | None, t: int) -> Tensor | None:
        return None if x is None else pick(x, t)

    return [
        SegmenterOutput(
            queries=pick(seg.queries, t),
            raw_queries=pick(seg.raw_queries, t),
            class_logits=pick(seg.class_logits, t),
            mask_logits=pick(seg.mask_logits, t),
            mask_features=pick_optional(seg.mask_features, t),
            reid_embeddings=pick_optional(seg.reid_embeddings, t),
        )
        for t in range(num_frames)
    ]


def segment_clip(segmenter: Segmenter, pixels: Tensor) -> list[SegmenterOutput]:
    """The segmenter on normalised clips [B, T, 3, H, W], all B*T frames in one batch (without gradients when
    it is frozen) -> T outputs over the B clips."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and has_trainable(segmenter)):
        out = segmenter.forward_normalized(pixels.flatten(0, 1))
    return split_time(out, pixels.shape[1])
