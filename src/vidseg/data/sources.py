"""Per-frame labels of any dataset through one small interface, `LabelSource`.

The clip dataset only needs: how many videos, which frames are annotated, a frame's pixels and a frame's
labels as `FrameLabels` (one entry per segment with a contiguous class index, a stable id, a thing flag
and a crowd flag, plus void pixels). One adapter per record family turns the format readers' records into
that; nothing here knows about tasks or augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np

from vidseg.data.annotations import PanopticDataset, SemanticDataset, VisDataset
from vidseg.data.formats.coco import read_coco_instances, read_coco_panoptic
from vidseg.data.formats.davis import read_davis
from vidseg.data.formats.panoptic import check_panoptic_ids
from vidseg.data.formats.vipseg import read_vipseg
from vidseg.data.formats.vspw import VOID, read_vspw
from vidseg.data.formats.ytvis import read_ytvis
from vidseg.errors import DataFormatError
from vidseg.structures import decode_rle, remap_raw_vspw_labels


@dataclass
class FrameLabels:
    """Labels of one frame.

    Attributes:
        ids: [M] int64 segment/track id, stable over the video (semantic sources use the class index).
        class_ids: [M] int64 contiguous class index 0..K-1.
        masks: [M, H, W] bool.
        is_thing: [M] bool.
        is_crowd: [M] bool (crowd regions are ignored by instance/panoptic targets).
        void: [H, W] bool pixels without a label.
    """

    ids: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray
    is_thing: np.ndarray
    is_crowd: np.ndarray
    void: np.ndarray

    @staticmethod
    def empty(height: int, width: int) -> FrameLabels:
        z = np.zeros(0, np.int64)
        return FrameLabels(z, z.copy(), np.zeros((0, height, width), bool), z.astype(bool), z.astype(bool),
                           np.zeros((height, width), bool))


class LabelSource(Protocol):
    """What `ClipDataset` reads from."""

    class_names: list[str]
    thing_classes: list[bool]

    def __len__(self) -> int: ...

    def annotated_frames(self, video: int) -> list[int]: ...

    def load_frame(self, video: int, t: int) -> np.ndarray: ...

    def load_labels(self, video: int, t: int) -> FrameLabels: ...


D = TypeVar("D", VisDataset, PanopticDataset, SemanticDataset)


class _DatasetSource(Generic[D]):
    """What the adapters share: one record family's videos, read lazily, every frame annotated."""

    def __init__(self, dataset: D, thing_classes: list[bool]):
        self.dataset: D = dataset
        self.class_names = dataset.class_names
        self.thing_classes = thing_classes

    def __len__(self) -> int:
        return len(self.dataset.videos)

    def annotated_frames(self, video: int) -> list[int]:
        return list(range(len(self.dataset.videos[video])))

    def load_frame(self, video: int, t: int) -> np.ndarray:
        return self.dataset.videos[video].load_frame(t)


class InstanceSource(_DatasetSource[VisDataset]):
    """YouTube-VIS / OVIS / DAVIS / COCO instances: one entry per track present in the frame."""

    def __init__(self, dataset: VisDataset):
        super().__init__(dataset, [True] * len(dataset.categories))
        self._index = dataset.category_index()

    def annotated_frames(self, video: int) -> list[int]:
        v = self.dataset.videos[video]
        return [t for t in range(len(v)) if v.is_annotated(t)]

    def load_labels(self, video: int, t: int) -> FrameLabels:
        v = self.dataset.videos[video]
        present = [(tr, rle) for tr in v.instances if (rle := tr.segmentations[t]) is not None]
        if not present:
            return FrameLabels.empty(v.height, v.width)
        masks = np.stack([decode_rle(rle) for _, rle in present])
        return FrameLabels(
            ids=np.array([tr.id for tr, _ in present], np.int64),
            class_ids=np.array([self._index[tr.category_id] for tr, _ in present], np.int64),
            masks=masks,
            is_thing=np.ones(len(present), bool),
            is_crowd=np.array([bool(tr.iscrowd) for tr, _ in present]),
            void=np.zeros((v.height, v.width), bool),
        )


class PanopticSource(_DatasetSource[PanopticDataset]):
    """VIPSeg / COCO panoptic: one entry per listed segment; unlisted pixels (id 0) are void."""

    def __init__(self, dataset: PanopticDataset):
        super().__init__(dataset, [c.isthing for c in dataset.categories])
        self._index = dataset.category_index()

    def load_labels(self, video: int, t: int) -> FrameLabels:
        v = self.dataset.videos[video]
        ids = v.load_panoptic(t)
        assert v.mask_root is not None  # load_panoptic needs it too
        frame = v.frames[t]
        check_panoptic_ids(ids, frame.segments, v.mask_root / frame.mask_file, field="segments_info")
        segs = [s for s in frame.segments]
        masks = np.stack([ids == s.id for s in segs]) if segs else np.zeros((0, v.height, v.width), bool)
        cls = np.array([self._index[s.category_id] for s in segs], np.int64)
        return FrameLabels(
            ids=np.array([s.id for s in segs], np.int64),
            class_ids=cls,
            masks=masks,
            is_thing=np.array([self.thing_classes[c] for c in cls], bool),
            is_crowd=np.array([bool(s.iscrowd) for s in segs], bool),
            void=ids == 0,
        )


class SemanticSource(_DatasetSource[SemanticDataset]):
    """VSPW: one entry per class present (id = class index); others and void pixels are void."""

    def __init__(self, dataset: SemanticDataset):
        super().__init__(dataset, [False] * len(dataset.categories))

    def load_labels(self, video: int, t: int) -> FrameLabels:
        v = self.dataset.videos[video]
        raw = v.load_mask(t)
        labels = remap_raw_vspw_labels(raw)
        classes = np.flatnonzero(np.bincount(labels.ravel(), minlength=256)[:VOID])
        if classes.size and classes.max() >= len(self.class_names):
            raise DataFormatError(
                v.mask_files[t], f"label {int(classes.max()) + 1} exceeds the {len(self.class_names)} classes",
                field="mask",
            )
        n = classes.size
        return FrameLabels(
            ids=classes.astype(np.int64),
            class_ids=classes.astype(np.int64),
            masks=labels[None] == classes[:, None, None].astype(np.uint8),
            is_thing=np.zeros(n, bool),
            is_crowd=np.zeros(n, bool),
            void=labels == VOID,
        )


def open_source(
    fmt: str, root: str | Path, annotations: str | Path = "", *, split: str = "train", skip_bad: bool = False
) -> InstanceSource | PanopticSource | SemanticSource:
    """Read a dataset in `fmt` and wrap it as a `LabelSource`.

    Args:
        fmt: ytvis | ovis | vipseg | vspw | coco | coco_panoptic | davis (as in `DataConfig.format`).
        root: image folder (ytvis/ovis/coco/coco_panoptic), dataset root (vipseg/vspw/davis).
        annotations: the JSON (ytvis/ovis/coco/coco_panoptic/vipseg; vipseg defaults to
            `<root>/panoptic_gt_VIPSeg_<split>.json`).
        split: the VSPW/VIPSeg split name.
    """
    root = Path(root)
    if fmt in ("ytvis", "ovis"):
        return InstanceSource(read_ytvis(annotations, root, skip_bad=skip_bad))
    if fmt == "coco":
        return InstanceSource(read_coco_instances(annotations, root, skip_bad=skip_bad))
    if fmt == "davis":
        return InstanceSource(read_davis(root, skip_bad=skip_bad))
    if fmt == "vipseg":
        ann = Path(annotations) if annotations else root / f"panoptic_gt_VIPSeg_{split}.json"
        return PanopticSource(read_vipseg(ann, skip_bad=skip_bad))
    if fmt == "coco_panoptic":
        return PanopticSource(read_coco_panoptic(annotations, root, skip_bad=skip_bad))
    if fmt == "vspw":
        return SemanticSource(read_vspw(root, split, skip_bad=skip_bad))
    raise DataFormatError(None, f"unknown data format {fmt!r}", field="data.format")
