"""Image semantic segmentation mIoU (ADE20K / Cityscapes), as detectron2's `SemSegEvaluator` (Mask2Former).

One confusion matrix over the whole dataset; pixels whose GT is the ignore label (255) are left out. Per
class c: IoU_c = TP_c / (GT_c + Pred_c - TP_c), defined for the classes present in the GT (GT_c > 0);
mIoU is their mean, fwIoU their mean weighted by GT_c, mACC the mean of TP_c / GT_c, pACC = sum TP / sum GT.
A prediction of the ignore label (no class) counts against the GT class only.

Files: `--gt` and `--pred` are folders of single-channel label PNGs with the same relative paths (class
indices 0..K-1; ADE20K's released GT has 0 = "other" and 1..150: pass it with `reduce_zero_label`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.errors import DataFormatError
from vidseg.evaluation._files import check_same_size, default_workers, ordered_map
from vidseg.io.imageio import read_label_png

IGNORE = 255


class ConfusionMatrix:
    """[L, L] int64 pixel counts `m[pred, gt]`, grown to the largest label seen (the ignore label included)."""

    def __init__(self) -> None:
        self.matrix = np.zeros((0, 0), np.int64)

    def add(self, gt: np.ndarray, pred: np.ndarray, ignore: int = IGNORE) -> None:
        """gt, pred: [H, W] non-negative integer labels; GT pixels equal to `ignore` are left out."""
        keep = gt != ignore
        g, p = gt[keep].astype(np.int64), pred[keep].astype(np.int64)
        if g.size == 0:
            return
        size = int(max(g.max(), p.max())) + 1
        counts = np.bincount(p * size + g, minlength=size * size).reshape(size, size)
        self.merge(counts)

    def merge(self, counts: np.ndarray) -> None:
        n = max(len(self.matrix), len(counts))
        grown = np.zeros((n, n), np.int64)
        grown[: len(self.matrix), : len(self.matrix)] += self.matrix
        grown[: len(counts), : len(counts)] += counts
        self.matrix = grown


@dataclass
class ImageMiouMetrics:
    """mIoU, fwIoU, mACC, pACC (0-1) and the IoU of every class present in the GT."""

    mIoU: float
    fwIoU: float
    mACC: float
    pACC: float
    per_class_iou: dict[int, float] = field(default_factory=dict)
    num_images: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"mIoU": self.mIoU, "fwIoU": self.fwIoU, "mACC": self.mACC, "pACC": self.pACC,
                "per_class_iou": {str(k): v for k, v in self.per_class_iou.items()}, "num_images": self.num_images}


def miou_from_confusion(matrix: np.ndarray, ignore: int = IGNORE, num_images: int = 0) -> ImageMiouMetrics:
    """The metrics of a `ConfusionMatrix.matrix` [L, L] (`m[pred, gt]`); row/column `ignore` is no class."""
    m = matrix.astype(np.float64)
    classes = [c for c in range(len(m)) if c != ignore]
    pos_gt = m.sum(axis=0)  # every prediction, the ignore label (no class) included
    rows = m[:, classes] if classes else np.zeros((len(m), 0))
    pos_pred = rows.sum(axis=1)  # predictions on GT-labelled pixels
    tp = np.diagonal(m)
    iou: dict[int, float] = {}
    acc: dict[int, float] = {}
    for c in classes:
        if pos_gt[c] > 0:
            acc[c] = float(tp[c] / pos_gt[c])
            iou[c] = float(tp[c] / (pos_gt[c] + pos_pred[c] - tp[c]))
    total = float(sum(pos_gt[c] for c in classes))
    if not iou:
        return ImageMiouMetrics(math.nan, math.nan, math.nan, math.nan, {}, num_images)
    return ImageMiouMetrics(
        mIoU=sum(iou.values()) / len(iou),
        fwIoU=sum(iou[c] * pos_gt[c] / total for c in iou),
        mACC=sum(acc.values()) / len(acc),
        pACC=float(sum(tp[c] for c in iou) / total),
        per_class_iou=iou,
        num_images=num_images,
    )


def _image_task(task: tuple) -> np.ndarray:
    gt_path, pred_path, reduce_zero_label = task
    gt = read_label_png(gt_path).astype(np.int64)
    if reduce_zero_label:  # ADE20K: 0 ("other") -> ignore, c -> c - 1
        gt = np.where(gt == 0, IGNORE, gt - 1)
        gt[gt == IGNORE - 1] = IGNORE
    pred = read_label_png(pred_path)
    check_same_size(pred, gt.shape, pred_path)
    cm = ConfusionMatrix()
    cm.add(gt, pred)
    return cm.matrix


def evaluate_image_miou(
    gt_dir: str | Path, pred_dir: str | Path, *, reduce_zero_label: bool = False, workers: int | None = None
) -> ImageMiouMetrics:
    """mIoU of the label PNGs in `pred_dir` against those in `gt_dir` (every GT PNG needs a prediction)."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if not gt_dir.is_dir():
        raise DataFormatError(gt_dir, "not a folder of GT label PNGs")
    names = sorted(p.relative_to(gt_dir) for p in gt_dir.rglob("*.png"))
    if not names:
        raise DataFormatError(gt_dir, "no .png files")

    def tasks() -> Iterable[tuple]:
        for name in names:
            if not (pred_dir / name).is_file():
                raise DataFormatError(pred_dir / name, "no prediction for this GT image")
            yield gt_dir / name, pred_dir / name, reduce_zero_label

    cm = ConfusionMatrix()
    workers = default_workers() if workers is None else workers
    for counts in ordered_map(_image_task, tasks(), workers):
        cm.merge(counts)
    return miou_from_confusion(cm.matrix, num_images=len(names))


__all__ = ["ConfusionMatrix", "ImageMiouMetrics", "evaluate_image_miou", "miou_from_confusion"]
