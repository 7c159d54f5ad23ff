"""Per-task video post-processing: model outputs in slot order -> `FrameResult`s, as DVIS++ computes them.

Geometry (`meta_architecture.py:818-979`): stride-4 mask logits are resized bilinearly to the padded input
size and cropped to the valid region; VIS then resizes the *logits* to the frame and thresholds them at 0,
while VPS and VSS take the sigmoid after the crop and resize the *probabilities*.

* VIS: top-k (`MAX_NUM`) over all Q x K (query, class) pairs of the video-level probabilities (no-object
  dropped; a query may give several labels), score = probability, masks = logit > 0 in every frame. A
  result's track id is q * K + k + 1, so a (query, class) pair keeps its id in every frame.
* VPS: the panoptic merge over the whole (T, H, W) volume (`vidseg.inference.panoptic`); segment ids 1..S in
  query order, as the official code numbers them (or, for streamed per-frame results, ids that stay the same
  from frame to frame: thing = slot + 1, stuff = Q + 1 + class).
* VSS: per pixel argmax over classes of sum_q p_q(k) prob_q.

The mask logits of a video are read frame by frame from a `FrameStack` (a [T, Q, h, w] tensor, or a
`SpillFile` on disk), so results for a whole video need the memory of one frame.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidseg.inference.panoptic import merge_panoptic
from vidseg.models.video import ClipOutput, VideoFrameOutput
from vidseg.structures import FrameResult, encode_rle
from vidseg.types import VideoTask


class FrameStack(Protocol):
    """T frames of per-slot mask logits: `stack[t]` is [Q, h, w] (a [T, Q, h, w] tensor or a SpillFile)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Tensor: ...


@dataclass(frozen=True)
class FrameGeometry:
    """How stride-4 model masks map back onto the original frame.

    Attributes:
        input_size: (H, W) of the (padded) tensor fed to the model.
        valid_size: (h, w) top-left region of the input holding the resized frame (rest is padding).
        output_size: (H0, W0) of the original frame.
    """

    input_size: tuple[int, int]
    valid_size: tuple[int, int]
    output_size: tuple[int, int]


def _cropped(mask_logits: Tensor, geometry: FrameGeometry) -> Tensor:
    x = F.interpolate(mask_logits.float()[None], size=geometry.input_size, mode="bilinear", align_corners=False)
    return x[..., : geometry.valid_size[0], : geometry.valid_size[1]]


def upsample_masks(mask_logits: Tensor, geometry: FrameGeometry | None) -> Tensor:
    """[N, h, w] mask logits -> [N, H0, W0] float32 logits: bilinear to the input size, crop the padding,
    bilinear to the frame size (VIS). Without a geometry the logits are returned as float32."""
    if geometry is None:
        return mask_logits.float()
    if mask_logits.shape[0] == 0:
        return mask_logits.new_zeros(0, *geometry.output_size, dtype=torch.float32)
    x = _cropped(mask_logits, geometry)
    return F.interpolate(x, size=geometry.output_size, mode="bilinear", align_corners=False)[0]


def upsample_probs(mask_logits: Tensor, geometry: FrameGeometry | None) -> Tensor:
    """[N, h, w] mask logits -> [N, H0, W0] probabilities, the sigmoid taken after the crop and before the
    resize to the frame (VPS, VSS)."""
    if geometry is None:
        return mask_logits.float().sigmoid()
    if mask_logits.shape[0] == 0:
        return mask_logits.new_zeros(0, *geometry.output_size, dtype=torch.float32)
    x = _cropped(mask_logits, geometry).sigmoid()
    return F.interpolate(x, size=geometry.output_size, mode="bilinear", align_corners=False)[0]


# ---------------------------------------------------------------------------------------------------------
# The three tasks over T frames given video-level class probabilities


def vis_frames(
    class_probs: Tensor,
    mask_logits: FrameStack,
    frame_indices: Sequence[int],
    topk: int = 10,
    geometry: FrameGeometry | None = None,
) -> Iterator[FrameResult]:
    """Video instance segmentation: T frame results with the same `topk` tracks in each.

    Args:
        class_probs: [Q, K+1] video-level class probabilities per slot (last = no-object).
        mask_logits: T frames of [Q, h, w] mask logits, slot order.
        frame_indices: T frame indices.
        topk: number of (query, class) results (the official MAX_NUM).
    """
    k = class_probs.shape[1] - 1
    scores = class_probs[:, :k].float().reshape(-1)
    top_scores, flat = scores.topk(min(topk, scores.numel()))
    queries = torch.div(flat, k, rounding_mode="floor")
    labels = flat % k
    track_ids = (queries * k + labels + 1).cpu().tolist()
    for t, frame_index in enumerate(frame_indices):
        logits = mask_logits[t]
        masks = upsample_masks(logits[queries.to(logits.device)], geometry) > 0
        if masks.shape[0] == 0:
            h, w = geometry.output_size if geometry is not None else tuple(logits.shape[-2:])
            yield FrameResult(frame_index=frame_index, height=h, width=w)
            continue
        yield FrameResult.from_masks(
            frame_index, masks.cpu().numpy(), track_ids, labels.cpu().tolist(), top_scores.cpu().tolist()
        )


def vps_frames(
    class_probs: Tensor,
    mask_logits: FrameStack,
    frame_indices: Sequence[int],
    is_thing: Sequence[bool],
    object_mask_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
    geometry: FrameGeometry | None = None,
    stable_ids: bool = False,
) -> Iterator[FrameResult]:
    """Video panoptic segmentation: the panoptic merge over the whole (T, H, W) volume.

    Args:
        class_probs: [Q, K+1] video-level class probabilities per slot.
        mask_logits: T frames of [Q, h, w] mask logits, slot order.
        frame_indices: T frame indices.
        is_thing: K flags, True for thing classes.
        stable_ids: number segments by slot/class (thing = slot + 1, stuff = Q + 1 + class) instead of the
            official 1..S, so that separately merged frames keep their ids.

    Returns:
        T frame results with `panoptic` (0 = void), `semantic` (-1 = void), the `segments` present in the
        frame, and one mask/track id/class/score per segment present (things and stuff).
    """
    q, k1 = class_probs.shape
    k = k1 - 1
    if len(is_thing) != k:
        raise ValueError(f"is_thing has {len(is_thing)} entries for {k} classes")
    scores, labels = class_probs.float().max(-1)
    keep = torch.nonzero((labels != k) & (scores > object_mask_threshold)).flatten()

    def frame_probs(t: int) -> Tensor:
        logits = mask_logits[t]
        return upsample_probs(logits[keep.to(logits.device)], geometry)

    merge = merge_panoptic(scores[keep], labels[keep], frame_probs, len(frame_indices), is_thing,
                           overlap_threshold)
    renumber = {s.id: s.id for s in merge.segments}
    if stable_ids:
        renumber = {s.id: int(keep[i]) + 1 if s.is_thing else q + 1 + s.category_id
                    for s, i in zip(merge.segments, merge.segment_candidate)}
    info = {renumber[s.id]: (s, float(scores[keep[i]])) for s, i in zip(merge.segments, merge.segment_candidate)}
    lookup = np.zeros(len(merge.segments) + 1, np.int64)
    for old, new in renumber.items():
        lookup[old] = new
    for t, frame_index in enumerate(frame_indices):
        panoptic = lookup[merge.draw(frame_probs(t)).cpu().numpy()].astype(np.int32)
        h, w = panoptic.shape
        ids = [sid for sid in np.unique(panoptic).tolist() if sid != 0]
        semantic = np.full((h, w), -1, np.int32)
        for sid in ids:
            semantic[panoptic == sid] = info[sid][0].category_id
        yield FrameResult(
            frame_index=frame_index,
            height=h,
            width=w,
            masks=[encode_rle(panoptic == sid) for sid in ids],
            track_ids=np.asarray(ids, np.int64),
            class_ids=np.asarray([info[s][0].category_id for s in ids], np.int64),
            scores=np.asarray([info[s][1] for s in ids], np.float32),
            semantic=semantic,
            panoptic=panoptic,
            segments=[replace(info[s][0], id=s) for s in ids],
        )


def vss_frames(
    class_probs: Tensor,
    mask_logits: FrameStack,
    frame_indices: Sequence[int],
    geometry: FrameGeometry | None = None,
    query_chunk: int = 32,
) -> Iterator[FrameResult]:
    """Video semantic segmentation: argmax_k sum_q p_q(k) prob_q per pixel and frame.

    Args:
        class_probs: [Q, K+1] class probabilities per slot (no-object column ignored).
        mask_logits: T frames of [Q, h, w].
        query_chunk: queries upsampled at a time (bounds memory at full resolution).
    """
    q, k1 = class_probs.shape
    probs = class_probs[:, : k1 - 1].float()
    for t, frame_index in enumerate(frame_indices):
        logits = mask_logits[t]
        score = None
        for start in range(0, q, query_chunk):
            m = upsample_probs(logits[start : start + query_chunk], geometry)
            part = torch.einsum("qk,qhw->khw", probs[start : start + query_chunk].to(m.device), m)
            score = part if score is None else score + part
        assert score is not None
        semantic = score.argmax(0).to(torch.int32).cpu().numpy()
        yield FrameResult(frame_index=frame_index, height=semantic.shape[0], width=semantic.shape[1],
                          semantic=semantic)


# ---------------------------------------------------------------------------------------------------------
# Online and offline drivers


@dataclass
class OnlineClassState:
    """Running per-slot class logits of one video (online mode averages them over all frames seen).

    Attributes:
        logit_sum: [Q, K+1] sum of the class logits so far (None before the first frame).
        count: frames seen.
    """

    logit_sum: Tensor | None = None
    count: int = 0


class VideoPostprocessor:
    """Turns video-model outputs into `FrameResult`s for one task.

    Args:
        task: "vis", "vps" or "vss".
        is_thing: K thing flags (required for "vps").
        topk: VIS results per video (the official MAX_NUM: YouTube-VIS 10, OVIS / VIPSeg 20).
        object_mask_threshold, overlap_threshold: VPS merge thresholds (0.8, 0.8).
        classification: the model's class head: "softmax" (K+1 logits, last = no-object) or "sigmoid"
            (K focal logits, Local2Global): class probabilities are then the sigmoid of the time-averaged
            logits, with a zero no-object column so every task reads [Q, K+1] probabilities alike.
    """

    def __init__(
        self,
        task: VideoTask,
        is_thing: Sequence[bool] | None = None,
        topk: int = 10,
        object_mask_threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        classification: str = "softmax",
    ):
        if classification not in ("softmax", "sigmoid"):
            raise ValueError(f"unknown classification {classification!r} (expected softmax or sigmoid)")
        self.classification = classification
        if task not in ("vis", "vps", "vss"):
            raise ValueError(f"unknown video task {task!r} (expected vis, vps or vss)")
        if task == "vps" and is_thing is None:
            raise ValueError("VPS post-processing needs the thing/stuff flag of every class (is_thing)")
        self.task = task
        self.is_thing = None if is_thing is None else [bool(x) for x in is_thing]
        self.topk = topk
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold

    def clip(
        self,
        class_probs: Tensor,
        mask_logits: FrameStack,
        frame_indices: Sequence[int],
        geometry: FrameGeometry | None = None,
        stable_ids: bool = False,
    ) -> Iterator[FrameResult]:
        """class_probs [Q, K+1] video-level; T frames of mask logits [Q, h, w] -> T frame results, lazily.

        `stable_ids` (VPS): segment ids by slot/class rather than the official 1..S (see `vps_frames`).
        """
        if self.task == "vis":
            return vis_frames(class_probs, mask_logits, frame_indices, self.topk, geometry)
        if self.task == "vps":
            assert self.is_thing is not None
            return vps_frames(class_probs, mask_logits, frame_indices, self.is_thing, self.object_mask_threshold,
                              self.overlap_threshold, geometry, stable_ids)
        return vss_frames(class_probs, mask_logits, frame_indices, geometry)

    def offline(
        self, clip: ClipOutput, geometry: FrameGeometry | None = None, batch_index: int = 0
    ) -> list[FrameResult]:
        """Results of a refined clip (refiner class probabilities max-combined with the tracker's)."""
        if clip.mask_logits is None:
            raise ValueError("offline post-processing needs ClipOutput.mask_logits")
        probs = clip.class_probs()[batch_index]
        return list(self.clip(probs, clip.mask_logits[batch_index], clip.frame_indices, geometry))

    def init_state(self) -> OnlineClassState:
        return OnlineClassState()

    def class_probs(self, logits: Tensor) -> Tensor:
        """[Q, K+1] class probabilities from time-averaged logits [Q, K+1] (softmax) or [Q, K] (sigmoid)."""
        if self.classification == "softmax":
            return logits.float().softmax(-1)
        probs = logits.float().sigmoid()
        return torch.cat([probs, probs.new_zeros(probs.shape[0], 1)], dim=-1)

    def online(
        self,
        frame: VideoFrameOutput,
        state: OnlineClassState,
        geometry: FrameGeometry | None = None,
        batch_index: int = 0,
    ) -> tuple[FrameResult, OnlineClassState]:
        """Provisional result of one streamed frame: classes = softmax of each slot's logits averaged up to
        this frame (the official result averages over the whole video: see `VideoPredictor.finish`)."""
        logits = frame.class_logits[batch_index].detach().float().cpu()
        total = logits if state.logit_sum is None else state.logit_sum + logits
        state = replace(state, logit_sum=total, count=state.count + 1)
        probs = self.class_probs(total / state.count)
        frames = frame.mask_logits[batch_index][None].detach()
        result = next(iter(self.clip(probs, frames, [frame.frame_index], geometry, stable_ids=True)))
        return result, state
