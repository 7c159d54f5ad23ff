"""What a video leaves behind for Video Mask2Former's clip-level results, kept on disk frame by frame.

The official Video Mask2Former runs the whole video as one clip: backbone and pixel decoder per frame, then
one decoder pass whose queries attend to every frame (`VideoMaskFormer.forward`). `ClipRecord` keeps each
frame's pixel-decoder outputs (mask features and the multi-scale maps) in `SpillFile`s as the frames
arrive; `results()` then decodes the video as one clip when it has at most `max_frames` frames (the
official result) or as windows of at most that many frames whose queries are matched from window to window
(`ClipDecoder.decode_windows`, an extension), writes the slot-ordered mask tubes to disk frame by frame,
and yields the VIS results: top-k over Q x K of the softmax class probabilities (frame-weighted mean of the
windows' logits), masks = logit > 0 after upsample-crop-resize, exactly `vis_frames`.

Memory: the pixel-decoder outputs of one window (about 256 x (h/4) x (w/4) x 4 bytes per frame for the
mask features), not of the video.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from vidseg.inference.postprocess import FrameGeometry, VideoPostprocessor
from vidseg.inference.spill import SpillFile
from vidseg.models.model import VideoSegmentationModel
from vidseg.models.video import ClipDecoder, ClipFeatures, ModelStep
from vidseg.structures import FrameResult


class ClipRecord:
    """The per-frame pixel-decoder record of one video (batch 1) for a clip decoder (module docstring)."""

    def __init__(self, decoder: ClipDecoder) -> None:
        self.decoder = decoder
        self.frame_indices: list[int] = []
        self.geometry: FrameGeometry | None = None
        self._features = SpillFile()
        self._levels: list[SpillFile] = []

    def __len__(self) -> int:
        return len(self.frame_indices)

    def add(self, step: ModelStep, index: int, geometry: FrameGeometry) -> None:
        """Record one model step of the video (frame `index`): its mask features and multi-scale maps."""
        seg = step.segmenter
        assert seg.mask_features is not None and seg.memory, "a clip record needs the pixel-decoder outputs"
        if not self._levels:
            self._levels = [SpillFile() for _ in seg.memory]
        self._features.append(seg.mask_features[0])
        for spill, level in zip(self._levels, seg.memory):
            spill.append(level[0])
        self.frame_indices.append(index)
        self.geometry = geometry

    def clip(self, start: int, stop: int, device: torch.device) -> ClipFeatures:
        """Frames [start, stop) as a clip of batch 1 on `device`: ([1, T, C, h_l, w_l] per level, [1, T, D, h, w])."""

        def stack(spill: SpillFile) -> Tensor:
            return torch.stack([spill[t] for t in range(start, stop)])[None].to(device)

        return [stack(level) for level in self._levels], stack(self._features)

    def results(
        self, model: VideoSegmentationModel, post: VideoPostprocessor, max_frames: int
    ) -> Iterator[FrameResult]:
        """The clip-level results of the recorded frames, in order (nothing if no frame was recorded)."""
        if not self.frame_indices:
            return
        device = next(model.parameters()).device
        total = len(self.frame_indices)
        tubes = SpillFile()  # [Q, h, w] per frame, slot order
        try:
            mean_logits: Tensor | None = None
            for window in self.decoder.decode_windows(model.segmenter, lambda a, b: self.clip(a, b, device), total,
                                               max_frames):
                for t in range(window.stop - window.start):
                    tubes.append(window.mask_logits[:, t])
                # Frame-weighted mean; one window: the clip's logits as they are (x 1.0).
                part = window.class_logits.float().cpu() * ((window.stop - window.start) / total)
                mean_logits = part if mean_logits is None else mean_logits + part
            assert mean_logits is not None
            yield from post.clip(post.class_probs(mean_logits), tubes, self.frame_indices, self.geometry)
        finally:
            tubes.close()

    def close(self) -> None:
        for spill in (self._features, *self._levels):
            spill.close()
