"""VIPSeg evaluation from files (VPQ and STQ in one pass), and from a predictor's `FrameResult`s.

Ground truth (official layout): `panoptic_gt_VIPSeg_<split>.json` with
`videos[{video_id, images[{file_name, ...}]}]`, `annotations[{video_id, annotations[{segments_info}]}]`,
`categories[{id, isthing}]`, and RGB PNGs `panomasksRGB/<video>/<file_name>` (id = R + 256 G + 256^2 B).
Prediction (submission layout): `<pred>/pred.json = {annotations: [{video_id, annotations: [{segments_info:
[{id, category_id}]}]}]}` with one entry per GT frame, and `<pred>/pan_pred/<video>/<GT file_name>`.

Each frame is read once and reduced to its (GT id, prediction id, count) table, which feeds VPQ (windows)
and STQ (labels derived per id) alike. Videos run in worker processes; results are combined in GT order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.errors import DataFormatError
from vidseg.evaluation._files import default_workers, ordered_map
from vidseg.evaluation.pq import FramePairs, PQStats, frame_pairs, gt_segments, parse_categories
from vidseg.evaluation.stq import StqEvaluator, StqMetrics, StqSequence, StqSequenceStats, VipsegInstanceNumbering
from vidseg.evaluation.vpq import WINDOW_SIZES, VpqEvaluator, VpqMetrics, VpqVideoAccumulator
from vidseg.io.imageio import read_id_png
from vidseg.io.jsonio import load_json, require
from vidseg.structures import FrameResult
from vidseg.types import Category


@dataclass
class VipsegFrameGT:
    file_name: str
    segments_info: list[dict]


@dataclass
class VipsegGroundTruth:
    """The GT json, reduced to what evaluation needs; PNGs stay on disk."""

    json_path: Path
    png_dir: Path
    categories: list[Category]
    videos: list[tuple[str, list[VipsegFrameGT]]]

    @classmethod
    def load(cls, path: str | Path, png_dir: str | Path | None = None) -> VipsegGroundTruth:
        json_path, pngs = resolve_vipseg_gt(path, png_dir)
        data = load_json(json_path)
        cats = parse_categories(data, json_path)
        per_video: dict[str, list] = {}
        for i, a in enumerate(require(data, "annotations", object, json_path, "")):
            per_video[str(require(a, "video_id", object, json_path, f"annotations[{i}]"))] = require(
                a, "annotations", object, json_path, f"annotations[{i}]"
            )
        videos = []
        for i, v in enumerate(require(data, "videos", object, json_path, "")):
            vid = str(require(v, "video_id", object, json_path, f"videos[{i}]"))
            images = require(v, "images", object, json_path, f"videos[{i}]")
            anns = per_video.get(vid)
            if anns is None or len(anns) != len(images):
                raise DataFormatError(json_path, f"video {vid}: annotations do not match its images", "annotations")
            frames = [
                VipsegFrameGT(
                    _png_name(img, ann, json_path, f"videos[{i}].images[{t}]"),
                    list(require(ann, "segments_info", object, json_path, f"annotations[{vid}][{t}]")),
                )
                for t, (img, ann) in enumerate(zip(images, anns))
            ]
            videos.append((vid, frames))
        return cls(json_path, pngs, cats, videos)

    @property
    def things(self) -> list[int]:
        return [c.id for c in self.categories if c.isthing]

    @property
    def num_classes(self) -> int:
        # eval_stq_vspw.py hard-codes 124; any value above the largest id gives the same numbers
        return max([124] + [c.id + 1 for c in self.categories])


def _png_name(image: Any, ann: Any, path: Path, where: str) -> str:
    """The frame's PNG name: the annotation's `file_name`, else the image's with a .png suffix.

    The official script opens `<dir>/<video>/<images[t].file_name>` for GT and prediction alike, which
    only works where that name is the PNG's; the annotation's `file_name` is the PNG's in every layout.
    """
    if isinstance(ann, dict) and isinstance(ann.get("file_name"), str):
        return ann["file_name"]
    return str(Path(str(require(image, "file_name", object, path, where))).with_suffix(".png"))


def resolve_vipseg_gt(path: str | Path, png_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(GT json, PNG folder) from a VIPSeg root folder or the json path (PNGs in `panomasksRGB/` beside it)."""
    path = Path(path)
    if path.is_dir():
        # the validation split first: it is what is evaluated locally
        found = sorted(path.glob("panoptic_gt_VIPSeg_val.json")) or sorted(path.glob("panoptic_gt_VIPSeg_*.json"))
        if not found:
            raise DataFormatError(path, "no panoptic_gt_VIPSeg_<split>.json in this folder")
        json_path = found[0]
    else:
        json_path = path
    if png_dir is None:
        png_dir = json_path.parent / "panomasksRGB"
        if not png_dir.is_dir():
            png_dir = json_path.with_suffix("")
    png_dir = Path(png_dir)
    if not png_dir.is_dir():
        raise DataFormatError(png_dir, "GT PNG folder not found")
    return json_path, png_dir


def load_vipseg_predictions(pred_dir: str | Path) -> dict[str, list[dict]]:
    """`pred.json` -> per video id, its per-frame entries (`segments_info`)."""
    path = Path(pred_dir) / "pred.json"
    data = load_json(path)
    out = {}
    for i, a in enumerate(require(data, "annotations", object, path, "")):
        out[str(require(a, "video_id", object, path, f"annotations[{i}]"))] = require(
            a, "annotations", object, path, f"annotations[{i}]"
        )
    return out


@dataclass
class VipsegVideoStats:
    name: str
    vpq: dict[int, PQStats] | None
    stq: StqSequenceStats | None


class VipsegVideo:
    """One video, frame by frame: feeds the VPQ windows and the STQ sequence from the same pair tables."""

    def __init__(
        self,
        name: str,
        categories: Sequence[Category],
        num_classes: int,
        vpq: bool = True,
        stq: bool = True,
        window_sizes: Sequence[int] = WINDOW_SIZES,
    ):
        self.name = name
        self.category_ids = {c.id for c in categories}
        self.vpq = VpqVideoAccumulator(window_sizes, name) if vpq else None
        self.stq = StqSequence(num_classes, [c.id for c in categories if c.isthing]) if stq else None
        self.gt_numbering = VipsegInstanceNumbering()
        self.pred_numbering = VipsegInstanceNumbering()

    def add_frame(
        self,
        gt_map: np.ndarray,
        gt_segments_info: Sequence[Mapping[str, Any]],
        pred_map: np.ndarray,
        pred_segments_info: Sequence[Mapping[str, Any]],
        where: str | Path = "<frame>",
    ) -> None:
        """gt_map, pred_map: [H, W] segment ids (0 = VOID); segments_info: the JSON lists of the frame."""
        gt = gt_segments(gt_segments_info, where, "segments_info")
        pairs: FramePairs = frame_pairs(gt_map, gt, pred_map, pred_segments_info, self.category_ids, where)
        if self.vpq is not None:
            self.vpq.add_frame(pairs)
        if self.stq is not None:
            self.gt_numbering.update(gt_segments_info)
            self.pred_numbering.update(pred_segments_info)
            y_true = self.gt_numbering.labels(pairs.gt_ids, gt_segments_info)
            y_pred = self.pred_numbering.labels(pairs.pred_ids, pred_segments_info)
            self.stq.add_pairs(y_true, y_pred, pairs.counts)

    def add_frame_result(
        self, gt_map: np.ndarray, gt_segments_info: Sequence[Mapping[str, Any]], result: FrameResult
    ) -> None:
        """A predictor frame: `result.panoptic` ids with `result.segments` (contiguous = dataset category ids)."""
        if result.panoptic is None:
            raise DataFormatError(None, f"video {self.name}: FrameResult without a panoptic map")
        info = [{"id": s.id, "category_id": s.category_id} for s in result.segments]
        self.add_frame(gt_map, gt_segments_info, result.panoptic, info, f"<{self.name} frame {result.frame_index}>")

    def finish(self) -> VipsegVideoStats:
        return VipsegVideoStats(
            self.name,
            self.vpq.finish() if self.vpq is not None else None,
            self.stq.finish() if self.stq is not None else None,
        )


@dataclass
class VipsegMetrics:
    vpq: VpqMetrics | None
    stq: StqMetrics | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.stq is not None:
            stq = self.stq.to_json()
            out.update({k: stq.pop(k) for k in ("STQ", "AQ", "SQ")})
            out["stq"] = stq
        if self.vpq is not None:
            vpq = self.vpq.to_json()
            out = {**{k: vpq.pop(k) for k in ("VPQ", "VPQ_thing", "VPQ_stuff")}, **out}
            out["vpq"] = vpq
        return out


class VipsegEvaluator:
    """Streaming VIPSeg evaluation: `video(name)` -> feed frames -> `add(video.finish())` in GT order."""

    def __init__(
        self, categories: Sequence[Category], num_classes: int | None = None, vpq: bool = True, stq: bool = True
    ):
        self.categories = list(categories)
        self.num_classes = num_classes or max([124] + [c.id + 1 for c in categories])
        self.vpq = VpqEvaluator(self.categories) if vpq else None
        self.stq = StqEvaluator(self.num_classes, [c.id for c in categories if c.isthing]) if stq else None

    def video(self, name: str) -> VipsegVideo:
        return VipsegVideo(name, self.categories, self.num_classes, self.vpq is not None, self.stq is not None)

    def add(self, stats: VipsegVideoStats) -> None:
        if self.vpq is not None and stats.vpq is not None:
            self.vpq.add_stats(stats.vpq)
        if self.stq is not None and stats.stq is not None:
            self.stq.add_sequence(stats.stq, stats.name)

    def summarize(self) -> VipsegMetrics:
        return VipsegMetrics(
            self.vpq.summarize() if self.vpq is not None else None,
            self.stq.summarize() if self.stq is not None else None,
        )


def _video_task(task: tuple) -> VipsegVideoStats:
    name, frames, pred_frames, png_dir, pred_dir, cats, num_classes, vpq, stq = task
    video = VipsegVideo(name, cats, num_classes, vpq, stq)
    for gt_frame, pred_frame in zip(frames, pred_frames):
        pred_png = pred_dir / "pan_pred" / name / gt_frame.file_name
        info = require(pred_frame, "segments_info", object, pred_dir / "pred.json", f"annotations[{name}]")
        video.add_frame(
            read_id_png(png_dir / name / gt_frame.file_name),
            gt_frame.segments_info,
            read_id_png(pred_png),
            info,
            pred_png,
        )
    return video.finish()


def evaluate_vipseg(
    gt: str | Path | VipsegGroundTruth,
    pred_dir: str | Path,
    vpq: bool = True,
    stq: bool = True,
    workers: int | None = None,
) -> VipsegMetrics:
    """VPQ and/or STQ of a submission folder (`pred.json` + `pan_pred/`) against VIPSeg GT."""
    gt = gt if isinstance(gt, VipsegGroundTruth) else VipsegGroundTruth.load(gt)
    pred_dir = Path(pred_dir)
    preds = load_vipseg_predictions(pred_dir)
    ev = VipsegEvaluator(gt.categories, gt.num_classes, vpq, stq)

    def tasks() -> Iterable[tuple]:
        for name, frames in gt.videos:
            if name not in preds:
                raise DataFormatError(pred_dir / "pred.json", f"no prediction for video {name!r}")
            if len(preds[name]) != len(frames):
                raise DataFormatError(
                    pred_dir / "pred.json",
                    f"video {name!r} has {len(preds[name])} predicted frames, the GT has {len(frames)}",
                )
            yield name, frames, preds[name], gt.png_dir, pred_dir, gt.categories, gt.num_classes, vpq, stq

    workers = default_workers() if workers is None else workers
    for stats in ordered_map(_video_task, tasks(), workers):
        ev.add(stats)
    return ev.summarize()
