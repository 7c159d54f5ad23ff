"""Panoptic quality: the segment matching shared by image PQ (COCO `panopticapi`) and VPQ (VIPSeg).

Matching of one window (one image, or a run of video frames stacked into a volume), as `pq_compute` /
`vpq_compute_single_core` do it:

* intersections are pixel counts of (GT id, prediction id) pairs over the window; areas are summed over
  the window's frames (GT areas from the JSON `area`, prediction areas from the PNG);
* a TP needs the same category, a non-crowd GT and `IoU > 0.5` (strict) with
  `IoU = I / (area_p + area_g - I - |p on VOID|)`; IoUs are summed per category in pair order;
* an unmatched non-crowd GT is a FN; crowd GTs are remembered per category (the last one wins);
* an unmatched prediction is a FP unless more than half of it lies on VOID or on its category's crowd.

Per-category PQ = IoU / (TP + FP/2 + FN/2), SQ = IoU / TP, RQ = TP / (TP + FP/2 + FN/2); averages are over
the categories with TP + FP + FN > 0 (NaN where the official code would divide by zero).

Every frame is reduced first to its (GT id, prediction id, count) table: one `np.unique` per frame; windows
and every statistic are then computed from these small tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.errors import DataFormatError
from vidseg.evaluation._files import check_same_size, default_workers, ordered_map
from vidseg.io.imageio import read_id_png
from vidseg.io.jsonio import load_json, require
from vidseg.types import Category

OFFSET = 256 * 256 * 256
VOID = 0


@dataclass
class Segment:
    """One segment of one frame (or of a window once areas are summed)."""

    id: int
    category_id: int
    iscrowd: int
    area: int


@dataclass
class FramePairs:
    """One frame reduced to what matching needs.

    Attributes:
        gt_ids, pred_ids, counts: [P] int64, the pixel count of every (GT id, prediction id) pair present,
            sorted by `gt_id * OFFSET + pred_id` (the order of the official `np.unique`).
        gt: GT segments of the frame by id, in JSON order (areas from the JSON).
        pred: predicted segments by id, in JSON order (areas from the PNG).
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    counts: np.ndarray
    gt: dict[int, Segment]
    pred: dict[int, Segment]


def parse_categories(data: Any, path: str | Path) -> list[Category]:
    cats = require(data, "categories", object, path, "")
    try:
        return [Category(int(c["id"]), str(c.get("name", c["id"])), bool(c.get("isthing", 0) == 1)) for c in cats]
    except (KeyError, TypeError) as e:
        raise DataFormatError(path, f"invalid category: {e}", field="categories") from e


def gt_segments(segments_info: Iterable[Mapping[str, Any]], path: str | Path, where: str) -> dict[int, Segment]:
    """GT segments of a frame; a repeated id adds its area to the first entry (as the official code does)."""
    out: dict[int, Segment] = {}
    try:
        for el in segments_info:
            sid = int(el["id"])
            if sid in out:
                out[sid].area += int(el["area"])
            else:
                out[sid] = Segment(sid, int(el["category_id"]), int(el.get("iscrowd", 0)), int(el["area"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataFormatError(path, f"segment needs id, category_id, area ({e})", field=where) from e
    return out


def pair_table(gt_map: np.ndarray, pred_map: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt ids, pred ids, counts) [P] of the pixel pairs of a frame, sorted by gt id then pred id."""
    keys = gt_map.astype(np.uint64).ravel() * np.uint64(OFFSET) + pred_map.astype(np.uint64).ravel()
    if keys.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    # Segment maps are piecewise constant: sort the runs of equal pairs (in memory order), weighted by their
    # lengths, rather than every pixel (a 720p frame has a few thousand runs for ~10^6 pixels).
    change = np.empty(keys.size, bool)
    change[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    run_keys, run_lengths = keys[starts], np.diff(starts, append=keys.size)
    order = np.argsort(run_keys, kind="stable")
    sorted_keys = run_keys[order]
    first = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
    uniq, counts = sorted_keys[first], np.add.reduceat(run_lengths[order], first)
    return (uniq // np.uint64(OFFSET)).astype(np.int64), (uniq % np.uint64(OFFSET)).astype(np.int64), counts


def frame_pairs(
    gt_map: np.ndarray,
    gt: dict[int, Segment],
    pred_map: np.ndarray,
    pred_segments_info: Iterable[Mapping[str, Any]],
    category_ids: set[int],
    where: str | Path,
) -> FramePairs:
    """Reduce one frame, with the official prediction checks (PNG ids and JSON ids must agree, known categories).

    gt_map, pred_map: [H, W] segment ids (0 = VOID).
    """
    check_same_size(pred_map, gt_map.shape, where)
    gt_ids, pred_ids, counts = pair_table(gt_map, pred_map)
    pred: dict[int, Segment] = {}
    try:
        for el in pred_segments_info:
            sid = int(el["id"])
            if sid not in pred:
                pred[sid] = Segment(sid, int(el["category_id"]), int(el.get("iscrowd", 0)), 0)
    except (KeyError, TypeError, ValueError) as e:
        raise DataFormatError(where, f"predicted segment needs id and category_id ({e})") from e
    # prediction areas from the PNG
    order = np.argsort(pred_ids, kind="stable")
    labels, starts = np.unique(pred_ids[order], return_index=True)
    areas = np.add.reduceat(counts[order], starts) if len(order) else np.zeros(0, np.int64)
    seen = set()
    for label, area in zip(labels.tolist(), areas.tolist()):
        if label not in pred:
            if label == VOID:
                continue
            raise DataFormatError(where, f"segment id {label} is in the PNG but not in the JSON segments_info")
        pred[label].area = area
        seen.add(label)
        if pred[label].category_id not in category_ids:
            raise DataFormatError(
                where, f"segment id {label} has category_id {pred[label].category_id}, not a dataset category"
            )
    missing = [sid for sid in pred if sid not in seen]
    if missing:
        raise DataFormatError(where, f"segment ids {missing} are in the JSON segments_info but not in the PNG")
    return FramePairs(gt_ids, pred_ids, counts, gt, pred)


@dataclass
class CategoryStat:
    """TP/FP/FN counts and the summed IoU of the TPs of one category."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: CategoryStat) -> None:
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn


PQStats = dict[int, CategoryStat]


def add_stats(total: PQStats, part: PQStats) -> None:
    """`total += part` category by category (the official `PQStat.__iadd__`, same float order)."""
    for cat, s in part.items():
        total.setdefault(cat, CategoryStat()).add(s)


def match_window(frames: Sequence[FramePairs], stats: PQStats, where: str | Path = "<window>") -> None:
    """Match the segments of a window of frames (stacked as one volume) and add to `stats`."""
    if len(frames) == 1:
        f = frames[0]
        gt_ids, pred_ids, inter = f.gt_ids, f.pred_ids, f.counts
        gt_segs, pred_segs = f.gt, f.pred  # read only below
    else:
        keys = np.concatenate([f.gt_ids * OFFSET + f.pred_ids for f in frames])
        uniq, inv = np.unique(keys, return_inverse=True)
        inter = np.bincount(inv, weights=np.concatenate([f.counts for f in frames])).astype(np.int64)
        gt_ids, pred_ids = uniq // OFFSET, uniq % OFFSET
        gt_segs, pred_segs = {}, {}
        for f in frames:  # tube areas: the first occurrence's fields, areas summed
            for segs, tube in ((f.gt, gt_segs), (f.pred, pred_segs)):
                for k, s in segs.items():
                    if k in tube:
                        tube[k].area += s.area
                    else:
                        tube[k] = Segment(s.id, s.category_id, s.iscrowd, s.area)
    pairs = list(zip(gt_ids.tolist(), pred_ids.tolist(), inter.tolist()))
    void_inter = {p: n for g, p, n in pairs if g == VOID}
    gt_matched, pred_matched = set(), set()
    for g, p, n in pairs:
        gs, ps = gt_segs.get(g), pred_segs.get(p)
        if gs is None or ps is None or gs.iscrowd == 1 or gs.category_id != ps.category_id:
            continue
        union = ps.area + gs.area - n - void_inter.get(p, 0)
        iou = n / union
        if iou > 1.0:
            # the official code asserts here; it means the JSON area is smaller than the PNG segment
            raise DataFormatError(where, f"GT segment {g}: JSON area is smaller than its pixels (IoU {iou:.3f})")
        if iou > 0.5:
            stat = stats.setdefault(gs.category_id, CategoryStat())
            stat.tp += 1
            stat.iou += iou
            gt_matched.add(g)
            pred_matched.add(p)
    crowd_by_cat: dict[int, int] = {}
    for g, gs in gt_segs.items():
        if g in gt_matched:
            continue
        if gs.iscrowd == 1:
            crowd_by_cat[gs.category_id] = g
            continue
        stats.setdefault(gs.category_id, CategoryStat()).fn += 1
    crowd_inter = {}
    if crowd_by_cat:
        crowd_ids = set(crowd_by_cat.values())
        crowd_inter = {(g, p): n for g, p, n in pairs if g in crowd_ids}
    for p, ps in pred_segs.items():
        if p in pred_matched:
            continue
        ignored = void_inter.get(p, 0)
        if ps.category_id in crowd_by_cat:
            ignored += crowd_inter.get((crowd_by_cat[ps.category_id], p), 0)
        if ignored / ps.area > 0.5:
            continue
        stats.setdefault(ps.category_id, CategoryStat()).fp += 1


@dataclass
class PQSummary:
    """Mean PQ/SQ/RQ (0-1) over the `n` categories of a subset that have TP + FP + FN > 0."""

    pq: float
    sq: float
    rq: float
    n: int


@dataclass
class ClassPQ:
    pq: float
    sq: float
    rq: float
    iou: float
    tp: int
    fp: int
    fn: int


def pq_average(
    stats: PQStats, categories: Sequence[Category], isthing: bool | None
) -> tuple[PQSummary, dict[int, ClassPQ]]:
    """The official `pq_average`: python float sums in category order."""
    pq = sq = rq = 0.0
    n = 0
    per_class: dict[int, ClassPQ] = {}
    for cat in categories:
        if isthing is not None and cat.isthing != isthing:
            continue
        s = stats.get(cat.id, CategoryStat())
        if s.tp + s.fp + s.fn == 0:
            per_class[cat.id] = ClassPQ(0.0, 0.0, 0.0, 0.0, 0, 0, 0)
            continue
        n += 1
        pq_c = s.iou / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
        sq_c = s.iou / s.tp if s.tp != 0 else 0
        rq_c = s.tp / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
        per_class[cat.id] = ClassPQ(pq_c, sq_c, rq_c, s.iou, s.tp, s.fp, s.fn)
        pq += pq_c
        sq += sq_c
        rq += rq_c
    if n == 0:  # the official code raises ZeroDivisionError
        return PQSummary(math.nan, math.nan, math.nan, 0), per_class
    return PQSummary(pq / n, sq / n, rq / n, n), per_class


# --- image PQ (COCO panoptic) -----------------------------------------------------------------------------


def _num(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else float(x)


@dataclass
class PanopticMetrics:
    """COCO panoptic PQ/SQ/RQ on the 0-1 scale `pq_compute` returns (it prints them x100)."""

    PQ: float
    SQ: float
    RQ: float
    things: PQSummary
    stuff: PQSummary
    n: int
    per_class: dict[str, ClassPQ] = field(default_factory=dict)
    num_images: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "PQ": _num(self.PQ),
            "SQ": _num(self.SQ),
            "RQ": _num(self.RQ),
            "PQ_th": _num(self.things.pq),
            "SQ_th": _num(self.things.sq),
            "RQ_th": _num(self.things.rq),
            "PQ_st": _num(self.stuff.pq),
            "SQ_st": _num(self.stuff.sq),
            "RQ_st": _num(self.stuff.rq),
            "n": self.n,
            "per_class": {k: vars(v) for k, v in self.per_class.items()},
            "num_images": self.num_images,
        }


class PanopticEvaluator:
    """Streaming image PQ: `add_image` (or `add_stats` from a worker) per image in GT order, then `summarize`."""

    def __init__(self, categories: Sequence[Category]):
        self.categories = list(categories)
        self.category_ids = {c.id for c in categories}
        self.stats: PQStats = {}
        self.num_images = 0

    def image_stats(
        self,
        gt_map: np.ndarray,
        gt_segments_info: Iterable[Mapping[str, Any]],
        pred_map: np.ndarray,
        pred_segments_info: Iterable[Mapping[str, Any]],
        where: str | Path = "<image>",
    ) -> PQStats:
        gt = gt_segments(gt_segments_info, where, "segments_info")
        stats: PQStats = {}
        match_window([frame_pairs(gt_map, gt, pred_map, pred_segments_info, self.category_ids, where)], stats, where)
        return stats

    def add_image(self, gt_map, gt_segments_info, pred_map, pred_segments_info, where="<image>") -> None:
        """gt_map, pred_map: [H, W] segment ids; segments_info: the JSON lists of the image."""
        self.add_stats(self.image_stats(gt_map, gt_segments_info, pred_map, pred_segments_info, where))

    def add_stats(self, stats: PQStats) -> None:
        add_stats(self.stats, stats)
        self.num_images += 1

    def summarize(self) -> PanopticMetrics:
        all_, per_class = pq_average(self.stats, self.categories, None)
        things, _ = pq_average(self.stats, self.categories, True)
        stuff, _ = pq_average(self.stats, self.categories, False)
        names = {c.id: c.name for c in self.categories}
        return PanopticMetrics(
            all_.pq,
            all_.sq,
            all_.rq,
            things,
            stuff,
            all_.n,
            {names[k]: v for k, v in per_class.items()},
            self.num_images,
        )


def _png_folder(json_path: Path, folder: str | Path | None) -> Path:
    # panopticapi convention: the PNGs of `x.json` are in folder `x/`
    return Path(folder) if folder is not None else json_path.with_suffix("")


def _image_task(task: tuple) -> PQStats:
    gt_png, gt_info, pred_png, pred_info, cat_ids, cats = task
    ev = PanopticEvaluator(cats)
    return ev.image_stats(read_id_png(gt_png), gt_info, read_id_png(pred_png), pred_info, pred_png)


def evaluate_coco_panoptic(
    gt_json: str | Path,
    pred_json: str | Path,
    gt_folder: str | Path | None = None,
    pred_folder: str | Path | None = None,
    workers: int | None = None,
) -> PanopticMetrics:
    """COCO panoptic PQ of `pred_json` (+ PNG folder) against `gt_json` (+ PNG folder)."""
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt_data, pred_data = load_json(gt_json), load_json(pred_json)
    cats = parse_categories(gt_data, gt_json)
    gt_dir, pred_dir = _png_folder(gt_json, gt_folder), _png_folder(pred_json, pred_folder)
    preds: dict[Any, Mapping[str, Any]] = {}
    for i, a in enumerate(require(pred_data, "annotations", object, pred_json, "")):
        preds[require(a, "image_id", object, pred_json, f"annotations[{i}]")] = a
    ev = PanopticEvaluator(cats)
    ids = {c.id for c in cats}

    def tasks():
        for i, g in enumerate(require(gt_data, "annotations", object, gt_json, "")):
            image_id = require(g, "image_id", object, gt_json, f"annotations[{i}]")
            p = preds.get(image_id)
            if p is None:
                raise DataFormatError(pred_json, f"no prediction for the image with id {image_id!r}")
            yield (
                gt_dir / require(g, "file_name", object, gt_json, f"annotations[{i}]"),
                require(g, "segments_info", object, gt_json, f"annotations[{i}]"),
                pred_dir / require(p, "file_name", object, pred_json, f"annotations[image {image_id}]"),
                require(p, "segments_info", object, pred_json, f"annotations[image {image_id}]"),
                ids,
                cats,
            )

    workers = default_workers() if workers is None else workers
    for stats in ordered_map(_image_task, tasks(), workers):
        ev.add_stats(stats)
    return ev.summarize()
