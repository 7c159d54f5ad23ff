"""Typed records shared by the format readers and writers.

Three kinds of ground truth exist on disk, and each has one record family here:

* instance tracks (YouTube-VIS, OVIS, DAVIS, COCO instances as 1-frame videos): `VisDataset`;
* panoptic frames (VIPSeg, COCO panoptic as 1-frame videos): `PanopticDataset`;
* semantic class maps (VSPW): `SemanticDataset`.

Records keep paths and RLEs, never decoded pixels, so a dataset of thousands of videos stays small and
frames are read lazily (`load_frame`, `load_panoptic`, ...). Readers collect problems in a `ProblemLog`:
with `skip_bad=False` the first problem raises `DataFormatError`; with `skip_bad=True` the bad item is
dropped and the error is kept in `dataset.problems`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from vidseg.errors import DataFormatError
from vidseg.io.imageio import read_label_png, read_rgb
from vidseg.structures import RLE, decode_rle, rgb_to_panoptic
from vidseg.types import Category


class ProblemLog:
    """Raise the first problem (strict) or collect every problem (`skip_bad`)."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.problems: list[DataFormatError] = []

    def report(self, error: DataFormatError) -> None:
        if not self.skip_bad:
            raise error
        self.problems.append(error)


V = TypeVar("V")


@dataclass
class VideoDataset(Generic[V]):
    """What the three record families share: the categories and the readable videos of one split.

    Attributes:
        categories: sorted by id; contiguous class index k is `categories[k]`.
        videos: the readable videos.
        source: the annotation file or root folder it was read from.
        problems: errors of skipped items (only with `skip_bad`).
    """

    categories: list[Category]
    videos: list[V]
    source: Path | None = None
    problems: list[DataFormatError] = field(default_factory=list)

    def category_index(self) -> dict[int, int]:
        """Dataset category id -> contiguous class index 0..K-1."""
        return {c.id: k for k, c in enumerate(self.categories)}

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.categories]


# --------------------------------------------------------------------------------------------------------
# Instance tracks


@dataclass
class InstanceTrack:
    """One annotated object over a video.

    Attributes:
        id: annotation id (≥ 1 for YouTube-VIS evaluation).
        category_id: dataset category id (as in the file, not contiguous).
        segmentations: [T] compressed RLE (str counts) or None where the object is absent.
        areas: [T] area as stored in the file (the evaluator uses these), None where absent.
        bboxes: [T] [x, y, w, h] or None where absent.
        iscrowd: 1 for crowd regions (ignored by the evaluator).
        occlusion: [T] OVIS occlusion level names or None; None for datasets without the field.
    """

    id: int
    category_id: int
    segmentations: list[RLE | None]
    areas: list[float | None]
    bboxes: list[list[float] | None]
    iscrowd: int = 0
    occlusion: list[str | None] | None = None

    def mask(self, t: int, height: int, width: int) -> np.ndarray:
        """[H, W] bool mask at frame t (all False where absent)."""
        rle = self.segmentations[t]
        if rle is None:
            return np.zeros((height, width), bool)
        return decode_rle(rle)


@dataclass
class VideoAnnotation:
    """One video of an instance dataset; frames are read on demand.

    Attributes:
        video_id: integer id used by annotations and results.
        name: folder name of the frames.
        frame_files: [T] paths relative to `image_root` as written in the file.
        height, width: frame size every frame and mask must have.
        instances: the objects of this video.
        image_root: folder the frame paths are relative to (None when frames are not available).
        annotated: [T] whether frame t carries annotations (DAVIS-style sparse masks); all True otherwise.
    """

    video_id: int
    name: str
    frame_files: list[str]
    height: int
    width: int
    instances: list[InstanceTrack] = field(default_factory=list)
    image_root: Path | None = None
    annotated: list[bool] | None = None

    def __len__(self) -> int:
        return len(self.frame_files)

    def frame_path(self, t: int) -> Path:
        if self.image_root is None:
            raise DataFormatError(None, f"video {self.name!r} has no image root", field="file_names")
        return self.image_root / self.frame_files[t]

    def load_frame(self, t: int) -> np.ndarray:
        """[H, W, 3] uint8 RGB of frame t; `DataFormatError` if missing, corrupt or of the wrong size."""
        return read_rgb(self.frame_path(t), (self.height, self.width), field=f"video {self.name} frame {t}")

    def is_annotated(self, t: int) -> bool:
        return True if self.annotated is None else self.annotated[t]


@dataclass
class VisDataset(VideoDataset[VideoAnnotation]):
    """An instance-level video dataset (YouTube-VIS / OVIS / DAVIS / COCO-as-videos)."""


# --------------------------------------------------------------------------------------------------------
# Panoptic frames


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a panoptic PNG (COCO panoptic / VIPSeg `segments_info`)."""

    id: int
    category_id: int
    iscrowd: int = 0
    area: int = 0
    bbox: tuple[float, float, float, float] | None = None


@dataclass
class PanopticFrame:
    """One frame of a panoptic video: its image, its PNG and the segments listed for it."""

    image_id: str | int
    image_file: str
    mask_file: str
    segments: list[SegmentInfo]


@dataclass
class PanopticVideo:
    """A panoptic video (VIPSeg) or a single image (COCO panoptic) with lazily read PNGs.

    Attributes:
        video_id: video name (VIPSeg) or image id (COCO).
        frames: [T] frames in order.
        height, width: size of every frame and PNG.
        image_root: folder of `image_file`s; mask_root: folder of `mask_file`s.
    """

    video_id: str | int
    frames: list[PanopticFrame]
    height: int
    width: int
    image_root: Path | None = None
    mask_root: Path | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def load_frame(self, t: int) -> np.ndarray:
        """[H, W, 3] uint8 RGB."""
        if self.image_root is None:
            raise DataFormatError(None, f"video {self.video_id!r} has no image root", field="images")
        return read_rgb(
            self.image_root / self.frames[t].image_file,
            (self.height, self.width),
            field=f"video {self.video_id} frame {t}",
        )

    def load_panoptic(self, t: int) -> np.ndarray:
        """[H, W] int32 segment ids (R + 256 G + 256² B; 0 = void) of frame t."""
        if self.mask_root is None:
            raise DataFormatError(None, f"video {self.video_id!r} has no mask root", field="annotations")
        path = self.mask_root / self.frames[t].mask_file
        rgb = read_rgb(path, (self.height, self.width), field=f"video {self.video_id} panoptic {t}")
        return rgb_to_panoptic(rgb)


@dataclass
class PanopticDataset(VideoDataset[PanopticVideo]):
    """A panoptic video dataset (VIPSeg) or COCO panoptic (images as 1-frame videos)."""


# --------------------------------------------------------------------------------------------------------
# Semantic maps


@dataclass
class SemanticVideo:
    """A VSPW video: frames `origin/*.jpg` and class PNGs `mask/*.png` (0 others, 1..K classes, 255 void).

    Attributes:
        name: video folder name.
        frame_files, mask_files: [T] absolute paths, matched by file stem.
        height, width: size of the first frame; every frame and mask must match it.
    """

    name: str
    frame_files: list[Path]
    mask_files: list[Path]
    height: int
    width: int

    def __len__(self) -> int:
        return len(self.frame_files)

    def load_frame(self, t: int) -> np.ndarray:
        """[H, W, 3] uint8 RGB."""
        return read_rgb(self.frame_files[t], (self.height, self.width), field=f"video {self.name} frame {t}")

    def load_mask(self, t: int) -> np.ndarray:
        """[H, W] uint8 raw labels (0 others, 1..K classes, 255 void)."""
        return read_label_png(self.mask_files[t], (self.height, self.width), field=f"video {self.name} mask {t}")


@dataclass
class SemanticDataset(VideoDataset[SemanticVideo]):
    """A VSPW-style dataset: one split's videos and the category names (index = raw label - 1)."""
