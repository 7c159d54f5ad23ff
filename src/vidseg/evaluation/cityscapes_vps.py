"""Cityscapes-VPS video panoptic quality, number for number as the official `eval_vpq.py` (mcahny/vps).

Layout (the official release):

    <root>/panoptic_gt_val_city_vps.json       images[{id, file_name}], annotations[{image_id,
                                                segments_info[{id, category_id, iscrowd, area}]}],
                                                categories[{id, name, isthing}] (19 classes)
    <root>/val/panoptic_video/<name>_gtFine_color.png   RGB ids (id = R + 256 G + 256^2 B, 0 = void);
                                                <name> is the image `file_name` without `_leftImg8bit.png`
                                                (`_newImg8bit.png` -> `_final_mask.png`)

Submission: `<pred>/pred.json` (`{annotations: [{image_id, segments_info[{id, category_id}]}]}`) and
`<pred>/pan_pred/<image_id>.png` (RGB ids).

As the official script: the annotated frames (every 5th frame of a 30-frame snippet) are taken in JSON
order and cut into videos of 6 consecutive frames (`np.array_split(frames, len // 6)`); each video is
matched with tubes of `nframes` = 1, 2, 3, 4 annotated frames (k = 0, 5, 10, 15 frames apart) by the
library's VPQ matching (`vidseg.evaluation.vpq`, the same tube matching as VIPSeg's `eval_vpq_vspw.py`),
and VPQ is the mean over the four of 100 x PQ. Predictions are found by `image_id` (the official script
pairs `pred.json` entries with the GT by position; a `pred.json` in GT order, as its writers produce, gives
the same pairs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.errors import DataFormatError
from vidseg.evaluation._files import default_workers, ordered_map
from vidseg.evaluation.pq import PQStats, frame_pairs, gt_segments, parse_categories
from vidseg.evaluation.vpq import VpqEvaluator, VpqMetrics, VpqVideoAccumulator
from vidseg.io.imageio import read_id_png
from vidseg.io.jsonio import load_json, require
from vidseg.types import Category

GT_JSON = "panoptic_gt_val_city_vps.json"
FRAMES_PER_VIDEO = 6
WINDOW_SIZES = (1, 2, 3, 4)  # annotated frames per tube: k = (nframes - 1) x 5 = 0, 5, 10, 15


def gt_png_name(file_name: str) -> str:
    """The GT PNG of an image `file_name`, as the official script names it."""
    return file_name.replace("_newImg8bit.png", "_final_mask.png").replace("_leftImg8bit.png", "_gtFine_color.png")


@dataclass(frozen=True)
class CvpsFrame:
    """One annotated frame: its image id, GT PNG name and GT segments_info."""

    image_id: str
    png: str
    segments_info: list[dict[str, Any]]


@dataclass
class CityscapesVpsGroundTruth:
    """The GT JSON and PNG folder of a Cityscapes-VPS split.

    Attributes:
        categories: the JSON's categories, in JSON order.
        videos: the annotated frames cut into videos of `FRAMES_PER_VIDEO` (the official grouping).
        png_dir: the folder of the GT PNGs.
    """

    categories: list[Category]
    videos: list[list[CvpsFrame]]
    png_dir: Path
    json_path: Path

    @classmethod
    def load(cls, path: str | Path, png_dir: str | Path | None = None) -> CityscapesVpsGroundTruth:
        """`path`: the GT JSON or the dataset root holding it; `png_dir` default: `val/panoptic_video` (or
        `panoptic_video`) beside the JSON."""
        path = Path(path)
        json_path = path / GT_JSON if path.is_dir() else path
        data = load_json(json_path)
        images = require(data, "images", object, json_path, "")
        anns = require(data, "annotations", object, json_path, "")
        if not isinstance(images, list) or not isinstance(anns, list) or len(images) != len(anns):
            raise DataFormatError(json_path, "images and annotations must be lists of the same length")
        if len(images) < FRAMES_PER_VIDEO:
            raise DataFormatError(json_path, f"{len(images)} frames, fewer than one video ({FRAMES_PER_VIDEO})")
        frames = []
        for i, (img, ann) in enumerate(zip(images, anns)):
            image_id = str(require(img, "id", object, json_path, f"images[{i}]"))
            if "image_id" in ann and str(ann["image_id"]) != image_id:
                raise DataFormatError(json_path, f"image_id {ann['image_id']!r} != image id {image_id!r}",
                                      field=f"annotations[{i}]")
            name = gt_png_name(str(require(img, "file_name", object, json_path, f"images[{i}]")))
            info = require(ann, "segments_info", object, json_path, f"annotations[{i}]")
            frames.append(CvpsFrame(image_id, name, info))
        groups = np.array_split(np.arange(len(frames)), len(frames) // FRAMES_PER_VIDEO)
        videos = [[frames[i] for i in g.tolist()] for g in groups]
        if png_dir is None:
            candidates = [json_path.parent / "val" / "panoptic_video", json_path.parent / "panoptic_video"]
            png_dir = next((c for c in candidates if c.is_dir()), candidates[0])
        return cls(parse_categories(data, json_path), videos, Path(png_dir), json_path)


def load_cvps_predictions(pred_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """`pred.json` of a submission: image id -> segments_info."""
    path = Path(pred_dir) / "pred.json"
    anns = require(load_json(path), "annotations", object, path, "")
    out = {}
    for i, a in enumerate(anns):
        where = f"annotations[{i}]"
        out[str(require(a, "image_id", object, path, where))] = require(a, "segments_info", object, path, where)
    return out


def _video_task(task: tuple) -> dict[int, PQStats]:
    index, frames, preds, png_dir, pred_dir, category_ids = task
    video = VpqVideoAccumulator(WINDOW_SIZES, f"video {index}")
    for frame in frames:
        pred_png = pred_dir / "pan_pred" / f"{frame.image_id}.png"
        gt = gt_segments(frame.segments_info, png_dir / frame.png, "segments_info")
        video.add_frame(frame_pairs(read_id_png(png_dir / frame.png), gt, read_id_png(pred_png),
                                    preds[frame.image_id], category_ids, pred_png))
    return video.finish()


def evaluate_cityscapes_vps(
    gt: str | Path | CityscapesVpsGroundTruth, pred_dir: str | Path, workers: int | None = None
) -> VpqMetrics:
    """VPQ (mean of k = 0, 5, 10, 15) of a submission folder against Cityscapes-VPS GT."""
    gt = gt if isinstance(gt, CityscapesVpsGroundTruth) else CityscapesVpsGroundTruth.load(gt)
    pred_dir = Path(pred_dir)
    preds = load_cvps_predictions(pred_dir)
    category_ids = {c.id for c in gt.categories}
    ev = VpqEvaluator(gt.categories, WINDOW_SIZES)

    def tasks() -> Iterable[tuple]:
        for index, frames in enumerate(gt.videos):
            missing = [f.image_id for f in frames if f.image_id not in preds]
            if missing:
                raise DataFormatError(pred_dir / "pred.json", f"no prediction for image {missing[0]!r}")
            yield index, frames, {f.image_id: preds[f.image_id] for f in frames}, gt.png_dir, pred_dir, category_ids

    workers = default_workers() if workers is None else workers
    for stats in ordered_map(_video_task, tasks(), workers):
        ev.add_stats(stats)
    return ev.summarize()


__all__ = ["CityscapesVpsGroundTruth", "evaluate_cityscapes_vps", "gt_png_name", "load_cvps_predictions"]
