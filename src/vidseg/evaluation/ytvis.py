"""YouTube-VIS / OVIS video AP and AR, number for number as `ytvoseval.YTVOSeval` / `oviseval.OVISeval`.

What the official code does, and this module does the same way (see `shared/specs/metrics.md` §1):

* video IoU = sum over frames of intersections / sum over frames of unions, over `zip(det, gt)` frames
  (the shorter list wins); a `None` (falsy) frame of one side adds the other side's area to the union;
  `iscrowd` is not used in the IoU;
* per (video, category): detections sorted by score with a stable sort, truncated to 100; greedy COCO
  matching per IoU threshold; a GT with id 0 can never give a true positive (its id is stored as the
  "match" and 0 means unmatched);
* GT `avg_area` is the mean of the truthy entries of the JSON `areas` (not recomputed from the masks);
  YouTube-VIS area ranges (128^2, 256^2) with inclusive bounds;
* precision `tp / (tp + fp + eps)` with `eps = np.spacing(1)`: a perfect result is 0.9999999999999998;
* OVIS: occlusion ranges filter GTs only; the occlusion score is the mean of the top half of the per-frame
  occlusion scores.

The evaluator is streaming: `add_video` reduces one video to small per-(video, category) arrays (scores,
match flags, ignore flags, GT counts) and keeps nothing else.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from vidseg.errors import DataFormatError
from vidseg.evaluation._files import default_workers, ordered_map
from vidseg.io.jsonio import load_json
from vidseg.structures import VideoResult

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 128.0**2),
    "medium": (128.0**2, 256.0**2),
    "large": (256.0**2, 1e5**2),
}
OCCLUSION_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1.0),
    "light": (0.0, 0.25),
    "medium": (0.25, 0.5),
    "heavy": (0.5, 1.0),
}
OCCLUSION_SCORES = {"no_occlusion": 0.0, "slight_occlusion": 0.25, "severe_occlusion": 0.75}

# (area label, occlusion label) pairs that the summaries read; the official code evaluates the full
# area x occlusion grid, but only these cells are ever reported.
_YTVIS_SETTINGS = (("all", "all"), ("small", "all"), ("medium", "all"), ("large", "all"))
_OVIS_SETTINGS = _YTVIS_SETTINGS + (("all", "light"), ("all", "medium"), ("all", "heavy"))


@dataclass(frozen=True)
class YtvisVideo:
    """One video of the GT json."""

    id: int
    height: int
    width: int
    length: int


@dataclass
class YtvisTrack:
    """One GT object (or one detection) over a video.

    The masks are kept compactly (the frames that have one and their compressed RLE strings), so that a
    video's tracks go to a worker process as a few lists rather than one dict per mask.

    Attributes:
        length: entries of the JSON `segmentations` list (the official `zip` stops at the shorter list).
        frames: the frames that have a mask, increasing.
        counts: the compressed RLE string (bytes) of each of those frames, all of the video's size.
        avg_area: mean of the truthy per-frame areas (0 if none).
        occ_score: OVIS occlusion score (GT only; None without an `occlusion` field).
        frame_areas: [length] int64 pixel count per frame (0 where absent); None until `measure_tracks`
            has checked the masks.
        where: the JSON field of the entry, for error messages (e.g. `[3]`).
    """

    id: int
    category_id: int
    length: int
    frames: list[int]
    counts: list[bytes]
    size: tuple[int, int]
    avg_area: float
    iscrowd: bool = False
    score: float = 0.0
    occ_score: float | None = None
    frame_areas: np.ndarray | None = None
    where: str = ""

    @property
    def segmentations(self) -> list[dict | None]:
        """Per frame a compressed RLE `{size, counts}` (bytes counts), None where absent."""
        out: list[dict | None] = [None] * self.length
        size = list(self.size)
        for t, c in zip(self.frames, self.counts):
            out[t] = {"size": size, "counts": c}
        return out


@dataclass
class YtvisGroundTruth:
    """The GT json: videos, sorted category ids (and names), GT tracks grouped by video (file order)."""

    path: str
    videos: dict[int, YtvisVideo]
    category_ids: list[int]
    category_names: dict[int, str]
    tracks: dict[int, list[YtvisTrack]]
    has_occlusion: bool

    @classmethod
    def load(cls, path: str | Path) -> YtvisGroundTruth:
        return parse_ytvis_gt(load_json(path), path)


def _mean_truthy(values: Iterable[Any] | np.ndarray) -> float:
    # np.array(l).mean() exactly as `_toMask` does it, so the float is bit-identical (for detections the
    # values are the uint32 areas pycocotools returns, already without zeros).
    if isinstance(values, np.ndarray):
        return values.mean() if values.size else 0
    kept = [a for a in values if a]
    return np.array(kept).mean() if kept else 0


def _occlusion_score(levels: Sequence[str | None], path: str | Path, where: str) -> float | None:
    """Mean of the top half of the per-frame occlusion scores; None when every frame is null."""
    try:
        scores = sorted(OCCLUSION_SCORES[a] for a in levels if a is not None)
    except KeyError as e:
        raise DataFormatError(path, f"unknown occlusion level {e.args[0]!r}", field=where) from e
    if not scores:
        return None  # the official code divides by zero here; OVIS evaluation reports it (see YtvisEvaluator)
    top = scores[-math.ceil(len(scores) / 2) :]
    return sum(top) / len(top)


def _gt_rle(seg: Any, h: int, w: int, path: str | Path, where: str) -> dict:
    """`annToRLE`: polygons and uncompressed RLE -> compressed RLE; compressed kept (str -> bytes)."""
    try:
        if isinstance(seg, list):
            return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        if isinstance(seg.get("counts"), list):
            return mask_utils.frPyObjects(seg, h, w)
        counts = seg["counts"]
        return {"size": list(seg["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    except (TypeError, KeyError, AttributeError, ValueError) as e:
        raise DataFormatError(path, f"invalid segmentation: {e}", field=where) from e


def parse_ytvis_gt(data: Any, path: str | Path = "<gt>") -> YtvisGroundTruth:
    """Parse a YouTube-VIS / OVIS GT dict (`videos`, `annotations`, `categories`)."""
    if not isinstance(data, dict):
        raise DataFormatError(path, "expected a JSON object with videos, annotations, categories")
    for key in ("videos", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(path, "missing or not a list", field=key)
    videos = {}
    for i, v in enumerate(data["videos"]):
        try:
            n = v.get("length", len(v.get("file_names", [])))
            videos[int(v["id"])] = YtvisVideo(int(v["id"]), int(v["height"]), int(v["width"]), int(n))
        except (KeyError, TypeError, AttributeError) as e:
            raise DataFormatError(path, f"invalid video entry: {e}", field=f"videos[{i}]") from e
    cats = sorted({int(c["id"]) for c in data["categories"]})
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
    has_occ = bool(data["annotations"]) and all("occlusion" in a for a in data["annotations"])
    tracks: dict[int, list[YtvisTrack]] = {vid: [] for vid in videos}
    for i, a in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        try:
            vid, cat, segs, areas = int(a["video_id"]), int(a["category_id"]), a["segmentations"], a["areas"]
            ann_id = int(a["id"])
        except (KeyError, TypeError) as e:
            raise DataFormatError(path, f"missing field {e}", field=where) from e
        if vid not in videos:
            raise DataFormatError(path, f"video_id {vid} is not among the videos", field=where)
        if cat not in names:
            continue  # getAnnIds(catIds=...) drops it in the official code as well
        v = videos[vid]
        rles = [
            _gt_rle(s, v.height, v.width, path, f"{where}.segmentations[{t}]") if s else None
            for t, s in enumerate(segs)
        ]
        occ = _occlusion_score(a["occlusion"], path, f"{where}.occlusion") if has_occ else None
        frames, counts = compact_masks(rles, v, path, f"{where}.segmentations")
        track = YtvisTrack(
            ann_id,
            cat,
            len(rles),
            frames,
            counts,
            (v.height, v.width),
            _mean_truthy(areas),
            bool(a.get("iscrowd", 0)),
            occ_score=occ,
            where=where,
        )
        tracks[vid].append(track)
    for vid, video_tracks in tracks.items():
        measure_tracks(video_tracks, videos[vid], path)
    return YtvisGroundTruth(str(path), videos, cats, names, tracks, has_occ)


def compact_masks(segs: list, video: YtvisVideo, path: str | Path, where: str) -> tuple[list[int], list[bytes]]:
    """The frames of `segs` that have a mask and its counts as bytes; each mask must be a compressed RLE
    `{size, counts}` of the video's size (the string itself is checked by `measure_tracks`)."""
    frames = [t for t, s in enumerate(segs) if s]
    size = [video.height, video.width]
    try:  # the common case in a few comprehensions; `_check_rle_fields` finds and words an error
        counts = [segs[t]["counts"] for t in frames]
        if all(segs[t]["size"] == size for t in frames) and all(type(c) is str for c in counts):
            return frames, [c.encode() for c in counts]
    except (TypeError, KeyError, AttributeError):
        pass
    for t in frames:
        _check_rle_fields(segs[t], video, path, f"{where}[{t}]")
    counts = [segs[t]["counts"] for t in frames]
    return frames, [c.encode() if isinstance(c, str) else c for c in counts]


def _check_rle_fields(seg: Any, video: YtvisVideo, path: str | Path, where: str) -> None:
    """A segmentation must be a compressed RLE `{size, counts}` of the video's size."""
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise DataFormatError(path, "expected a compressed RLE {size, counts}", field=where)
    counts = seg["counts"]
    if isinstance(counts, list):
        # The official loadRes fails in maskUtils.area on uncompressed RLE.
        raise DataFormatError(path, "uncompressed RLE (counts is a list); results need compressed RLE", field=where)
    if not isinstance(counts, (str, bytes)):
        raise DataFormatError(path, f"counts must be a string, got {type(counts).__name__}", field=f"{where}.counts")
    size = seg["size"]
    if not isinstance(size, (list, tuple)) or list(size) != [video.height, video.width]:
        # Deviation: the official code silently drops such a frame from the IoU (merge of different
        # sizes is empty); a mask of the wrong size is always a bug, so say so.
        raise DataFormatError(
            path, f"mask size {size} differs from video {video.id} size [{video.height}, {video.width}]", field=where
        )


def _areas(rles: list[dict]) -> np.ndarray:
    """[N] int64 `mask_utils.area`, in calls of at most 255 masks: pycocotools 2.0.x sizes a scratch array
    with `np.array((n,), dtype=np.uint8)`, which numpy 2 refuses for n > 255."""
    return np.concatenate([mask_utils.area(rles[i : i + 255]).astype(np.int64) for i in range(0, len(rles), 255)])


def _first_counts(blob: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Characters and value of the first count of each RLE string starting at `starts` in `blob` (the
    characters minus 48, followed by at least 6 more): a count is 5-bit groups, low first, with the 0x20
    "more" bit on all but the last, whose 0x10 bit is the sign. 0 characters where it runs past 6 groups
    (pycocotools' C reads no longer count correctly)."""
    groups = blob[starts[:, None] + np.arange(6)].astype(np.int64)
    ends = groups < 32
    n = np.where(ends.any(axis=1), ends.argmax(axis=1) + 1, 0)
    inside = np.arange(6) < n[:, None]
    value = (((groups & 31) << (5 * np.arange(6))) * inside).sum(axis=1)
    last = groups[np.arange(len(n)), np.maximum(n - 1, 0)]
    return n, value - ((last & 16) != 0) * (1 << (5 * n))


def measure_tracks(tracks: Sequence[YtvisTrack], video: YtvisVideo, path: str | Path) -> None:
    """Check the masks of a video's tracks and set each `track.frame_areas` ([length] int64, 0 where absent).

    Every string must be a compressed RLE (characters '0'..'o', ending a count) whose counts c0, c1, ...
    add up to exactly H * W pixels: pycocotools reads any string, and counts of the wrong total make its
    IoU wrong or never end. pycocotools counts the area c1 + c3 + ...; for the rest it counts the area of
    "00" + the string after c0, whose counts are 0, 0, c1, c2, c3, ... (the two zeros take the place of
    c0; from the fourth count on a string stores differences to the count two before, which the shift by
    one keeps, and the third, stored as it is, lands after a zero), i.e. c2 + c4 + ...; so the total is
    area + that area + c0, for the cost of two pycocotools passes and a few numpy operations per video.
    """
    todo = [tr for tr in tracks if tr.frame_areas is None]
    strings = [c for tr in todo for c in tr.counts]
    fg = np.zeros(0, np.int64)
    if strings:
        lengths = np.fromiter(map(len, strings), np.int64, len(strings))
        starts = np.cumsum(lengths) - lengths
        blob = np.frombuffer(b"".join(strings) + b"0" * 6, np.uint8) - np.uint8(48)
        n0, c0 = _first_counts(blob, starts)
        bad = (lengths == 0) | (n0 == 0) | (blob[starts + lengths - 1] >= 32) | (np.maximum.reduceat(blob, starts) > 63)
        if bad.any():  # characters outside '0'..'o', or a string that does not end a count
            _raise_at(todo, int(np.flatnonzero(bad)[0]), path, "not a compressed RLE string (characters '0'..'o')")
        size = [video.height, video.width]
        fg = _areas([{"size": size, "counts": c} for c in strings])
        rest = _areas([{"size": size, "counts": b"00" + c[k:]} for c, k in zip(strings, n0.tolist())])
        total = fg + rest + c0
        wrong = np.flatnonzero(total != video.height * video.width)
        if wrong.size:
            i = int(wrong[0])
            _raise_at(
                todo,
                i,
                path,
                f"RLE counts cover {int(total[i])} pixels, the {video.height}x{video.width} "
                f"mask has {video.height * video.width}",
            )
    k = 0
    for tr in todo:
        tr.frame_areas = np.zeros(tr.length, np.int64)
        tr.frame_areas[tr.frames] = fg[k : k + len(tr.frames)]
        k += len(tr.frames)


def _raise_at(tracks: Sequence[YtvisTrack], i: int, path: str | Path, reason: str) -> None:
    """`DataFormatError` naming the counts of the i-th mask of `tracks` (in track, then frame order)."""
    for tr in tracks:
        if i < len(tr.frames):
            raise DataFormatError(path, reason, field=f"{tr.where}.segmentations[{tr.frames[i]}].counts")
        i -= len(tr.frames)


def _score(value: Any, path: str | Path, where: str) -> float:
    """A detection score must be a finite JSON number (the official code sorts NaN and strings silently)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataFormatError(path, f"score must be a finite number, got {value!r}", field=f"{where}.score")
    return float(value)


def parse_detections(
    entries: Sequence[Any],
    gt: YtvisGroundTruth,
    path: str | Path = "<results>",
    first_id: int = 1,
    check_masks: bool = True,
) -> dict[int, list[YtvisTrack]]:
    """Official result entries -> detections grouped by video, in file order, ids `first_id`, ... (loadRes).

    Detections of categories that are not in the GT are dropped silently, as the official code does.
    `check_masks=False` checks only the fields of each mask here and leaves its counts to `measure_detections`
    (run later, in the worker of each video).
    A `segmentations` list shorter than its video is evaluated as the official code does (its `zip`
    stops at the shorter list), with one warning for the file.
    """
    by_video: dict[int, list[YtvisTrack]] = {}
    checked: dict[int, list[YtvisTrack]] = {}  # every detection, those of unknown categories too
    short: list[str] = []
    for i, e in enumerate(entries):
        where = f"[{i}]"
        try:
            vid, cat, score, segs = int(e["video_id"]), int(e["category_id"]), e["score"], e["segmentations"]
        except (KeyError, TypeError, ValueError) as err:
            raise DataFormatError(
                path, f"result entry needs video_id, category_id, score, segmentations ({err})", field=where
            ) from err
        score = _score(score, path, where)
        video = gt.videos.get(vid)
        if video is None:
            raise DataFormatError(path, f"video_id {vid} is not in the ground truth", field=f"{where}.video_id")
        if not isinstance(segs, list):
            raise DataFormatError(path, "segmentations must be a list", field=f"{where}.segmentations")
        if len(segs) < video.length:
            short.append(f"{where} ({len(segs)} of {video.length} frames of video {vid})")
        frames, counts = compact_masks(segs, video, path, f"{where}.segmentations")
        size = (video.height, video.width)
        track = YtvisTrack(first_id + i, cat, len(segs), frames, counts, size, 0.0, score=score, where=where)
        if check_masks:
            checked.setdefault(vid, []).append(track)
        if cat in gt.category_names:
            by_video.setdefault(vid, []).append(track)
    for vid, tracks in checked.items():
        measure_detections(tracks, gt.videos[vid], path)
    if short:
        more = f" and {len(short) - 1} more" if len(short) > 1 else ""
        warnings.warn(
            f"{path}: segmentations shorter than the video in {short[0]}{more}; the missing frames are not "
            "counted (as in the official code)",
            stacklevel=2,
        )
    return by_video


def measure_detections(dets: Sequence[YtvisTrack], video: YtvisVideo, path: str | Path) -> None:
    """`measure_tracks`, then each `avg_area` as loadRes computes it: the mean of the non-zero uint32 areas."""
    todo = [d for d in dets if d.frame_areas is None]
    measure_tracks(todo, video, path)
    for d in todo:
        areas = d.frame_areas
        assert areas is not None  # set by measure_tracks
        d.avg_area = _mean_truthy(areas[areas > 0].astype(np.uint32))


# --- per-video evaluation ---------------------------------------------------------------------------------


def video_iou(dets: Sequence[YtvisTrack], gts: Sequence[YtvisTrack]) -> np.ndarray:
    """[D, G] video IoU: sum_t I_t / sum_t U_t over the zipped frames of each pair (0 where U = 0), where it
    reaches the lowest IoU threshold 0.5; 0 for the pairs below it (no threshold can tell them from 0).

    Tracks must be measured (`frame_areas`). As I_t <= min(area(d), area(g)) and U_t >= max(...), a pair
    whose sum of I so far plus the later frames' mins is below half its sum of U so far plus the later
    frames' maxes is below 0.5, and is dropped: before the first frame (areas alone) and after each frame.
    Intersections come from pycocotools' crowd IoU (I / area(d)) times area(d), which is exact for integer
    pixel counts, one call per frame for the pairs still open there; unions are area(d) + area(g) - I
    over the frames both lists have.
    """
    D, G = len(dets), len(gts)
    if D == 0 or G == 0:
        return np.zeros((D, G))
    len_d = np.array([d.length for d in dets])
    len_g = np.array([g.length for g in gts])
    n = int(min(len_d.max(), len_g.max()))
    if n == 0:
        return np.zeros((D, G))
    area_d = np.zeros((D, n), np.int64)  # per-frame areas, 0 past the end of a track
    area_g = np.zeros((G, n), np.int64)
    for area, tracks, lengths in ((area_d, dets, len_d), (area_g, gts, len_g)):
        for k, track in enumerate(tracks):
            assert track.frame_areas is not None  # a precondition: measured tracks
            area[k, : min(n, lengths[k])] = track.frame_areas[:n]
    both = np.minimum(np.minimum(len_d[:, None], len_g[None, :]), n)  # zip() stops at the shorter list
    zipped = np.arange(n) < both[:, :, None]
    lo = np.where(zipped, np.minimum(area_d[:, None], area_g[None]), 0)  # [D, G, n]: I_t <= lo, U_t >= hi
    hi = np.where(zipped, np.maximum(area_d[:, None], area_g[None]), 0)
    lo_rest, hi_rest = lo.sum(axis=2), hi.sum(axis=2)  # over the frames not done yet
    done = np.zeros((D, G), np.int64)  # sum of I_t + U_t (= lo + hi) over the frames done
    inter = np.zeros((D, G), np.int64)
    open_ = 2 * lo_rest >= hi_rest
    segs_d = [d.segmentations for d in dets]
    segs_g = [g.segmentations for g in gts]
    for t in range(n):
        present = open_ & (lo[:, :, t] > 0)
        if present.any():
            di = np.flatnonzero(present.any(axis=1))
            gi = np.flatnonzero(present.any(axis=0))
            crowd_iou = mask_utils.iou([segs_d[k][t] for k in di], [segs_g[k][t] for k in gi], [1] * len(gi))
            inter[np.ix_(di, gi)] += np.rint(crowd_iou * area_d[di, t, None]).astype(np.int64)
        lo_rest -= lo[:, :, t]
        hi_rest -= hi[:, :, t]
        done += lo[:, :, t] + hi[:, :, t]
        open_ &= 2 * (inter + lo_rest) >= done - inter + hi_rest
    union = done - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(open_ & (union > 0), inter / np.maximum(union, 1), 0.0)


@dataclass
class CategoryEval:
    """Matching result of one (video, category) under every setting (area x occlusion range).

    Attributes:
        scores: [D] detection scores, sorted (stable) and truncated to 100.
        matched: [S, T, D] bool, the detection's matched GT id is non-zero (official `dtMatches != 0`).
        ignored: [S, T, D] bool, official `dtIgnore`.
        num_gt: [S] number of non-ignored GTs.
    """

    scores: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    num_gt: np.ndarray


def _greedy_match(
    ious: list[list[float]], gt_ids: list[int], gt_ignore: list[int], gt_crowd: list[int], n_det: int
) -> tuple[np.ndarray, np.ndarray]:
    """COCO greedy matching (evaluateVid) for GTs already sorted with ignored last.

    Returns dtm [T, D] (matched GT id, 0 = unmatched) and dtIg [T, D] (matched to an ignored GT).
    """
    T = len(IOU_THRESHOLDS)
    dtm = np.zeros((T, n_det), np.int64)
    dt_ig = np.zeros((T, n_det), bool)
    G = len(gt_ids)
    if G == 0 or n_det == 0:
        return dtm, dt_ig
    row_max = [max(row) for row in ious]
    for ti, t in enumerate(IOU_THRESHOLDS.tolist()):
        gt_taken = [False] * G
        # a detection with no IoU reaching the threshold matches nothing and changes nothing: skipped
        for d in [d for d in range(n_det) if row_max[d] >= min(t, 1 - 1e-10)]:
            best = min(t, 1 - 1e-10)
            m = -1
            row = ious[d]
            for g in range(G):
                if gt_taken[g] and not gt_crowd[g]:
                    continue
                if m > -1 and gt_ignore[m] == 0 and gt_ignore[g] == 1:
                    break
                if row[g] < best:
                    continue
                best = row[g]
                m = g
            if m == -1:
                continue
            dt_ig[ti, d] = bool(gt_ignore[m])
            dtm[ti, d] = gt_ids[m]
            gt_taken[m] = True
    return dtm, dt_ig


def evaluate_video_category(
    dets: Sequence[YtvisTrack], gts: Sequence[YtvisTrack], settings: Sequence[tuple[str, str]]
) -> CategoryEval:
    """Official computeIoU + evaluateVid of one (video, category) for each (area, occlusion) setting."""
    order = np.argsort([-d.score for d in dets], kind="mergesort")[: MAX_DETS[-1]]
    dets = [dets[i] for i in order]
    ious = video_iou(dets, gts)
    D = len(dets)
    S, T = len(settings), len(IOU_THRESHOLDS)
    matched = np.zeros((S, T, D), bool)
    ignored = np.zeros((S, T, D), bool)
    num_gt = np.zeros(S, np.int64)
    det_area = np.array([d.avg_area for d in dets], np.float64)
    for s, (area_lbl, occ_lbl) in enumerate(settings):
        lo, hi = AREA_RANGES[area_lbl]
        olo, ohi = OCCLUSION_RANGES[occ_lbl]
        # `ignore` is overwritten by `iscrowd`; only GTs are filtered by occlusion (OVIS)
        g_ig = [
            int(
                g.iscrowd
                or g.avg_area < lo
                or g.avg_area > hi
                or (g.occ_score is not None and (g.occ_score < olo or g.occ_score > ohi))
            )
            for g in gts
        ]
        gind = np.argsort(g_ig, kind="mergesort")
        sorted_ious = ious[:, gind].tolist()
        dtm, dt_ig = _greedy_match(
            sorted_ious,
            [gts[i].id for i in gind],
            [g_ig[i] for i in gind],
            [int(gts[i].iscrowd) for i in gind],
            D,
        )
        out_of_range = (det_area < lo) | (det_area > hi)
        matched[s] = dtm != 0
        ignored[s] = dt_ig | ((dtm == 0) & out_of_range[None, :])
        num_gt[s] = len(g_ig) - sum(g_ig)
    return CategoryEval(np.array([d.score for d in dets], np.float64), matched, ignored, num_gt)


def evaluate_video(
    dets: Sequence[YtvisTrack], gts: Sequence[YtvisTrack], settings: Sequence[tuple[str, str]]
) -> dict[int, CategoryEval]:
    """All (video, category) cells of one video that have a GT or a detection."""
    cats = sorted({d.category_id for d in dets} | {g.category_id for g in gts})
    return {
        c: evaluate_video_category(
            [d for d in dets if d.category_id == c], [g for g in gts if g.category_id == c], settings
        )
        for c in cats
    }


def _evaluate_video_task(task: tuple) -> tuple[int, dict[int, CategoryEval]]:
    vid, video, path, dets, gts, settings = task
    measure_detections(dets, video, path)
    return vid, evaluate_video(dets, gts, settings)


# --- accumulation -----------------------------------------------------------------------------------------


@dataclass
class YtvisMetrics:
    """Summary on the official 0-1 scale (-1 where the official code prints -1: no GT in the setting).

    `stats` is the official `stats` vector (12 values for YouTube-VIS, 18 for OVIS).
    `per_class_ap` maps category name to AP (NaN for a category without GT), as detectron2 reports it.
    """

    AP: float
    AP50: float
    AP75: float
    APs: float
    APm: float
    APl: float
    AR1: float
    AR10: float
    AR100: float
    ARs: float
    ARm: float
    ARl: float
    stats: list[float]
    per_class_ap: dict[str, float] = field(default_factory=dict)
    occlusion: dict[str, float] | None = None
    num_videos: int = 0
    num_dropped_detections: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: float(getattr(self, k))
            for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
        }
        if self.occlusion is not None:
            out.update({k: float(v) for k, v in self.occlusion.items()})
        out["stats"] = [float(s) for s in self.stats]
        out["per_class"] = {k: (None if math.isnan(v) else float(v)) for k, v in self.per_class_ap.items()}
        out["num_videos"] = self.num_videos
        out["num_dropped_detections"] = self.num_dropped_detections
        return out


class YtvisEvaluator:
    """Streaming YouTube-VIS / OVIS evaluator.

    Usage: `ev = YtvisEvaluator(YtvisGroundTruth.load(path)); ev.add_video(vid, entries) ...;
    metrics = ev.summarize()`. Videos of the GT that are never added count as videos without detections
    (their GT objects are misses), as in the official code.
    """

    def __init__(self, gt: YtvisGroundTruth, ovis: bool | None = None):
        self.gt = gt
        self.ovis = gt.has_occlusion if ovis is None else ovis
        if self.ovis and not gt.has_occlusion:
            raise DataFormatError(gt.path, "OVIS evaluation needs an `occlusion` list on every annotation")
        if self.ovis:
            for tracks in gt.tracks.values():
                for g in tracks:
                    # a crowd GT is ignored in every occlusion range, so its score never matters
                    if g.occ_score is None and not g.iscrowd:
                        raise DataFormatError(
                            gt.path, f"annotation {g.id}: every frame's occlusion is null", field="occlusion"
                        )
        self.settings = _OVIS_SETTINGS if self.ovis else _YTVIS_SETTINGS
        self._per_video: dict[int, dict[int, CategoryEval]] = {}
        self._next_id = 1
        self.num_dropped = 0

    def add_video(self, video_id: int, entries: Sequence[Mapping[str, Any]]) -> None:
        """Evaluate one video's result entries `{video_id, category_id, score, segmentations}`."""
        for e in entries:
            if int(e["video_id"]) != video_id:
                raise DataFormatError(None, f"entry of video {e['video_id']} given for video {video_id}")
        dets = parse_detections(entries, self.gt, f"<video {video_id}>", self._next_id)
        self._next_id += len(entries)
        kept = dets.get(video_id, [])
        self.num_dropped += len(entries) - len(kept)
        self.add_video_tracks(video_id, kept)

    def add_video_result(self, result: VideoResult, category_ids: list[int] | None = None) -> None:
        """Evaluate a predictor's `VideoResult` (contiguous class ids mapped by `category_ids`)."""
        self.add_video(result.video_id, result.to_ytvis(category_ids))

    def add_video_tracks(self, video_id: int, dets: list[YtvisTrack]) -> None:
        if video_id not in self.gt.videos:
            raise DataFormatError(None, f"video_id {video_id} is not in the ground truth {self.gt.path}")
        if video_id in self._per_video:
            raise DataFormatError(None, f"video {video_id} was added twice")
        measure_detections(dets, self.gt.videos[video_id], f"<video {video_id}>")
        self._per_video[video_id] = evaluate_video(dets, self.gt.tracks[video_id], self.settings)

    def add_evaluated(self, video_id: int, cells: dict[int, CategoryEval]) -> None:
        """Add a video evaluated elsewhere (a worker process) by `evaluate_video`."""
        if video_id in self._per_video:
            raise DataFormatError(None, f"video {video_id} was added twice")
        self._per_video[video_id] = cells

    def summarize(self) -> YtvisMetrics:
        for vid in self.gt.videos:
            if vid not in self._per_video:
                self._per_video[vid] = evaluate_video([], self.gt.tracks[vid], self.settings)
        precision, recall = _accumulate(self._per_video, self.gt.category_ids, len(self.settings))
        return _summarize(precision, recall, self.settings, self.gt, len(self._per_video), self.num_dropped)


def _accumulate(
    per_video: dict[int, dict[int, CategoryEval]], category_ids: list[int], n_settings: int
) -> tuple[np.ndarray, np.ndarray]:
    """Official accumulate(): precision [T, R, K, S, M] and recall [T, K, S, M], -1 where no GT."""
    T, R, K, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(category_ids), len(MAX_DETS)
    precision = -np.ones((T, R, K, n_settings, M))
    recall = -np.ones((T, K, n_settings, M))
    videos = sorted(per_video)  # the official concatenation order: sorted video ids
    for k, cat in enumerate(category_ids):
        cells = [per_video[v][cat] for v in videos if cat in per_video[v]]
        if not cells:
            continue
        for s in range(n_settings):
            npig = int(sum(c.num_gt[s] for c in cells))
            if npig == 0:
                continue
            for m, max_det in enumerate(MAX_DETS):
                scores = np.concatenate([c.scores[:max_det] for c in cells])
                inds = np.argsort(-scores, kind="mergesort")
                dtm = np.concatenate([c.matched[s, :, :max_det] for c in cells], axis=1)[:, inds]
                dt_ig = np.concatenate([c.ignored[s, :, :max_det] for c in cells], axis=1)[:, inds]
                tps = dtm & ~dt_ig
                fps = ~dtm & ~dt_ig
                tp_sum = np.cumsum(tps, axis=1).astype(np.float64)
                fp_sum = np.cumsum(fps, axis=1).astype(np.float64)
                nd = tp_sum.shape[1]
                if nd == 0:
                    recall[:, k, s, m] = 0
                    precision[:, :, k, s, m] = 0
                    continue
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                recall[:, k, s, m] = rc[:, -1]
                # precision envelope: running max from the right (the official backwards loop)
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(T):
                    idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    q = np.zeros(R)
                    ok = idx < nd  # thresholds beyond the last recall stay 0 (the official try/except)
                    q[ok] = pr[t, idx[ok]]
                    precision[t, :, k, s, m] = q
    return precision, recall


def _mean_valid(s: np.ndarray) -> float:
    valid = s[s > -1]
    return -1.0 if len(valid) == 0 else float(np.mean(valid))


def _summarize(
    precision: np.ndarray,
    recall: np.ndarray,
    settings: Sequence[tuple[str, str]],
    gt: YtvisGroundTruth,
    num_videos: int,
    num_dropped: int,
) -> YtvisMetrics:
    def ap(setting: tuple[str, str] = ("all", "all"), iou: float | None = None, max_det: int = 100) -> float:
        s = precision
        if iou is not None:
            s = s[np.where(iou == IOU_THRESHOLDS)[0]]
        return _mean_valid(s[:, :, :, [settings.index(setting)], [MAX_DETS.index(max_det)]])

    def ar(setting: tuple[str, str] = ("all", "all"), max_det: int = 100) -> float:
        return _mean_valid(recall[:, :, [settings.index(setting)], [MAX_DETS.index(max_det)]])

    # In the order of the official `stats` vector; the keys name the `YtvisMetrics` fields.
    ytvis = {
        "AP": ap(),
        "AP50": ap(iou=0.5),
        "AP75": ap(iou=0.75),
        "APs": ap(("small", "all")),
        "APm": ap(("medium", "all")),
        "APl": ap(("large", "all")),
    }
    recalls = {
        "AR1": ar(max_det=1),
        "AR10": ar(max_det=10),
        "AR100": ar(),
        "ARs": ar(("small", "all")),
        "ARm": ar(("medium", "all")),
        "ARl": ar(("large", "all")),
    }
    occlusion = None
    stats = [*ytvis.values(), *recalls.values()]
    if ("all", "light") in settings:
        occ_ap = [ap(("all", o)) for o in ("light", "medium", "heavy")]
        occ_ar = [ar(("all", o)) for o in ("light", "medium", "heavy")]
        occlusion = dict(zip(("APso", "APmo", "APho", "ARso", "ARmo", "ARho"), occ_ap + occ_ar))
        stats = [*ytvis.values(), *occ_ap, *recalls.values(), *occ_ar]
    per_class = {}
    s_all = settings.index(("all", "all"))
    for k, cat in enumerate(gt.category_ids):
        p = precision[:, :, k, s_all, -1]
        p = p[p > -1]
        per_class[gt.category_names[cat]] = float(np.mean(p)) if p.size else float("nan")
    return YtvisMetrics(
        **ytvis,
        **recalls,
        stats=stats,
        per_class_ap=per_class,
        occlusion=occlusion,
        num_videos=num_videos,
        num_dropped_detections=num_dropped,
    )


def evaluate_ytvis(
    gt: str | Path | YtvisGroundTruth,
    results: str | Path | Sequence[Mapping[str, Any]],
    ovis: bool | None = None,
    workers: int | None = None,
) -> YtvisMetrics:
    """Evaluate a results file (or list) against a GT json, videos spread over `workers` processes.

    `ovis=None` turns on the OVIS occlusion metrics when every GT annotation has `occlusion`.
    """
    gt = gt if isinstance(gt, YtvisGroundTruth) else YtvisGroundTruth.load(gt)
    path = results if isinstance(results, (str, Path)) else "<results>"
    entries = load_json(results) if isinstance(results, (str, Path)) else results
    if not isinstance(entries, list):
        raise DataFormatError(path, "expected a JSON list of result entries")
    if not entries:
        raise DataFormatError(path, "no result entries (the official code fails on an empty list)")
    dets = parse_detections(entries, gt, path, check_masks=False)  # masks are checked in the workers
    ev = YtvisEvaluator(gt, ovis)
    ev.num_dropped = len(entries) - sum(len(v) for v in dets.values())
    del entries
    workers = default_workers() if workers is None else workers
    tasks = ((vid, gt.videos[vid], path, dets.get(vid, []), gt.tracks[vid], ev.settings) for vid in sorted(gt.videos))
    for vid, cells in ordered_map(_evaluate_video_task, tasks, workers):
        ev.add_evaluated(vid, cells)
    return ev.summarize()
