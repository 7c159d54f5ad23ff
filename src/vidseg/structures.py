"""Results that leave the model: per-frame and per-video, masks as COCO RLE.

Masks leave the model as compressed RLE (pycocotools) so memory does not grow with resolution or length.
Converters produce the official formats: YouTube-VIS result entries, VIPSeg-style panoptic RGB PNG
(id = R + 256 G + 256^2 B) and VSPW-style class PNG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict  # {"size": [H, W], "counts": str}: compressed COCO RLE with utf-8 counts


def encode_rle(mask: np.ndarray) -> RLE:
    """Compressed RLE of a binary mask [H, W] (any dtype; non-zero = foreground), counts as str."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"]}


def decode_rle(rle: RLE) -> np.ndarray:
    """Binary mask [H, W] bool from a compressed (str or bytes counts) or uncompressed (list counts) RLE."""
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle["counts"], str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def rle_area(rle: RLE) -> int:
    """Number of foreground pixels of a compressed RLE."""
    counts = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    return int(mask_utils.area({"size": rle["size"], "counts": counts}))


@dataclass(frozen=True)
class PanopticSegment:
    """One segment of a panoptic map: its id in the map, class and whether it is a thing."""

    id: int
    category_id: int
    is_thing: bool


@dataclass
class FrameResult:
    """Segmentation of one frame.

    Attributes:
        frame_index: index of the frame in the source (after stride).
        height, width: size of the frame the masks refer to.
        masks: one compressed RLE per object, each [height, width].
        track_ids: [N] int64 identity of each object, stable across frames of a video.
        class_ids: [N] int64 contiguous class index (0..K-1).
        scores: [N] float32 confidence.
        semantic: [height, width] int32 class map (-1 = void), for semantic segmentation.
        panoptic: [height, width] int32 segment-id map (0 = void), for panoptic segmentation.
        segments: the segments of `panoptic`; thing segment ids equal their track id.
    """

    frame_index: int
    height: int
    width: int
    masks: list[RLE] = field(default_factory=list)
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    semantic: np.ndarray | None = None
    panoptic: np.ndarray | None = None
    segments: list[PanopticSegment] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.masks)
        if not (len(self.track_ids) == len(self.class_ids) == len(self.scores) == n):
            raise ValueError(
                f"FrameResult: {n} masks but {len(self.track_ids)} track ids, "
                f"{len(self.class_ids)} class ids, {len(self.scores)} scores"
            )

    @classmethod
    def from_masks(
        cls,
        frame_index: int,
        masks: np.ndarray,
        track_ids: Iterable[int],
        class_ids: Iterable[int],
        scores: Iterable[float],
    ) -> FrameResult:
        """Build from dense binary masks [N, H, W]."""
        n, h, w = masks.shape
        return cls(
            frame_index=frame_index,
            height=h,
            width=w,
            masks=[encode_rle(m) for m in masks],
            track_ids=np.asarray(list(track_ids), np.int64).reshape(n),
            class_ids=np.asarray(list(class_ids), np.int64).reshape(n),
            scores=np.asarray(list(scores), np.float32).reshape(n),
        )

    def select(self, indices: Sequence[int] | np.ndarray) -> FrameResult:
        """The result with only the objects at `indices` (its semantic/panoptic maps are kept)."""
        keep = np.asarray(indices, np.int64)
        if len(keep) == len(self.masks) and np.array_equal(keep, np.arange(len(keep))):
            return self
        return replace(self, masks=[self.masks[i] for i in keep], track_ids=self.track_ids[keep],
                       class_ids=self.class_ids[keep], scores=self.scores[keep])

    def dense_masks(self) -> np.ndarray:
        """[N, H, W] bool."""
        if not self.masks:
            return np.zeros((0, self.height, self.width), bool)
        return np.stack([decode_rle(r) for r in self.masks])


@dataclass
class Track:
    """One object over a video: its class, score and a mask (or None where absent) per frame."""

    track_id: int
    class_id: int
    score: float
    segmentations: list[RLE | None]


def track_class_and_score(scores: Mapping[int, Sequence[float]]) -> tuple[int, float]:
    """A whole track's (class, score) from its per-frame scores grouped by class: the class with the largest
    summed score (ties: the smaller class), scored by the mean of that class's scores (YouTube-VIS scores a
    track once)."""
    cls_id = max(scores, key=lambda c: (sum(scores[c]), -c))
    return cls_id, float(np.mean(scores[cls_id]))


@dataclass
class VideoResult:
    """All frame results of one video, accumulated in order."""

    video_id: int
    frames: list[FrameResult] = field(default_factory=list)

    def add(self, frame: FrameResult) -> None:
        self.frames.append(frame)

    def tracks(self) -> list[Track]:
        """Group per-frame objects by track id.

        A track's class and score: `track_class_and_score` (the class with the largest summed score, its
        mean score). Tracks are ordered by first appearance, then id.
        """
        per_track: dict[int, dict] = {}
        t_total = len(self.frames)
        for t, fr in enumerate(self.frames):
            for rle, tid, cid, score in zip(fr.masks, fr.track_ids, fr.class_ids, fr.scores):
                entry = per_track.setdefault(
                    int(tid), {"segs": [None] * t_total, "scores": {}, "first": t}
                )
                entry["segs"][t] = rle
                entry["scores"].setdefault(int(cid), []).append(float(score))
        tracks = []
        for tid, entry in sorted(per_track.items(), key=lambda kv: (kv[1]["first"], kv[0])):
            cls_id, score = track_class_and_score(entry["scores"])
            tracks.append(Track(tid, cls_id, score, entry["segs"]))
        return tracks

    def to_ytvis(self, category_ids: list[int] | None = None) -> list[dict]:
        """YouTube-VIS result entries `{video_id, score, category_id, segmentations}`.

        Args:
            category_ids: dataset category id of each contiguous class index; identity + 1 if None
                (YouTube-VIS ids start at 1).
        """
        out = []
        for tr in self.tracks():
            cat = category_ids[tr.class_id] if category_ids is not None else tr.class_id + 1
            out.append(
                {
                    "video_id": self.video_id,
                    "score": tr.score,
                    "category_id": int(cat),
                    "segmentations": tr.segmentations,
                }
            )
        return out


def panoptic_to_rgb(panoptic: np.ndarray) -> np.ndarray:
    """Segment-id map [H, W] -> RGB uint8 [H, W, 3] with id = R + 256 G + 256^2 B (VIPSeg/COCO panoptic)."""
    ids = panoptic.astype(np.uint32)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def rgb_to_panoptic(rgb: np.ndarray) -> np.ndarray:
    """Inverse of `panoptic_to_rgb`: RGB [H, W, 3] -> int32 ids [H, W]."""
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def remap_raw_vspw_labels(label: np.ndarray) -> np.ndarray:
    """Raw VSPW label PNG values [H, W] -> uint8 class indices, the dataset README's convention on uint8
    labels: 0 ("others") and 255 (void) -> 255, c -> c - 1 (1..124 -> 0..123)."""
    out = label.astype(np.uint8) - np.uint8(1)  # 0 wraps to 255; 255 becomes 254, the only 254
    out |= out == 254  # 254 -> 255, in place (uint8 | bool)
    return out


def semantic_to_vspw_png(semantic: np.ndarray) -> np.ndarray:
    """Class map [H, W] (0..123, -1 void) -> uint8 PNG values of VSPW predictions.

    The official VSPW evaluator compares predictions with GT already remapped to 0..123 (255 void),
    so predictions are written as class indices 0..123; void pixels (which a model should not
    produce) become 255.
    """
    out = semantic.astype(np.int64)
    if out.size and out.max() > 254:
        raise ValueError(f"class id {int(out.max())} does not fit a VSPW PNG")
    return np.where(out < 0, 255, out).astype(np.uint8)
