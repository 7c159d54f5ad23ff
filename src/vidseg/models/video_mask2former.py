"""Video Mask2Former: the clip-level VIS model (Mask2Former's `mask2former_video/`, `VideoMaskFormer`).

The segmenter's backbone and pixel decoder run per frame; its decoder is a `ClipMaskedAttentionDecoder`
whose Q queries attend to the tokens of every frame of a clip at once and predict one class per query for
the clip and one mask tube per query over it. No tracker, no association inside a clip. The parameters are
exactly the image Mask2Former's (`segmenter.*`); `VideoMask2Former` itself has none, it only drives the
segmenter it is handed, and is its own `clip_decoder` (`vidseg.models.video`):

* training (`forward_clip`): B clips of T frames (2 by default, `data.num_frames`) in one decoder pass each;
* official inference (`decode_windows` with a window >= the video, `vidseg.inference.clip_record`): the whole
  video is one clip, decoded once, exactly as the official `model([video])`;
* long videos (an extension, not official): non-overlapping windows of at most `inference.clip_max_frames`
  frames, each one clip; the queries of a window are matched to the previous window's (Hungarian on the
  cosine similarity of the normed queries, as MinVIS matches frames), so slot q is the same object across
  windows; memory is bounded by the window;
* streaming (`step`, `VideoPredictor.step`): every frame is a clip of one frame and the frames are
  associated as MinVIS does (provisional results; `VideoPredictor.finish` gives the clip-level ones).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from vidseg.config import ModelConfig
from vidseg.models.association import match_queries, reorder
from vidseg.models.decoder import DecoderOutput
from vidseg.models.minvis import MinVIS, MinVISState
from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.outputs import SegmenterOutput
from vidseg.models.refiner import ClipPrediction
from vidseg.models.segmenter import Segmenter
from vidseg.models.video import ClipFeatures, ClipForward, ClipOutput, ClipWindow, ModelStep


def window_bounds(num_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """Non-overlapping windows of at most `max_frames` frames and near-equal length covering the video."""
    if num_frames <= 0:
        return []
    count = math.ceil(num_frames / max(1, max_frames))
    edges = [round(i * num_frames / count) for i in range(count + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:])]


class VideoMask2Former(nn.Module):
    """Drives a segmenter with a `ClipMaskedAttentionDecoder` (see the module docstring). No parameters."""

    window_refiner = None

    def __init__(self) -> None:
        super().__init__()
        self.association = MinVIS()

    @property
    def clip_decoder(self) -> VideoMask2Former:
        return self

    def init_state(self) -> MinVISState:
        return self.association.init_state()

    @staticmethod
    def decode(segmenter: Segmenter, features: ClipFeatures) -> DecoderOutput:
        """The clip decoder on B clips' pixel-decoder outputs; predictions hold mask tubes [B, Q, T, h, w]."""
        multi_scale, mask_features = features
        return segmenter.decoder(multi_scale, mask_features)

    @staticmethod
    def encode(segmenter: Segmenter, pixels: Tensor) -> ClipFeatures:
        """Backbone + pixel decoder per frame of normalised clips [B, T, 3, H, W]."""
        b, t = pixels.shape[:2]
        out = segmenter.encode(pixels.flatten(0, 1))
        return [f.unflatten(0, (b, t)) for f in out.multi_scale_features], out.mask_features.unflatten(0, (b, t))

    def forward_clip(
        self,
        segmenter: Segmenter,
        pixels: Tensor,
        *,
        oma: ObjectMaskedAttention | None = None,
        generator: torch.Generator | None = None,
    ) -> ClipForward:
        """Training forward over normalised clips [B, T, 3, H, W]: `ClipForward.clip` holds the clip class
        logits [B, Q, K+1], mask tubes as [B, T, Q, h, w] and every earlier prediction in `aux` (`oma` and
        `generator` unused: no tracker, no noise)."""
        t = pixels.shape[1]
        out = self.decode(segmenter, self.encode(segmenter, pixels))
        preds = [ClipPrediction(p.class_logits, p.mask_logits.transpose(1, 2)) for p in out.predictions]
        clip = ClipOutput(
            class_logits=preds[-1].class_logits,
            mask_logits=preds[-1].mask_logits,
            embeddings=out.queries[:, None].expand(-1, t, -1, -1),  # one clip-level embedding, every frame
            frame_indices=list(range(t)),
            aux=preds[:-1],
        )
        return ClipForward([], [], clip)

    def step(self, segmenter: Segmenter, images: Tensor, state: MinVISState) -> tuple[ModelStep, MinVISState]:
        """Streaming: frames [B, 3, H, W] 0-255, each decoded as a clip of one frame, associated with MinVIS.

        The returned `SegmenterOutput` carries the frame's pixel-decoder outputs (`memory`,
        `mask_features`), which is what a clip-level record keeps.
        """
        pixels = segmenter.normalize(images)
        multi_scale, mask_features = self.encode(segmenter, pixels[:, None])
        out = self.decode(segmenter, (multi_scale, mask_features))
        last = out.predictions[-1]
        seg = SegmenterOutput(
            queries=out.queries,
            raw_queries=out.raw_queries,
            class_logits=last.class_logits,
            mask_logits=last.mask_logits[:, :, 0],
            mask_features=mask_features[:, 0],
            memory=[f[:, 0] for f in multi_scale],
        )
        frame, state = self.association.track(seg, state)
        return ModelStep(frame, seg), state

    def decode_windows(
        self,
        segmenter: Segmenter,
        load: Callable[[int, int], ClipFeatures],
        num_frames: int,
        max_frames: int,
    ) -> Iterator[ClipWindow]:
        """Decode a video (batch 1) in windows of at most `max_frames` frames (one window: the official
        single pass), each window's slots matched to the previous window's queries.

        Args:
            load: (start, stop) -> that window's pixel-decoder outputs, batch 1, on the model's device.
        """
        previous: Tensor | None = None
        for start, stop in window_bounds(num_frames, max_frames):
            out = self.decode(segmenter, load(start, stop))
            last = out.predictions[-1]
            queries, class_logits, masks = out.queries, last.class_logits, last.mask_logits
            if previous is not None:
                indices = match_queries(previous, queries)
                queries, class_logits, masks = (reorder(x, indices) for x in (queries, class_logits, masks))
            previous = queries
            yield ClipWindow(start, stop, class_logits[0], masks[0], queries)


def build_video_mask2former(config: ModelConfig) -> VideoMask2Former:
    """Nothing to build: the clip decoder is the segmenter's decoder (`build_segmenter` picks it)."""
    return VideoMask2Former()
