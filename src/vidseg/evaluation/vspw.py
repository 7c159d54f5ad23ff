"""VSPW mIoU and mVC_k, number for number as `VSPW_code` (`evaluator_test.py`, `VC_perclip.py`).

* mIoU: one dataset-wide 124 x 124 confusion matrix over every GT frame of every listed video (float64
  counts as `utils.Evaluator`); `IoU_c = diag / (row + col - diag)`; the mean is over classes present in
  the GT (`nansum(IoU * isval) / isval.sum()`), so predicted-only classes do not count.
* GT labels: the official script expects GT already remapped with the dataset README convention
  (raw 0 "others" and 255 -> void 255, classes 1..124 -> 0..123). `raw_gt_labels=True` applies that
  remap on the fly, for the GT PNGs as the dataset ships them; it is applied to mIoU and mVC alike,
  which is what evaluating remapped files gives.
* mVC_k: for each video with T > k frames (sorted file names), windows i = 0 .. T-k-1 (T-k windows: the
  official loop drops the last possible window) cover frames i .. i+k-1; `acc = |gt_common & pred_common|
  / |gt_common|` where `*_common` are the pixels whose value is the same in every frame of the window
  (void included; the prediction is not compared with the GT); mVC_k = nanmean over all windows of all
  videos (window-weighted). One k per computation: k = 8 and k = 16 are kept apart (unlike DVIS++'s copy,
  whose "VC16" also averages the VC8 windows).

Streaming: frames arrive one at a time; a video keeps per pixel only the frame of its last change (GT
alone, and GT or prediction), so a window is consistent where that change came no later than its first
frame; never k frames.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.errors import DataFormatError
from vidseg.evaluation._files import check_same_size, default_workers, ordered_map
from vidseg.io.imageio import read_label_png
from vidseg.structures import FrameResult, remap_raw_vspw_labels, semantic_to_vspw_png

NUM_CLASSES = 124
VC_WINDOWS = (8, 16)


def _as_label_u8(label: np.ndarray, num_classes: int) -> np.ndarray:
    """GT labels as uint8 with everything outside 0..C-1 set to 255 (void), for the 256 x 256 histogram."""
    if label.dtype == np.uint8:
        return label
    return np.where((label >= 0) & (label < num_classes), label, 255).astype(np.uint8)


@dataclass
class VspwVideoStats:
    """Per-video statistics: its share of the confusion matrix and its window accuracies per k."""

    name: str
    num_frames: int
    confusion: np.ndarray  # [C, C] int64, rows = GT, cols = prediction
    window_accs: dict[int, list[float]]


class _LastChange:
    """Per pixel the frame of its last change, and how many pixels last changed at each frame.

    Label maps are piecewise constant, so a frame changes few pixels: only those are touched, and "how
    many pixels stayed constant since frame s" is a sum over the per-frame counts, not a pass over the image.
    """

    def __init__(self) -> None:
        self.frame = np.zeros(0, np.uint16)  # [H * W] frame index of the last change (0: never changed)
        self.count = np.zeros(1, np.int64)  # [T] pixels whose last change is at frame t

    def start(self, num_pixels: int, length: int) -> None:
        """`num_pixels` real pixels; `length` >= num_pixels flat indices (the rest is padding)."""
        self.frame = np.zeros(length, np.uint16)
        self.count = np.array([num_pixels], np.int64)

    def record(self, t: int, moved: np.ndarray) -> None:
        """The pixels at the flat indices `moved` changed at frame t."""
        if t > np.iinfo(self.frame.dtype).max:
            self.frame = self.frame.astype(np.int64)
        self.count = np.append(self.count, moved.size)
        self.count[:t] -= np.bincount(self.frame[moved], minlength=t)[:t]
        self.frame[moved] = t

    def at_or_before(self, s: int) -> int:
        """Pixels whose last change is at frame s or earlier (unchanged over frames s .. now)."""
        return int(self.count[: s + 1].sum())


def _padded_to_words(flat: np.ndarray) -> np.ndarray:
    """[N] uint8 padded with void (255) to a multiple of 8 pixels, so that it can be viewed as uint64 words
    (the padding never changes, so it never counts as a change)."""
    pad = -flat.size % 8
    return np.concatenate([flat, np.full(pad, 255, np.uint8)]) if pad else np.ascontiguousarray(flat)


def _pair_keys(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(GT, prediction) uint8 pairs as uint16 keys `256 gt + pred`, the cells of the joint histogram."""
    return (gt.astype(np.uint16) << 8) | pred


class VspwVideoAccumulator:
    """Consumes one video frame by frame; memory: the previous frame, its joint (GT, prediction) histogram
    and two last-change maps.

    Label maps are piecewise constant, so consecutive frames differ in few pixels: a frame's histogram
    is the previous one updated at the pixels where GT or prediction changed, the same pixels the
    consistency needs; only the first frame of a video is counted in full.
    """

    def __init__(
        self,
        name: str,
        num_classes: int = NUM_CLASSES,
        windows: Sequence[int] = VC_WINDOWS,
        raw_gt_labels: bool = False,
    ):
        self.name = name
        self.num_classes = num_classes
        self.windows = tuple(windows)
        self.raw_gt_labels = raw_gt_labels
        if not 0 < num_classes <= 255:
            raise ValueError(f"num_classes must be 1..255 (uint8 label PNGs, 255 = void), got {num_classes}")
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        self._hist = np.zeros(256 * 256, np.int64)  # joint histogram of the last frame's pair keys
        self._prev: tuple[np.ndarray, np.ndarray] | None = None  # last frame's [H * W] uint8 GT, prediction
        self._changes = (_LastChange(), _LastChange())  # GT alone; GT or prediction
        self._accs: dict[int, list[float]] = {k: [] for k in self.windows}
        self.num_frames = 0

    def add_frame(self, gt: np.ndarray, pred: np.ndarray, where: str | Path | None = None) -> None:
        """gt: [H, W] GT labels; pred: [H, W] class indices 0..C-1 (single channel).

        Both are compared as uint8: GT values outside 0..C-1 are void (255) and prediction values outside
        0..255 (allowed on void GT only) are 255, as in the PNGs the official scripts read.
        """
        if pred.ndim != 2:
            raise DataFormatError(where, f"prediction must be a single-channel class map, got shape {pred.shape}")
        where = where or f"<{self.name} frame {self.num_frames}>"
        check_same_size(pred, gt.shape, where)
        gt = (remap_raw_vspw_labels(gt) if self.raw_gt_labels else _as_label_u8(gt, self.num_classes)).ravel()
        pred = self._pred_u8(gt, pred.ravel(), where)
        num_pixels = gt.size
        gt, pred = _padded_to_words(gt), _padded_to_words(pred)
        t = self.num_frames
        last_gt, last_any = self._changes
        if self._prev is None:
            self._hist = np.bincount(_pair_keys(gt, pred), minlength=256 * 256)
            self._check_classes(self._hist.reshape(256, 256)[: self.num_classes], where)
            last_gt.start(num_pixels, gt.size)
            last_any.start(num_pixels, gt.size)
        else:
            # Compared 8 pixels (one uint64) at a time; in a changed word the unchanged pixels add and remove
            # the same (GT, prediction) key, so the histogram needs no exact per-pixel test.
            prev_gt, prev_pred = self._prev
            words = np.flatnonzero(
                (gt.view(np.uint64) != prev_gt.view(np.uint64)) | (pred.view(np.uint64) != prev_pred.view(np.uint64))
            )
            g, p, pg, pp = (a.view(np.uint64)[words].view(np.uint8) for a in (gt, pred, prev_gt, prev_pred))
            added = np.bincount(_pair_keys(g, p), minlength=256 * 256)
            self._check_classes(added.reshape(256, 256)[: self.num_classes], where)
            self._hist += added
            self._hist -= np.bincount(_pair_keys(pg, pp), minlength=256 * 256)
            pixels = (words[:, None] * 8 + np.arange(8)).ravel()
            gt_moved = g != pg
            last_gt.record(t, pixels[gt_moved])
            last_any.record(t, pixels[gt_moved | (p != pp)])
        self._prev = (gt, pred)
        self.confusion += self._hist.reshape(256, 256)[: self.num_classes, : self.num_classes]
        self._add_window_accs(t)
        self.num_frames += 1

    def _pred_u8(self, gt: np.ndarray, pred: np.ndarray, where: str | Path) -> np.ndarray:
        if pred.dtype == np.uint8:
            return pred
        outside = (pred < 0) | (pred > 255)
        if outside.any():
            labelled = gt < self.num_classes
            bad = pred[outside & labelled]
            if bad.size:
                self._bad_class(int(bad.max() if bad.max() > 255 else bad.min()), where)
            pred = np.where(outside, 255, pred)
        return pred.astype(np.uint8)

    def _check_classes(self, rows: np.ndarray, where: str | Path) -> None:
        """rows: [C, 256] (GT class, prediction) counts; a predicted class >= C on a labelled pixel is an error."""
        beyond = np.flatnonzero(rows[:, self.num_classes :].any(axis=0))
        if beyond.size:
            # Deviation: the official `c * gt + pred` silently spills an out-of-range class into the next
            # GT row (or crashes on the last row); an out-of-range class is always a bug, so say so.
            self._bad_class(int(beyond[-1]) + self.num_classes, where)

    def _bad_class(self, bad: int, where: str | Path) -> None:
        raise DataFormatError(
            where, f"prediction has class {bad} on a labelled pixel; classes are 0..{self.num_classes - 1}"
        )

    def _add_window_accs(self, t: int) -> None:
        last_gt, last_any = self._changes
        for k in self.windows:
            if t >= k - 1:
                # a window t-k+1 .. t is constant where the last change came at or before its first frame;
                # "GT and prediction both constant" is "the last change of either" that early
                first = t - k + 1
                gt_common, both = last_gt.at_or_before(first), last_any.at_or_before(first)
                with np.errstate(invalid="ignore", divide="ignore"):
                    self._accs[k].append(float(np.float64(both) / np.float64(gt_common)))

    def finish(self) -> VspwVideoStats:
        accs = {}
        for k in self.windows:
            # the official `range(T - k)` drops the window ending on the last frame; T <= k gives none
            accs[k] = self._accs[k][:-1] if self.num_frames > k else []
        return VspwVideoStats(self.name, self.num_frames, self.confusion, accs)


@dataclass
class VspwMetrics:
    """mIoU, mVC8, mVC16 (0-1) and the other `utils.Evaluator` outputs; per-class IoU (NaN if absent)."""

    mIoU: float
    mVC8: float
    mVC16: float
    Acc: float
    Acc_class: float
    FWIoU: float
    per_class_iou: list[float] = field(default_factory=list)
    num_videos: int = 0
    num_frames: int = 0
    num_windows: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "mIoU": num(self.mIoU),
            "mVC8": num(self.mVC8),
            "mVC16": num(self.mVC16),
            "Acc": num(self.Acc),
            "Acc_class": num(self.Acc_class),
            "FWIoU": num(self.FWIoU),
            "per_class": {str(c): num(v) for c, v in enumerate(self.per_class_iou)},
            "num_videos": self.num_videos,
            "num_frames": self.num_frames,
            "num_windows": {f"VC{k}": n for k, n in self.num_windows.items()},
        }


class VspwEvaluator:
    """Streaming VSPW evaluator: `add_video` per video (in list order), then `summarize`."""

    def __init__(
        self, num_classes: int = NUM_CLASSES, windows: Sequence[int] = VC_WINDOWS, raw_gt_labels: bool = False
    ):
        self.num_classes = num_classes
        self.windows = tuple(windows)
        self.raw_gt_labels = raw_gt_labels
        # int64 counts; the official Evaluator keeps float64, which is exact for counts below 2**53
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        self.window_accs: dict[int, list[float]] = {k: [] for k in self.windows}
        self.num_videos = 0
        self.num_frames = 0

    def video(self, name: str) -> VspwVideoAccumulator:
        """A per-video accumulator; pass its `finish()` to `add_stats`."""
        return VspwVideoAccumulator(name, self.num_classes, self.windows, self.raw_gt_labels)

    def add_video(self, name: str, frames: Iterable[tuple[np.ndarray, np.ndarray | FrameResult]]) -> None:
        """Frames in time order as (GT labels [H, W], prediction [H, W] or a `FrameResult` with `semantic`)."""
        acc = self.video(name)
        for gt, pred in frames:
            if isinstance(pred, FrameResult):
                if pred.semantic is None:
                    raise DataFormatError(None, f"video {name}: FrameResult without a semantic map")
                pred = semantic_to_vspw_png(pred.semantic)
            acc.add_frame(gt, pred)
        self.add_stats(acc.finish())

    def add_stats(self, stats: VspwVideoStats) -> None:
        self.confusion += stats.confusion
        for k in self.windows:
            self.window_accs[k].extend(stats.window_accs[k])
        self.num_videos += 1
        self.num_frames += stats.num_frames

    def summarize(self) -> VspwMetrics:
        cm = self.confusion.astype(np.float64)
        diag = np.diag(cm)
        rows, cols = cm.sum(axis=1), cm.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # empty classes give NaN, as officially
            iou = diag / (rows + cols - diag)
            isval = rows > 0
            miou = np.nansum(iou * isval) / isval.sum()
            acc = diag.sum() / cm.sum()
            acc_class = np.nanmean(diag / rows)
            freq = rows / cm.sum()
            fwiou = (freq[freq > 0] * iou[freq > 0]).sum()
        vc = {k: _nanmean(self.window_accs[k]) for k in self.windows}
        return VspwMetrics(
            mIoU=float(miou),
            mVC8=vc.get(8, float("nan")),
            mVC16=vc.get(16, float("nan")),
            Acc=float(acc),
            Acc_class=float(acc_class),
            FWIoU=float(fwiou),
            per_class_iou=[float(x) if r > 0 else float("nan") for x, r in zip(iou, rows)],
            num_videos=self.num_videos,
            num_frames=self.num_frames,
            num_windows={k: len(v) for k, v in self.window_accs.items()},
        )


def _nanmean(values: list[float]) -> float:
    arr = np.array(values, np.float64)
    if np.count_nonzero(~np.isnan(arr)) == 0:
        return float("nan")
    return float(np.nanmean(arr))


# --- files ------------------------------------------------------------------------------------------------


def vspw_video_list(gt_root: str | Path) -> tuple[Path, list[str]]:
    """(data dir, video names): `val.txt` if present (one name a line), else the folders of `data/`."""
    root = Path(gt_root)
    data = root / "data" if (root / "data").is_dir() else root
    if not data.is_dir():
        raise DataFormatError(root, "not a VSPW folder (expected data/<video>/mask/*.png)")
    listing = root / "val.txt"
    if listing.is_file():
        # the official `line[:-1]` chops the last character of an unterminated last line; strip instead
        names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    else:
        names = sorted(p.name for p in data.iterdir() if (p / "mask").is_dir())
    if not names:
        raise DataFormatError(root, "no videos found")
    return data, names


def _frame_names(mask_dir: Path) -> list[str]:
    if not mask_dir.is_dir():
        raise DataFormatError(mask_dir, "GT mask folder not found")
    return sorted(n for n in os.listdir(mask_dir) if not n.startswith("."))


def evaluate_vspw_video(task: tuple[str, Path, Path, bool, tuple[int, ...]]) -> VspwVideoStats:
    """One video from files: GT `data/<v>/mask/<f>.png`, prediction `<pred>/<v>/<f>.png`."""
    name, data_dir, pred_root, raw, windows = task
    acc = VspwVideoAccumulator(name, NUM_CLASSES, windows, raw)
    for frame in _frame_names(data_dir / name / "mask"):
        gt = read_label_png(data_dir / name / "mask" / frame)
        pred_path = pred_root / name / frame
        acc.add_frame(gt, read_label_png(pred_path), pred_path)
    return acc.finish()


def evaluate_vspw(
    gt_root: str | Path,
    pred_root: str | Path,
    raw_gt_labels: bool = True,
    windows: Sequence[int] = VC_WINDOWS,
    workers: int | None = None,
) -> VspwMetrics:
    """mIoU + mVC over a VSPW folder (`val.txt`, `data/<video>/mask/*.png`) and a prediction folder.

    `raw_gt_labels=True` (the default, as `vidseg eval`): GT PNGs as the dataset ships them, remapped on
    the fly; only that reproduces the official scripts on VSPW as shipped. False: GT already remapped.
    """
    data, names = vspw_video_list(gt_root)
    pred_root = Path(pred_root)
    if not pred_root.is_dir():
        raise DataFormatError(pred_root, "prediction folder not found")
    ev = VspwEvaluator(NUM_CLASSES, windows, raw_gt_labels)
    workers = default_workers() if workers is None else workers
    tasks = ((n, data, pred_root, raw_gt_labels, tuple(windows)) for n in names)
    for stats in ordered_map(evaluate_vspw_video, tasks, workers):
        ev.add_stats(stats)
    return ev.summarize()
