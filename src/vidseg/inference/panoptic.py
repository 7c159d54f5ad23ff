"""The Mask2Former panoptic merge, for one image (T = 1) or a whole video volume (T frames).

This is the one implementation behind image panoptic inference (`maskformer_model.py:286-342`) and
DVIS++'s `inference_video_vps` (`meta_architecture.py:869-952`): for the N candidate queries (not no-object,
score above the object threshold), every pixel of the (T, H, W) volume goes to the query with the highest
`score x prob`; a query survives when the voxels it wins *anywhere* are at least `overlap_threshold` of its
own mask volume (`prob >= 0.5`) and its segment (won and own) is not empty; stuff classes merge per class;
segment ids are 1..S in query order, 0 is void.

The volume is visited frame by frame through `frame_probs(t)` twice (counting, then drawing), so a video
needs the memory of one frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from vidseg.structures import PanopticSegment


@dataclass
class PanopticMerge:
    """Which candidates became segments.

    Attributes:
        scores: [N] candidate scores (the merge's argmax weights).
        segment_of: [N] int64 segment id of each candidate (0: dropped; stuff of one class share an id).
        segments: one entry per id 1..S, in id order.
        segment_candidate: [S] the candidate (index into N) that created each segment.
    """

    scores: Tensor
    segment_of: Tensor
    segments: list[PanopticSegment]
    segment_candidate: list[int]

    def draw(self, probs: Tensor) -> Tensor:
        """[H, W] int32 segment ids of one frame from the candidates' probabilities [N, H, W]."""
        h, w = probs.shape[-2:]
        ids = torch.zeros(h, w, dtype=torch.int32, device=probs.device)
        if probs.shape[0] == 0:
            return ids
        owner = (self.scores.to(probs).view(-1, 1, 1) * probs).argmax(0)
        for i in torch.nonzero(self.segment_of).flatten().tolist():
            ids[(owner == i) & (probs[i] >= 0.5)] = int(self.segment_of[i])
        return ids


def merge_panoptic(
    scores: Tensor,
    labels: Tensor,
    frame_probs: Callable[[int], Tensor],
    num_frames: int,
    is_thing: Sequence[bool],
    overlap_threshold: float,
) -> PanopticMerge:
    """Decide the segments of a (T, H, W) volume.

    Args:
        scores: [N] class score of each candidate query.
        labels: [N] int64 class of each candidate.
        frame_probs: t -> [N, H, W] mask probabilities of the candidates in frame t.
        num_frames: T.
        is_thing: K flags (stuff classes merge per class).
        overlap_threshold: minimum (voxels won) / (own mask volume).
    """
    n = scores.shape[0]
    won = torch.zeros(n, dtype=torch.long)
    own = torch.zeros(n, dtype=torch.long)
    kept = torch.zeros(n, dtype=torch.long)
    if n:
        for t in range(num_frames):
            probs = frame_probs(t)
            owner = (scores.to(probs).view(-1, 1, 1) * probs).argmax(0)
            mine = owner[None] == torch.arange(n, device=probs.device).view(-1, 1, 1)
            binary = probs >= 0.5
            won += mine.flatten(1).sum(1).cpu()
            own += binary.flatten(1).sum(1).cpu()
            kept += (mine & binary).flatten(1).sum(1).cpu()
    segment_of = torch.zeros(n, dtype=torch.long)
    segments: list[PanopticSegment] = []
    candidates: list[int] = []
    stuff_ids: dict[int, int] = {}
    for i in range(n):
        if won[i] == 0 or own[i] == 0 or kept[i] == 0 or won[i] / own[i] < overlap_threshold:
            continue
        label = int(labels[i])
        thing = bool(is_thing[label])
        if not thing and label in stuff_ids:
            segment_of[i] = stuff_ids[label]
            continue
        segment_of[i] = len(segments) + 1
        if not thing:
            stuff_ids[label] = len(segments) + 1
        segments.append(PanopticSegment(id=len(segments) + 1, category_id=label, is_thing=thing))
        candidates.append(i)
    return PanopticMerge(scores.float().cpu(), segment_of, segments, candidates)
