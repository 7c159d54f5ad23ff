"""Per-task video post-processing: model outputs in slot order -> `FrameResult`s.

* VIS: class probabilities (softmax of time-averaged logits) without no-object, top-k over all Q x K
  (query, class) pairs (one query can give several labels), masks = logit > 0 in every frame, no score
  threshold. A result's track id is q * K + k + 1, so a (query, class) pair keeps its id in every frame.
* VPS: the Mask2Former panoptic merge over the video volume: keep queries that are not no-object with score
  > `object_mask_threshold`; each pixel goes to the argmax of score x sigmoid(mask); a query is dropped when
  the volume it wins (inside its own mask >= 0.5) is less than `overlap_threshold` of its mask volume; stuff
  segments merge per class. Ids are stable over time: thing id = slot + 1, stuff id = Q + 1 + class.
* VSS: per pixel argmax over classes of sum_q softmax(class)[:K] x sigmoid(mask).

Offline mode runs one of these over a refined clip (`ClipOutput`); online mode over a single frame, with
the class logits of every slot averaged over all frames seen so far (`OnlineClassState`).
Masks are upsampled to the input size, cropped to the valid (unpadded) region, then resized to the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidseg.models.video import ClipOutput, VideoFrameOutput
from vidseg.structures import FrameResult, PanopticSegment, encode_rle

Task = Literal["vis", "vps", "vss"]


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


def upsample_masks(mask_logits: Tensor, geometry: FrameGeometry | None) -> Tensor:
    """[N, h, w] mask logits -> [N, H0, W0] float32: bilinear to the input size, crop the padding, bilinear
    to the frame size. Without a geometry the logits are returned as float32."""
    x = mask_logits.float()
    if geometry is None or x.shape[0] == 0:
        if geometry is not None:
            return x.new_zeros(0, *geometry.output_size)
        return x
    x = F.interpolate(x[None], size=geometry.input_size, mode="bilinear", align_corners=False)
    x = x[..., : geometry.valid_size[0], : geometry.valid_size[1]]
    return F.interpolate(x, size=geometry.output_size, mode="bilinear", align_corners=False)[0]


# ---------------------------------------------------------------------------------------------------------
# The three tasks over a clip (T frames) given video-level class probabilities


def vis_frames(
    class_probs: Tensor,
    mask_logits: Tensor,
    frame_indices: Sequence[int],
    topk: int = 10,
    geometry: FrameGeometry | None = None,
) -> list[FrameResult]:
    """Video instance segmentation of one clip.

    Args:
        class_probs: [Q, K+1] video-level class probabilities per slot (last = no-object).
        mask_logits: [T, Q, h, w] per-frame mask logits, slot order.
        frame_indices: T frame indices.
        topk: number of (query, class) results.

    Returns:
        T frame results with the same `topk` tracks in each (masks may be empty in some frames).
    """
    q, k1 = class_probs.shape
    k = k1 - 1
    scores = class_probs[:, :k].float().reshape(-1)
    top_scores, flat = scores.topk(min(topk, scores.numel()))
    queries = torch.div(flat, k, rounding_mode="floor")
    labels = flat % k
    track_ids = (queries * k + labels + 1).cpu().numpy()
    results = []
    for t, frame_index in enumerate(frame_indices):
        masks = upsample_masks(mask_logits[t, queries.to(mask_logits.device)], geometry) > 0
        results.append(
            _frame_from_masks(frame_index, masks, track_ids, labels, top_scores, geometry, mask_logits)
        )
    return results


def vps_frames(
    class_probs: Tensor,
    mask_logits: Tensor,
    frame_indices: Sequence[int],
    is_thing: Sequence[bool],
    object_mask_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
    geometry: FrameGeometry | None = None,
) -> list[FrameResult]:
    """Video panoptic segmentation of one clip: the panoptic merge over the whole (T, H, W) volume.

    Args:
        class_probs: [Q, K+1] video-level class probabilities per slot.
        mask_logits: [T, Q, h, w] per-frame mask logits, slot order.
        frame_indices: T frame indices.
        is_thing: K flags, True for thing classes.

    Returns:
        T frame results with `panoptic` (0 = void), `semantic` (-1 = void), `segments` present in the frame,
        and one mask/track id/class/score per segment present (things and stuff).
    """
    q, k1 = class_probs.shape
    k = k1 - 1
    if len(is_thing) != k:
        raise ValueError(f"is_thing has {len(is_thing)} entries for {k} classes")
    scores, labels = class_probs.float().max(-1)
    keep = torch.nonzero((labels != k) & (scores > object_mask_threshold)).flatten()
    keep_scores = scores[keep]

    # Pass 1 over the frames: who wins each pixel, and per kept query the volume it wins vs. its mask volume.
    winners: list[Tensor] = []
    inside: list[Tensor] = []
    won = torch.zeros(len(keep), dtype=torch.long)
    area = torch.zeros(len(keep), dtype=torch.long)
    for t in range(len(frame_indices)):
        probs = upsample_masks(mask_logits[t, keep.to(mask_logits.device)], geometry).sigmoid().cpu()
        binary = probs >= 0.5
        if len(keep):
            winner = (keep_scores.cpu()[:, None, None] * probs).argmax(0)
            mine = (winner[None] == torch.arange(len(keep))[:, None, None]) & binary
            won += mine.flatten(1).sum(1)
            area += binary.flatten(1).sum(1)
        else:
            winner = torch.zeros(probs.shape[1:], dtype=torch.long)
        winners.append(winner)
        inside.append(binary)

    # Which kept queries survive the overlap test, and the id each gets (stable over time).
    segment_ids = torch.zeros(len(keep), dtype=torch.long)
    for i in range(len(keep)):
        if won[i] == 0 or area[i] == 0 or won[i] < overlap_threshold * area[i]:
            continue
        label = int(labels[keep[i]])
        segment_ids[i] = int(keep[i]) + 1 if is_thing[label] else q + 1 + label

    results = []
    for t, frame_index in enumerate(frame_indices):
        winner, binary = winners[t], inside[t]
        h, w = winner.shape
        panoptic = torch.zeros(h, w, dtype=torch.int32)
        semantic = torch.full((h, w), -1, dtype=torch.int32)
        seg_score: dict[int, float] = {}
        seg_class: dict[int, int] = {}
        for i in range(len(keep)):
            sid = int(segment_ids[i])
            if sid == 0:
                continue
            pixels = (winner == i) & binary[i]
            if not pixels.any():
                continue
            label = int(labels[keep[i]])
            panoptic[pixels] = sid
            semantic[pixels] = label
            # A merged stuff segment scores as its most confident member.
            seg_score[sid] = max(seg_score.get(sid, 0.0), float(keep_scores[i]))
            seg_class[sid] = label
        ids = sorted(seg_score)
        pan = panoptic.numpy()
        results.append(
            FrameResult(
                frame_index=frame_index,
                height=h,
                width=w,
                masks=[encode_rle(pan == sid) for sid in ids],
                track_ids=np.asarray(ids, np.int64),
                class_ids=np.asarray([seg_class[s] for s in ids], np.int64),
                scores=np.asarray([seg_score[s] for s in ids], np.float32),
                semantic=semantic.numpy(),
                panoptic=pan,
                segments=[PanopticSegment(s, seg_class[s], bool(is_thing[seg_class[s]])) for s in ids],
            )
        )
    return results


def vss_frames(
    class_probs: Tensor,
    mask_logits: Tensor,
    frame_indices: Sequence[int],
    geometry: FrameGeometry | None = None,
    query_chunk: int = 32,
) -> list[FrameResult]:
    """Video semantic segmentation of one clip: argmax_k sum_q p_q(k) sigmoid(m_q) per pixel and frame.

    Args:
        class_probs: [Q, K+1] class probabilities per slot (no-object column ignored).
        mask_logits: [T, Q, h, w].
        query_chunk: queries upsampled at a time (bounds memory at full resolution).
    """
    q, k1 = class_probs.shape
    probs = class_probs[:, : k1 - 1].float()
    results = []
    for t, frame_index in enumerate(frame_indices):
        score = None
        for start in range(0, q, query_chunk):
            m = upsample_masks(mask_logits[t, start : start + query_chunk], geometry).sigmoid()
            part = torch.einsum("qk,qhw->khw", probs[start : start + query_chunk].to(m.device), m)
            score = part if score is None else score + part
        semantic = score.argmax(0).to(torch.int32).cpu().numpy()
        results.append(
            FrameResult(
                frame_index=frame_index, height=semantic.shape[0], width=semantic.shape[1], semantic=semantic
            )
        )
    return results


def _frame_from_masks(
    frame_index: int,
    masks: Tensor,
    track_ids: np.ndarray,
    labels: Tensor,
    scores: Tensor,
    geometry: FrameGeometry | None,
    mask_logits: Tensor,
) -> FrameResult:
    if masks.shape[0] == 0:
        h, w = geometry.output_size if geometry is not None else tuple(mask_logits.shape[-2:])
        return FrameResult(frame_index=frame_index, height=h, width=w)
    return FrameResult.from_masks(
        frame_index, masks.cpu().numpy(), track_ids.tolist(), labels.cpu().tolist(), scores.cpu().tolist()
    )


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
        topk: VIS results per video (YouTube-VIS: 10, OVIS: 20).
        object_mask_threshold, overlap_threshold: VPS merge thresholds (0.8, 0.8).
        classification: the model's class head: "softmax" (K+1 logits, last = no-object) or "sigmoid"
            (K focal logits, Local2Global): class probabilities are then the sigmoid of the time-averaged
            logits, with a zero no-object column so every task reads [Q, K+1] probabilities alike.
    """

    def __init__(
        self,
        task: Task,
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
        mask_logits: Tensor,
        frame_indices: Sequence[int],
        geometry: FrameGeometry | None = None,
    ) -> list[FrameResult]:
        """class_probs [Q, K+1] video-level; mask_logits [T, Q, h, w] -> T frame results."""
        if self.task == "vis":
            return vis_frames(class_probs, mask_logits, frame_indices, self.topk, geometry)
        if self.task == "vps":
            return vps_frames(
                class_probs,
                mask_logits,
                frame_indices,
                self.is_thing,
                self.object_mask_threshold,
                self.overlap_threshold,
                geometry,
            )
        return vss_frames(class_probs, mask_logits, frame_indices, geometry)

    def offline(
        self, clip: ClipOutput, geometry: FrameGeometry | None = None, batch_index: int = 0
    ) -> list[FrameResult]:
        """Results of a refined clip (refiner class probabilities max-combined with the tracker's)."""
        if clip.mask_logits is None:
            raise ValueError("offline post-processing needs ClipOutput.mask_logits")
        probs = clip.class_probs()[batch_index]
        return self.clip(probs, clip.mask_logits[batch_index], clip.frame_indices, geometry)

    def init_state(self) -> OnlineClassState:
        return OnlineClassState()

    def class_probs(self, logits: Tensor) -> Tensor:
        """[Q, K+1] class probabilities from time-averaged logits [Q, K+1] (softmax) or [Q, K] (sigmoid)."""
        if self.classification == "softmax":
            return logits.softmax(-1)
        probs = logits.sigmoid()
        return torch.cat([probs, probs.new_zeros(probs.shape[0], 1)], dim=-1)

    def online(
        self,
        frame: VideoFrameOutput,
        state: OnlineClassState,
        geometry: FrameGeometry | None = None,
        batch_index: int = 0,
    ) -> tuple[FrameResult, OnlineClassState]:
        """Result of one frame; classes = softmax of each slot's logits averaged up to this frame."""
        logits = frame.class_logits[batch_index].detach().float().cpu()
        total = logits if state.logit_sum is None else state.logit_sum + logits
        state = replace(state, logit_sum=total, count=state.count + 1)
        probs = self.class_probs(total / state.count)
        result = self.clip(
            probs, frame.mask_logits[batch_index][None].detach(), [frame.frame_index], geometry
        )
        return result[0], state
