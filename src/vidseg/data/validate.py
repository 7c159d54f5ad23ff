"""`vidseg data validate`: read a whole dataset, open every file, count and list every problem.

Validation always reads in skip-bad mode so that it can list *every* problem, then decides:

* strict (default): usable only if there is no problem at all;
* `skip_bad`: usable if at least one video survives (the bad ones are reported as skipped).

Checks beyond the readers': every frame's size (header), every mask PNG decoded (size, ids listed in
`segments_info`, JSON areas equal to PNG areas, VSPW labels in range).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from vidseg.data.annotations import (
    PanopticDataset,
    PanopticVideo,
    SemanticDataset,
    SemanticVideo,
    VideoAnnotation,
    VisDataset,
)
from vidseg.data.formats.davis import read_davis
from vidseg.data.formats.panoptic import check_panoptic_ids
from vidseg.data.formats.vipseg import read_vipseg
from vidseg.data.formats.vspw import VOID, read_vspw
from vidseg.data.formats.ytvis import read_ytvis
from vidseg.errors import DataFormatError
from vidseg.io.imageio import image_size

VALIDATE_FORMATS = ("ytvis", "vipseg", "vspw", "davis")

V = TypeVar("V", bound=Sized)
R = TypeVar("R")


@dataclass
class ValidationReport:
    """Counts and problems of one dataset (all splits found under the path).

    Attributes:
        instances_per_class: class name -> number of tracks (ytvis/davis), of distinct segments per video
            (vipseg), or of frames containing the class (vspw).
        problems: one line per problem (file: field: message).
        warnings: non-fatal issues (e.g. DAVIS masks padded to the frame size).
        skipped_videos: videos dropped because of a problem.
    """

    format: str
    path: str
    splits: list[str] = field(default_factory=list)
    num_videos: int = 0
    num_frames: int = 0
    num_instances: int = 0
    instances_per_class: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped_videos: int = 0
    skip_bad: bool = False

    @property
    def usable(self) -> bool:
        if self.skip_bad:
            return self.num_videos > 0
        return self.num_videos > 0 and not self.problems

    def summary(self) -> str:
        lines = [
            f"{self.format} dataset at {self.path}" + (f" (splits: {', '.join(self.splits)})" if self.splits else ""),
            f"  videos: {self.num_videos}   frames: {self.num_frames}   instances: {self.num_instances}",
        ]
        if self.instances_per_class:
            lines.append("  per class: " + ", ".join(f"{k}={v}" for k, v in self.instances_per_class.items()))
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        verb = "skipped" if self.skip_bad else "problem"
        for p in self.problems:
            lines.append(f"  {verb}: {p}")
        if self.skipped_videos:
            lines.append(f"  {self.skipped_videos} video(s) skipped")
        lines.append("  OK: usable for training" if self.usable else "  NOT USABLE: fix the problems above"
                     + ("" if self.skip_bad else " or pass --skip-bad"))
        return "\n".join(lines)


def _add_counts(report: ValidationReport, counts: dict[str, int]) -> None:
    for name, n in counts.items():
        report.instances_per_class[name] = report.instances_per_class.get(name, 0) + n


def _find(path: Path, patterns: tuple[str, ...]) -> list[Path]:
    if path.is_file():
        return [path]
    found: list[Path] = []
    for pat in patterns:
        found += sorted(path.glob(pat))
    return found


def _readable(report: ValidationReport, videos: Iterable[V], check: Callable[[V], R]) -> Iterator[tuple[V, R]]:
    """Each video with what `check` found in it; a video `check` finds a problem in is left out (skipped),
    its problem recorded in `report`."""
    for v in videos:
        try:
            found = check(v)
        except DataFormatError as e:
            report.problems.append(str(e))
            report.skipped_videos += 1
            continue
        report.num_videos += 1
        report.num_frames += len(v)
        yield v, found


def _check_vis(ds: VisDataset, report: ValidationReport) -> None:
    names = {c.id: c.name for c in ds.categories}
    counts: Counter[str] = Counter()

    def check(v: VideoAnnotation) -> None:
        for t in range(len(v)):
            if image_size(v.frame_path(t), field=f"video {v.name} frame {t}") != (v.height, v.width):
                got = image_size(v.frame_path(t))
                raise DataFormatError(
                    v.frame_path(t), f"frame is {got[1]}x{got[0]} but the JSON says {v.width}x{v.height}",
                    field=f"video {v.name} frame {t}",
                )

    for v, _ in _readable(report, ds.videos, check):
        for tr in v.instances:
            counts[names[tr.category_id]] += 1
            report.num_instances += 1
    _add_counts(report, {c.name: counts[c.name] for c in ds.categories})


def _check_panoptic(ds: PanopticDataset, report: ValidationReport) -> None:
    names = {c.id: c.name for c in ds.categories}
    counts: Counter[str] = Counter()

    def check(v: PanopticVideo) -> set[tuple[int, int]]:
        """The (segment id, category) pairs of the video."""
        seen: set[tuple[int, int]] = set()
        image_root, mask_root = v.image_root, v.mask_root
        assert image_root is not None and mask_root is not None  # read_vipseg sets both
        for t, f in enumerate(v.frames):
            where = f"video {v.video_id} frame {t}"
            if image_size(image_root / f.image_file, field=where) != (v.height, v.width):
                raise DataFormatError(
                    image_root / f.image_file, f"frame size differs from {v.width}x{v.height}", field=where
                )
            ids = v.load_panoptic(t)
            check_panoptic_ids(ids, f.segments, mask_root / f.mask_file, field=f"{where} segments_info")
            areas = np.bincount(ids.ravel()) if ids.size else np.zeros(1, np.int64)
            for s in f.segments:
                png_area = int(areas[s.id]) if s.id < areas.size else 0
                if s.area != png_area:
                    raise DataFormatError(
                        ds.source, f"area {s.area} but the PNG has {png_area} pixels",
                        field=f"{where} segment {s.id}.area",
                    )
                seen.add((s.id, s.category_id))
        return seen

    for _, seen in _readable(report, ds.videos, check):
        report.num_instances += len(seen)
        counts.update(names[c] for _, c in seen)
    _add_counts(report, {c.name: counts[c.name] for c in ds.categories})


def _check_semantic(ds: SemanticDataset, report: ValidationReport) -> None:
    k = len(ds.categories)
    counts = np.zeros(k, np.int64)

    def check(v: SemanticVideo) -> np.ndarray:
        """[K] frames of the video each class is present in."""
        present = np.zeros(k, np.int64)
        for t in range(len(v)):
            image_size(v.frame_files[t], field=f"video {v.name} frame {t}")
            raw = v.load_mask(t)
            labels = np.flatnonzero(np.bincount(raw.ravel().astype(np.int64), minlength=256))
            bad = [int(x) for x in labels if x != VOID and x > k]
            if bad:
                raise DataFormatError(
                    v.mask_files[t], f"labels {bad[:5]} outside 0..{k} and {VOID}", field=f"video {v.name} mask"
                )
            present[[x - 1 for x in labels if 0 < x <= k]] += 1
        return present

    for _, present in _readable(report, ds.videos, check):
        counts += present
    report.num_instances += int(counts.sum())
    _add_counts(report, {c.name: int(n) for c, n in zip(ds.categories, counts)})


def validate_dataset(path: str | Path, fmt: str, *, skip_bad: bool = False) -> ValidationReport:
    """Validate every split found under `path` (or the single annotation file `path`).

    ytvis: `*.json` or `*/instances.json` under `path` (frames in `JPEGImages/` beside each JSON);
    vipseg: `panoptic_gt_VIPSeg_*.json`; vspw: `train.txt`/`val.txt`/`test.txt` lists; davis: the root.
    """
    path = Path(path)
    report = ValidationReport(fmt, str(path), skip_bad=skip_bad)
    if fmt not in VALIDATE_FORMATS:
        raise DataFormatError(None, f"unknown format {fmt!r}; choose from {list(VALIDATE_FORMATS)}", field="--format")
    if not path.exists():
        raise DataFormatError(path, "not found")
    try:
        if fmt == "ytvis":
            files = _find(path, ("*.json", "*/instances.json", "*/*.json"))
            files = list(dict.fromkeys(files))
            if not files:
                raise DataFormatError(path, "no YouTube-VIS JSON found (*.json or */instances.json)")
            for f in files:
                ds = read_ytvis(f, skip_bad=True)
                report.splits.append(f.relative_to(path).as_posix() if path.is_dir() else f.name)
                report.problems += [str(p) for p in ds.problems]
                _check_vis(ds, report)
        elif fmt == "vipseg":
            files = _find(path, ("panoptic_gt_VIPSeg_*.json",))
            if not files:
                raise DataFormatError(path, "no panoptic_gt_VIPSeg_<split>.json found")
            for f in files:
                panoptic = read_vipseg(f, skip_bad=True)
                report.splits.append(f.stem.removeprefix("panoptic_gt_VIPSeg_"))
                report.problems += [str(p) for p in panoptic.problems]
                _check_panoptic(panoptic, report)
        elif fmt == "vspw":
            splits = [s for s in ("train", "val", "test") if (path / f"{s}.txt").is_file()]
            if not splits:
                raise DataFormatError(path, "no train.txt / val.txt / test.txt list found")
            for s in splits:
                semantic = read_vspw(path, s, skip_bad=True, need_masks=s != "test")
                report.splits.append(s)
                report.problems += [str(p) for p in semantic.problems]
                _check_semantic(semantic, report)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = read_davis(path, skip_bad=True)
            report.warnings += [str(w.message) for w in caught]
            report.problems += [str(p) for p in ds.problems]
            _check_vis(ds, report)
    except DataFormatError as e:  # the whole file is unusable (e.g. truncated JSON)
        report.problems.append(str(e))
    return report
