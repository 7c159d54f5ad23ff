"""Segmentation and Tracking Quality (STQ), number for number as deeplab2's numpy `STQuality` (2022).

Labels are `y = (semantic << 16) + instance`; the semantic ignore label 255 is mapped to index
`num_classes` of a (C + 1) x (C + 1) confusion matrix.

* AQ: GT tubes are thing pixels with instance != 0 (instance 0 of a thing class is *crowd*); predicted
  tubes are thing-class prediction pixels not on GT crowd, **including pixels on GT void and GT stuff**
  (they count as FPA). Per sequence `sum_g 1/|g| sum_{p: p & g} TPA^2 / (TPA + FPA + FNA)`, iterated in
  the official dict order (first appearance, ascending within a frame). `AQ = sum over sequences /
  number of GT tubes of all sequences` (tube-weighted).
* SQ (the official output calls it IoU): mean class IoU of the dataset-level confusion matrix with GT-ignore
  rows zeroed, over classes with a non-zero union. The ignore *column* is kept: prediction-void pixels on
  labelled GT make the ignore class count with IoU 0 (the official behaviour).
* `STQ = sqrt(AQ * SQ)`; per sequence `sqrt(AQ_seq * IoU_seq)`.

VIPSeg (`eval_stq_vspw.py`): instance numbers are the order of first appearance of the segment ids when
scanning `segments_info` frame by frame (stuff included), so if the first segment listed in a video is a
thing, that whole track has instance 0 and is crowd. `VipsegInstanceNumbering` reproduces this incrementally.

Each frame is reduced to its (y_true, y_pred, count) table; a sequence keeps its tube dicts and one small
confusion matrix, and leaves only scalars when finished.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LABEL_BIT_SHIFT = 16
STQ_OFFSET = 2**24
EPSILON = 1e-15


class VipsegInstanceNumbering:
    """Segment id -> instance number by first appearance in `segments_info`, frame by frame."""

    def __init__(self) -> None:
        self.index: dict[int, int] = {}

    def update(self, segments_info: Iterable[Mapping[str, Any]]) -> None:
        for el in segments_info:
            sid = int(el["id"])
            if sid not in self.index:
                self.index[sid] = len(self.index)

    def labels(self, ids: np.ndarray, segments_info: Iterable[Mapping[str, Any]], ignore: int = 255) -> np.ndarray:
        """Map segment ids [P] to `y = (category << 16) + instance`; unlisted ids (VOID) -> (255 << 16) + 255.

        A segment listed twice in one frame takes its last entry, as the official pixel loop does.
        """
        lut: dict[int, int] = {}
        for el in segments_info:
            sid = int(el["id"])
            lut[sid] = (int(el["category_id"]) << LABEL_BIT_SHIFT) + self.index[sid]
        void = (ignore << LABEL_BIT_SHIFT) + ignore
        return np.array([lut.get(i, void) for i in ids.tolist()], np.int64)


@dataclass
class StqSequenceStats:
    """What a finished sequence leaves: AQ numerator, tube count, IoU and its confusion matrix."""

    outer_sum: float
    num_tubes: int
    iou: float
    confusion: np.ndarray  # [C + 1, C + 1] int64, ignore rows zeroed
    length: int
    num_pred_tubes: int


class StqSequence:
    """Accumulates one sequence from per-frame (y_true, y_pred, count) tables."""

    def __init__(self, num_classes: int, things: Iterable[int], ignore_label: int = 255):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.things = np.array(sorted(set(things)), np.int64)
        self.size = num_classes + 1 if ignore_label >= num_classes else num_classes
        self.confusion = np.zeros((self.size, self.size), np.int64)
        self.preds: dict[int, int] = {}
        self.gts: dict[int, int] = {}
        self.inters: dict[int, int] = {}
        self.length = 0

    def _semantic(self, y: np.ndarray) -> np.ndarray:
        sem = y >> LABEL_BIT_SHIFT
        if self.ignore_label > self.num_classes:
            sem = np.where(sem != self.ignore_label, sem, self.num_classes)
        return sem

    def add_frame(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Full label maps [H, W] of one frame."""
        keys = y_true.astype(np.int64).ravel() * STQ_OFFSET + y_pred.astype(np.int64).ravel()
        uniq, counts = np.unique(keys, return_counts=True)
        self.add_pairs(uniq // STQ_OFFSET, uniq % STQ_OFFSET, counts)

    def add_pairs(self, y_true: np.ndarray, y_pred: np.ndarray, counts: np.ndarray) -> None:
        """One frame as a table: distinct (y_true, y_pred) pixel pairs [P] and their counts [P]."""
        y_true, y_pred, counts = y_true.astype(np.int64), y_pred.astype(np.int64), counts.astype(np.int64)
        sem_t, sem_p = self._semantic(y_true), self._semantic(y_pred)
        np.add.at(self.confusion, (sem_t, sem_p), counts)
        self.length += 1
        thing_t = np.isin(sem_t, self.things)
        thing_p = np.isin(sem_p, self.things)
        crowd = thing_t & ((y_true & ((1 << LABEL_BIT_SHIFT) - 1)) == 0)
        label_mask = thing_t & ~crowd
        pred_mask = thing_p & ~crowd
        _update(self.preds, y_pred[pred_mask], counts[pred_mask])
        _update(self.gts, y_true[label_mask], counts[label_mask])
        both = label_mask & pred_mask
        _update(self.inters, y_true[both] * STQ_OFFSET + y_pred[both], counts[both])

    def finish(self) -> StqSequenceStats:
        rank = {p: i for i, p in enumerate(self.preds)}
        per_gt: dict[int, list[tuple[int, int, int]]] = {}
        for key, tpa in self.inters.items():
            g, p = divmod(key, STQ_OFFSET)
            per_gt.setdefault(g, []).append((rank[p], p, tpa))
        outer = 0.0
        for g, gt_size in self.gts.items():
            inner = 0.0
            for _, p, tpa in sorted(per_gt.get(g, [])):  # the official loop runs over predictions in order
                fpa = self.preds[p] - tpa
                fna = gt_size - tpa
                inner += tpa * (tpa / (tpa + fpa + fna))
            outer += 1.0 / gt_size * inner
        cm = self.confusion.copy()
        keep = np.zeros(self.size, bool)
        keep[: self.num_classes] = True
        if self.ignore_label < self.num_classes:
            keep[self.ignore_label] = False
        cm[~keep, :] = 0
        return StqSequenceStats(outer, len(self.gts), _mean_iou(cm), cm, self.length, len(self.preds))


def _update(stat: dict[int, int], ids: np.ndarray, counts: np.ndarray) -> None:
    """deeplab2 `_update_dict_stats` on a pair table: ids sorted ascending, new ids appended in that order."""
    if ids.size == 0:
        return
    uniq, inv = np.unique(ids, return_inverse=True)
    sums = np.bincount(inv, weights=counts).astype(np.int64)
    for i, c in zip(uniq.tolist(), sums.tolist()):
        stat[i] = stat.get(i, 0) + c


def _mean_iou(cm: np.ndarray) -> float:
    inter = cm.diagonal()
    unions = inter + (cm.sum(axis=0) - inter) + (cm.sum(axis=1) - inter)
    n = np.count_nonzero(unions)
    ious = inter.astype(np.double) / np.maximum(unions, EPSILON).astype(np.double)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(ious) / n)


@dataclass
class StqMetrics:
    """STQ, AQ and SQ (the official "IoU") on the 0-1 scale, plus per-sequence values."""

    STQ: float
    AQ: float
    SQ: float
    STQ_per_seq: list[float] = field(default_factory=list)
    AQ_per_seq: list[float] = field(default_factory=list)
    IoU_per_seq: list[float] = field(default_factory=list)
    sequence_names: list[str] = field(default_factory=list)
    length_per_seq: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "STQ": num(self.STQ),
            "AQ": num(self.AQ),
            "SQ": num(self.SQ),
            "per_sequence": {
                n: {"STQ": num(s), "AQ": num(a), "IoU": num(i), "length": ln}
                for n, s, a, i, ln in zip(
                    self.sequence_names, self.STQ_per_seq, self.AQ_per_seq, self.IoU_per_seq, self.length_per_seq
                )
            },
        }


class StqEvaluator:
    """Streaming STQ: one `StqSequence` per video, finished and added in order, then `summarize`."""

    def __init__(self, num_classes: int, things: Iterable[int], ignore_label: int = 255):
        self.num_classes = num_classes
        self.things = sorted(set(things))
        self.ignore_label = ignore_label
        self.size = num_classes + 1 if ignore_label >= num_classes else num_classes
        self.total_confusion = np.zeros((self.size, self.size), np.int64)
        self.outer_sums: list[float] = []
        self.num_tubes: list[int] = []
        self.ious: list[float] = []
        self.names: list[str] = []
        self.lengths: list[int] = []

    def sequence(self) -> StqSequence:
        return StqSequence(self.num_classes, self.things, self.ignore_label)

    def add_sequence(self, stats: StqSequenceStats, name: str = "") -> None:
        self.total_confusion += stats.confusion
        self.outer_sums.append(stats.outer_sum)
        self.num_tubes.append(stats.num_tubes)
        self.ious.append(stats.iou)
        self.names.append(name or str(len(self.names)))
        self.lengths.append(stats.length)

    def summarize(self) -> StqMetrics:
        aq = np.sum(self.outer_sums) / np.maximum(np.sum(self.num_tubes), EPSILON)
        aq_seq = np.array(self.outer_sums, np.float64) / np.maximum(np.array(self.num_tubes), EPSILON)
        iou = _mean_iou(self.total_confusion)
        stq = np.sqrt(aq * iou)
        stq_seq = np.sqrt(aq_seq * np.array(self.ious, np.float64))
        return StqMetrics(
            float(stq),
            float(aq),
            float(iou),
            stq_seq.tolist(),
            aq_seq.tolist(),
            list(self.ious),
            list(self.names),
            list(self.lengths),
        )


def stq_from_label_maps(
    sequences: Iterable[Sequence[tuple[np.ndarray, np.ndarray]]],
    num_classes: int,
    things: Iterable[int],
    ignore_label: int = 255,
) -> StqMetrics:
    """Generic deeplab2 use: per sequence, frames of (y_true, y_pred) label maps `(sem << 16) + inst`."""
    ev = StqEvaluator(num_classes, things, ignore_label)
    for frames in sequences:
        seq = ev.sequence()
        for y_true, y_pred in frames:
            seq.add_frame(y_true, y_pred)
        ev.add_sequence(seq.finish())
    return ev.summarize()
