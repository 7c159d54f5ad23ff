"""DAVIS-style folders as class-agnostic VIS: reader and writer.

Layouts accepted:

    <root>/JPEGImages[/480p]/<seq>/<frame>.jpg + <root>/Annotations[/480p]/<seq>/<frame>.png   (DAVIS 2016/2017)
    <frames dir>/<frame>.jpg + <masks dir>/<frame>.png                                        (one sequence)

Masks are binary (L, 0/255 -> object 1) or palette/index PNGs (index k > 0 -> object k). Masks may exist
for only some frames (semi-supervised VOS gives masks where objects first appear): frames without a PNG
are marked not annotated and every track is None there. A mask whose size differs from its frame is padded
(zeros) / cropped at the bottom-right to the frame size with a `warnings.warn`, because real data has such
off-by-one masks and refusing them would lose the sequence.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vidseg.data.annotations import ProblemLog, VideoAnnotation, VisDataset
from vidseg.data.formats.ytvis import make_track
from vidseg.errors import DataFormatError
from vidseg.io.imageio import davis_palette, image_size, read_label_png, write_jpeg, write_png
from vidseg.structures import encode_rle
from vidseg.types import Category

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
OBJECT = Category(1, "object")


def _fit(mask: np.ndarray, height: int, width: int, path: Path) -> np.ndarray:
    h, w = mask.shape
    if (h, w) == (height, width):
        return mask
    warnings.warn(
        f"{path}: mask is {w}x{h} (WxH) but its frame is {width}x{height}; padding/cropping the mask "
        "at the bottom/right to the frame size",
        stacklevel=3,
    )
    out = np.zeros((height, width), mask.dtype)
    out[: min(h, height), : min(w, width)] = mask[:height, :width]
    return out


def _present_values(labels: np.ndarray) -> list[int]:
    """Sorted distinct values; bincount because np.unique sorts/hashes 400k pixels per frame (slow)."""
    if labels.dtype == np.uint8:
        return np.flatnonzero(np.bincount(labels.ravel(), minlength=256)).tolist()
    return np.unique(labels).tolist()


def load_davis_mask(path: Path, height: int, width: int) -> np.ndarray:
    """[H, W] int object ids (0 = background) of one DAVIS PNG, fitted to the frame size."""
    raw = read_label_png(path, None, field="mask")
    if raw.ndim != 2:
        raise DataFormatError(path, "mask must be single-channel", field="mask")
    values = _present_values(raw)
    if set(values) <= {0, 255}:  # binary 0/255 mask: one object
        raw = (raw > 0).astype(np.uint8)
    return _fit(raw, height, width, path)


def read_davis_sequence(
    frames_dir: str | Path,
    masks_dir: str | Path,
    name: str | None = None,
    video_id: int = 1,
    first_track_id: int = 1,
    image_root: str | Path | None = None,
    category_of: Callable[[int], int] | None = None,
) -> VideoAnnotation:
    """One sequence: frames sorted by name, masks matched by file stem.

    Args:
        image_root: folder the stored frame paths are relative to (default: the parent of `frames_dir`).
        first_track_id: id of the first object track (ids are consecutive in object-index order).
        category_of: object index in the PNGs -> category id (default: every object is category 1).
    """
    frames_dir, masks_dir = Path(frames_dir), Path(masks_dir)
    if not frames_dir.is_dir():
        raise DataFormatError(frames_dir, "frame folder not found", field="frames")
    frames = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not frames:
        raise DataFormatError(frames_dir, "no frames (.jpg/.png)", field="frames")
    root = Path(image_root) if image_root is not None else frames_dir.parent
    name = name or frames_dir.name
    h, w = image_size(frames[0], field=f"sequence {name} frame 0")
    annotated, per_frame = [], []
    for f in frames:
        m = masks_dir / f"{f.stem}.png"
        annotated.append(m.is_file())
        per_frame.append(load_davis_mask(m, h, w) if m.is_file() else None)
    if not any(annotated):
        raise DataFormatError(masks_dir, f"no mask PNG matches any frame of {name!r}", field="masks")
    present = [set() if m is None else set(_present_values(m)) - {0} for m in per_frame]
    object_ids = sorted(set().union(*present))
    tracks = []
    for k, oid in enumerate(object_ids):
        rles = [encode_rle(m == oid) if m is not None and oid in ids else None for m, ids in zip(per_frame, present)]
        cat = OBJECT.id if category_of is None else category_of(oid)
        tracks.append(make_track(first_track_id + k, cat, rles))
    files = [f.relative_to(root).as_posix() for f in frames]
    return VideoAnnotation(video_id, name, files, h, w, tracks, root, annotated)


def _base(root: Path, sub: str) -> Path:
    base = root / sub
    return base / "480p" if (base / "480p").is_dir() else base


def read_davis(
    root: str | Path,
    sequences: list[str] | None = None,
    *,
    image_dir: str | None = None,
    mask_dir: str | None = None,
    skip_bad: bool = False,
) -> VisDataset:
    """Read DAVIS folders as a class-agnostic `VisDataset` (one category, `object`, id 1).

    `image_dir` may hold sequence folders or the frames of a single sequence directly (then the
    dataset has one video named after `root`). Defaults: `JPEGImages`/`Annotations`, else `images`/`masks`.
    """
    root = Path(root)
    if image_dir is None:  # DAVIS names first, then the plain `images`/`masks` of single-sequence samples
        image_dir = "JPEGImages" if (root / "JPEGImages").is_dir() or not (root / "images").is_dir() else "images"
    if mask_dir is None:
        mask_dir = "Annotations" if (root / "Annotations").is_dir() or not (root / "masks").is_dir() else "masks"
    images, masks = _base(root, image_dir), _base(root, mask_dir)
    if not images.is_dir():
        raise DataFormatError(images, "frame folder not found", field=image_dir)
    log = ProblemLog(skip_bad)
    videos: list[VideoAnnotation] = []
    if any(p.suffix.lower() in IMAGE_EXTS for p in images.iterdir() if p.is_file()):
        videos.append(read_davis_sequence(images, masks, name=root.name, image_root=images.parent))
    else:
        names = sequences or sorted(p.name for p in images.iterdir() if p.is_dir())
        next_track = 1
        for i, seq in enumerate(names):
            try:
                v = read_davis_sequence(images / seq, masks / seq, seq, i + 1, next_track, images)
            except DataFormatError as e:
                log.report(e)
                continue
            next_track += len(v.instances)
            videos.append(v)
    return VisDataset([OBJECT], videos, root, log.problems)


def write_davis_sequence(
    root: str | Path, name: str, frames: list[np.ndarray], object_maps: list[np.ndarray | None]
) -> None:
    """Write `JPEGImages/<name>/%05d.jpg` and palette `Annotations/<name>/%05d.png` (None: no mask file).

    Args:
        frames: [T] [H, W, 3] uint8.
        object_maps: [T] [H, W] object index per pixel (0 = background, ≤ 255), or None for unannotated frames.
    """
    root = Path(root)
    pal = davis_palette()
    for t, (frame, objs) in enumerate(zip(frames, object_maps)):
        write_jpeg(root / "JPEGImages" / name / f"{t:05d}.jpg", frame)
        if objs is not None:
            write_png(root / "Annotations" / name / f"{t:05d}.png", objs.astype(np.uint8), palette=pal)
