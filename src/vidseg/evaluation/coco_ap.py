"""COCO instance segmentation mask AP: pycocotools' `COCOeval` with `iouType="segm"`, as detectron2 runs it.

`--gt`: a COCO instances JSON (`images`, `annotations` with polygon or RLE `segmentation`, `categories`);
`--pred`: a results JSON (a list of `{image_id, category_id, segmentation (RLE), score}`). The 12 numbers
are `COCOeval.stats` (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl; 0-1, -1 where the
official code has no GT); per-class AP is detectron2's: the mean of `eval["precision"][:, :, k, 0, -1]`
over its entries > -1.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.errors import DataFormatError
from vidseg.io.jsonio import load_json

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class CocoApMetrics:
    """`COCOeval.stats` by name (0-1) and per-class AP by category name (NaN: no GT and no prediction)."""

    stats: dict[str, float]
    per_class_ap: dict[str, float] = field(default_factory=dict)
    num_images: int = 0

    @property
    def AP(self) -> float:
        return self.stats["AP"]

    def to_json(self) -> dict[str, Any]:
        nan = lambda x: None if math.isnan(x) else x  # noqa: E731
        return {**self.stats, "per_class_ap": {k: nan(v) for k, v in self.per_class_ap.items()},
                "num_images": self.num_images}


def evaluate_coco_ap(gt: str | Path | dict[str, Any], pred: str | Path | list[dict[str, Any]]) -> CocoApMetrics:
    """Mask AP of `pred` (results JSON or its list) against COCO instances `gt` (JSON or its dict)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_data = gt if isinstance(gt, dict) else load_json(gt)
    results = pred if isinstance(pred, list) else load_json(pred)
    where = "<pred>" if isinstance(pred, list) else pred
    if not isinstance(results, list):
        raise DataFormatError(where, "expected a list of {image_id, category_id, segmentation, score}")
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = gt_data
        coco_gt.createIndex()
        unknown = {r.get("image_id") for r in results} - set(coco_gt.getImgIds())
        if unknown:
            raise DataFormatError(where, f"image ids {sorted(unknown, key=str)[:5]} are not in the GT")
        if not results:  # loadRes cannot take an empty list; nothing predicted scores 0 where there is GT
            stats = {n: 0.0 for n in STAT_NAMES}
            return CocoApMetrics(stats, {c["name"]: 0.0 for c in gt_data.get("categories", [])},
                                 len(coco_gt.getImgIds()))
        try:
            coco_dt = coco_gt.loadRes(results)
        except (KeyError, TypeError, AssertionError) as e:
            raise DataFormatError(where, f"invalid result entry: {e!r}") from e
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {n: float(v) for n, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[coco_gt.cats[cat_id]["name"]] = float(np.mean(p)) if p.size else math.nan
    return CocoApMetrics(stats, per_class, len(coco_gt.getImgIds()))


__all__ = ["CocoApMetrics", "evaluate_coco_ap", "STAT_NAMES"]
