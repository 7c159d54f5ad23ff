"""MinVIS: parameter-free online association of the segmenter's per-frame queries (a `VideoModel`).

Each frame's queries are Hungarian-matched on cosine similarity to the previous, already reordered frame
(`vidseg.models.association`), so slot i of every frame continues slot i of frame 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vidseg.config import ModelConfig
from vidseg.models.association import match_queries, reorder
from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.outputs import SegmenterOutput
from vidseg.models.segmenter import Segmenter
from vidseg.models.video import ClipForward, ModelStep, VideoFrameOutput, run_sequence, segment_clip


@dataclass
class MinVISState:
    """MinVIS stream state.

    Attributes:
        previous: [B, Q, C] previous frame's normed queries in slot order (None before the first frame).
        frame_index: number of frames already processed.
    """

    previous: Tensor | None = None
    frame_index: int = 0


class MinVIS(nn.Module):
    """Chain Hungarian matching on query cosine similarity. No parameters (an empty state dict)."""

    window_refiner = None
    clip_decoder = None

    def init_state(self) -> MinVISState:
        return MinVISState()

    def track(self, seg: SegmenterOutput, state: MinVISState) -> tuple[VideoFrameOutput, MinVISState]:
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

    def step(self, segmenter: Segmenter, images: Tensor, state: MinVISState) -> tuple[ModelStep, MinVISState]:
        seg = segmenter(images)
        frame, state = self.track(seg, state)
        return ModelStep(frame, seg), state

    def forward_clip(
        self,
        segmenter: Segmenter,
        pixels: Tensor,
        *,
        oma: ObjectMaskedAttention | None = None,
        generator: torch.Generator | None = None,
    ) -> ClipForward:
        """The segmenter on every frame, then `track` through the T frames (`oma` and `generator` unused)."""
        segs = segment_clip(segmenter, pixels)
        frames, _ = run_sequence(self.track, segs, self.init_state())
        return ClipForward(segs, frames)


def build_minvis(config: ModelConfig) -> MinVIS:
    """MinVIS needs nothing from the config: it works with either class head."""
    return MinVIS()
