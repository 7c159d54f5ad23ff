"""What a video leaves behind for its official results, kept on disk frame by frame.

The official DVIS++ / MinVIS results are decided once the video has ended: online models average each slot's
class logits over *all* frames and take the top-k once (`post_processing`, `meta_architecture.py:758-772`);
the offline model refines the whole video in one pass (`run_window_inference`). `VideoRecord` keeps, per
frame, what those decisions need — online: the slot-ordered mask logits; offline: the refiner's inputs
(tracker slot embeddings, segmenter queries, mask features) — in `SpillFile`s, and the class logits summed
in memory. `results()` then yields the official frame results in order, reading one frame at a time.

Offline videos longer than `max_frames` are refined in overlapping windows of `max_frames` frames (each
frame's result comes from the window where it has the most context; class probabilities are the
frame-weighted mean over windows): an approximation of the one-pass official result, documented as such.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from vidseg.inference.postprocess import FrameGeometry, VideoPostprocessor
from vidseg.inference.spill import SpillFile
from vidseg.malloc import release_free_memory
from vidseg.models.model import VideoSegmentationModel
from vidseg.models.video import ModelStep, WindowRefiner, offline_class_probs
from vidseg.structures import FrameResult


@dataclass
class _RefinedMasks:
    """Lazy [Q, h, w] refiner mask logits of the frames of one refined span."""

    refiner: WindowRefiner
    embeddings: Tensor  # [1, T, Q, C] refiner output of the span
    features: SpillFile
    start: int  # video frame position of embeddings[:, 0]
    device: torch.device

    def __len__(self) -> int:
        return self.embeddings.shape[1]

    def __getitem__(self, t: int) -> Tensor:
        feats = self.features[self.start + t].to(self.device)[None, None]
        return self.refiner.predict_masks(self.embeddings[:, t : t + 1], feats)[0, 0]


class VideoRecord:
    """The per-frame record of one video (batch 1) for its official whole-video results.

    Args:
        refiner: offline (DVIS++): keep the refiner's inputs instead of the per-frame masks, and refine the
            video with it at the end; None: online.
    """

    def __init__(self, refiner: WindowRefiner | None):
        self.refiner = refiner
        offline = refiner is not None
        self.frame_indices: list[int] = []
        self.geometry: FrameGeometry | None = None
        self._logit_sum: Tensor | None = None
        self._masks = None if offline else SpillFile()
        self._instance = SpillFile() if offline else None
        self._queries = SpillFile() if offline else None
        self._features = SpillFile() if offline else None

    def __len__(self) -> int:
        return len(self.frame_indices)

    def add(self, step: ModelStep, index: int, geometry: FrameGeometry) -> None:
        """Record one model step of the video (frame `index`)."""
        frame = step.frame
        logits = frame.class_logits[0].detach().float().cpu()
        self._logit_sum = logits if self._logit_sum is None else self._logit_sum + logits
        self.frame_indices.append(index)
        self.geometry = geometry
        if self._masks is not None:
            self._masks.append(frame.mask_logits[0])
            return
        assert self._instance is not None and self._queries is not None and self._features is not None
        assert self.refiner is not None and step.segmenter.mask_features is not None, \
            "offline refinement needs the mask features"
        slots, queries = self.refiner.window_inputs(step)
        self._instance.append(slots[0])
        self._queries.append(queries[0])
        self._features.append(step.segmenter.mask_features[0])

    def results(
        self,
        model: VideoSegmentationModel,
        post: VideoPostprocessor,
        max_frames: int,
    ) -> Iterator[FrameResult]:
        """The official results of the recorded frames, in order (nothing if no frame was recorded)."""
        if not self.frame_indices:
            return
        assert self._logit_sum is not None
        mean_logits = self._logit_sum / len(self.frame_indices)
        if self.refiner is None:
            assert self._masks is not None
            yield from post.clip(post.class_probs(mean_logits), self._masks, self.frame_indices, self.geometry)
            return
        yield from self._offline_results(self.refiner, model, post, max_frames, mean_logits)

    def _offline_results(
        self,
        refiner: WindowRefiner,
        model: VideoSegmentationModel,
        post: VideoPostprocessor,
        max_frames: int,
        mean_logits: Tensor,
    ) -> Iterator[FrameResult]:
        assert self._features is not None
        device = next(model.parameters()).device
        spans = refine_spans(len(self.frame_indices), max_frames)
        # Class probabilities: the frame-weighted mean over the spans (one span: exactly the official ones).
        # With several spans each is refined twice (once for the probabilities, once while its frames are
        # emitted) so that at most two spans' refiner outputs are held at a time.
        first = [self._refine(refiner, start, stop, device) for start, stop, _, _ in spans[:1]]
        probs = torch.zeros(())
        for i, (start, stop, emit_start, emit_stop) in enumerate(spans):
            class_logits = first[0][0] if i == 0 else self._refine(refiner, start, stop, device)[0]
            probs = probs + offline_class_probs(class_logits, mean_logits) * (emit_stop - emit_start)
        probs = probs / len(self.frame_indices)
        for i, (start, stop, emit_start, emit_stop) in enumerate(spans):
            embeddings = first.pop()[1] if i == 0 else self._refine(refiner, start, stop, device)[1]
            masks = _RefinedMasks(refiner, embeddings[:, emit_start - start : emit_stop - start], self._features,
                                  emit_start, device)
            yield from post.clip(probs, masks, self.frame_indices[emit_start:emit_stop], self.geometry)

    def _refine(self, refiner: WindowRefiner, start: int, stop: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Refiner over frames [start, stop): (class logits [Q, K+1], embeddings [1, T, Q, C])."""
        assert self._instance is not None and self._queries is not None
        class_logits, embeddings = refiner.refine_embeddings(
            _gather(self._instance, start, stop).to(device), _gather(self._queries, start, stop).to(device)
        )
        release_free_memory()  # the span's activations are freed; keep their pages from staying resident
        return class_logits[0].float().cpu(), embeddings

    def close(self) -> None:
        for spill in (self._masks, self._instance, self._queries, self._features):
            if spill is not None:
                spill.close()


def _gather(spill: SpillFile, start: int, stop: int) -> Tensor:
    """Frames [start, stop) of a record, [1, T, ...], filled in place (a stack of T read tensors would hold the
    span twice)."""
    first = spill[start]
    out = first.new_empty((1, stop - start, *first.shape))
    out[0, 0] = first
    for t in range(start + 1, stop):
        out[0, t - start] = spill[t]
    return out


def refine_spans(num_frames: int, max_frames: int) -> list[tuple[int, int, int, int]]:
    """Refiner windows over a video: (start, stop, emit_start, emit_stop) per window.

    One window when the video fits `max_frames`; otherwise windows of `max_frames` frames that overlap by a
    third, each emitting its middle frames (the first and last emit to the video's ends).
    """
    if num_frames <= max_frames:
        return [(0, num_frames, 0, num_frames)]
    context = max_frames // 6
    emit = max_frames - 2 * context
    spans = []
    emit_start = 0
    while emit_start < num_frames:
        emit_stop = min(num_frames, emit_start + emit + (context if emit_start == 0 else 0))
        start = max(0, min(emit_start - context, num_frames - max_frames))
        stop = min(num_frames, start + max_frames)
        spans.append((start, stop, emit_start, emit_stop))
        emit_start = emit_stop
    return spans
