"""Identity switches (CLEAR-MOT IDSW) of mask tracks against ground-truth tracks.

Per frame, ground-truth objects and predicted tracks are matched one-to-one by mask IoU (Hungarian on IoU,
pairs with IoU >= `iou_threshold` kept; at 0.5 and above a match is unique anyway). A ground-truth object
has an identity switch at a frame when it is matched to a predicted track id other than the one it was last
matched to (frames where it is unmatched do not reset that memory), as in CLEAR-MOT: the number of times
an object is handed to another track. Matched and total object-frames are reported next to it, so a
method cannot look good by matching nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

FrameTracks = Mapping[int, np.ndarray]  # track id -> bool mask [H, W]


@dataclass
class IdSwitchCount:
    """Totals over one or more videos.

    Attributes:
        switches: identity switches.
        matched: ground-truth object-frames matched to some track (IoU >= threshold).
        objects: ground-truth object-frames.
    """

    switches: int = 0
    matched: int = 0
    objects: int = 0

    def __add__(self, other: IdSwitchCount) -> IdSwitchCount:
        return IdSwitchCount(self.switches + other.switches, self.matched + other.matched,
                             self.objects + other.objects)


def _iou(gt: list[np.ndarray], pred: list[np.ndarray]) -> np.ndarray:
    g = np.stack([m.reshape(-1) for m in gt]).astype(np.float32)
    p = np.stack([m.reshape(-1) for m in pred]).astype(np.float32)
    inter = g @ p.T
    union = g.sum(1)[:, None] + p.sum(1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def count_id_switches(
    gt_frames: Iterable[FrameTracks], pred_frames: Iterable[FrameTracks], iou_threshold: float = 0.5
) -> IdSwitchCount:
    """ID switches of one video; `gt_frames` and `pred_frames` give, frame by frame, id -> mask."""
    last: dict[int, int] = {}
    count = IdSwitchCount()
    for gt, pred in zip(gt_frames, pred_frames, strict=True):
        gt_ids = [i for i, m in gt.items() if m.any()]
        pred_ids = [i for i, m in pred.items() if m.any()]
        count.objects += len(gt_ids)
        if not gt_ids or not pred_ids:
            continue
        iou = _iou([gt[i] for i in gt_ids], [pred[i] for i in pred_ids])
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] < iou_threshold:
                continue
            g, p = gt_ids[r], pred_ids[c]
            count.matched += 1
            if g in last and last[g] != p:
                count.switches += 1
            last[g] = p
    return count
