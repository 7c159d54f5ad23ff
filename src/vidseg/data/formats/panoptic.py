"""Panoptic PNG + `segments_info` helpers shared by VIPSeg and COCO panoptic."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.data.annotations import SegmentInfo
from vidseg.data.segmentation import mask_bbox
from vidseg.errors import DataFormatError
from vidseg.io.imageio import write_png
from vidseg.io.jsonio import require
from vidseg.structures import panoptic_to_rgb
from vidseg.types import Category


def read_segments(frame: dict, path: Path, where: str, cat_ids: set[int]) -> list[SegmentInfo]:
    """Parse and check one frame's `segments_info` (ids > 0, unique, known categories)."""
    segments, seen = [], set()
    for k, s in enumerate(require(frame, "segments_info", list, path, where)):
        w = f"{where}.segments_info[{k}]"
        sid = require(s, "id", int, path, w)
        cat = require(s, "category_id", int, path, w)
        if sid <= 0:
            raise DataFormatError(path, f"segment id {sid} must be > 0 (0 is void)", field=f"{w}.id")
        if sid in seen:
            raise DataFormatError(path, f"duplicate segment id {sid}", field=f"{w}.id")
        if cat not in cat_ids:
            raise DataFormatError(path, f"unknown category_id {cat}", field=f"{w}.category_id")
        seen.add(sid)
        bbox = s.get("bbox")
        segments.append(
            SegmentInfo(sid, cat, int(s.get("iscrowd", 0)), int(s.get("area", 0)), tuple(bbox) if bbox else None)
        )
    return segments


def segments_json(segments: list[SegmentInfo]) -> list[dict]:
    out = []
    for s in segments:
        d: dict[str, Any] = {"id": s.id, "category_id": s.category_id, "iscrowd": s.iscrowd, "area": s.area}
        if s.bbox is not None:
            d["bbox"] = list(s.bbox)
        out.append(d)
    return out


def categories_json(categories: list[Category]) -> list[dict]:
    out = []
    for c in categories:
        d = {"id": c.id, "name": c.name, "isthing": int(c.isthing)}
        if c.color is not None:
            d["color"] = list(c.color)
        if c.supercategory is not None:
            d["supercategory"] = c.supercategory
        out.append(d)
    return out


def segments_from_panoptic(
    ids: np.ndarray, category_of: Mapping[int, int], crowd: set[int] | frozenset[int] = frozenset()
) -> list[SegmentInfo]:
    """`segments_info` of an id map [H, W] (0 = void), ordered by id, areas and boxes from the pixels."""
    segs = []
    for sid in np.unique(ids):
        if sid == 0:
            continue
        m = ids == sid
        x, y, w, h = mask_bbox(m)
        segs.append(SegmentInfo(int(sid), int(category_of[int(sid)]), int(sid in crowd), int(m.sum()), (x, y, w, h)))
    return segs


def write_panoptic_png(path: Path, ids: np.ndarray) -> None:
    """Id map [H, W] -> RGB PNG with id = R + 256 G + 256² B."""
    if ids.size and int(ids.max()) >= 256**3:
        raise ValueError(f"segment id {int(ids.max())} does not fit in an RGB PNG")
    write_png(path, panoptic_to_rgb(ids))


def check_panoptic_ids(ids: np.ndarray, segments: list[SegmentInfo], path: Path, field: str) -> None:
    """Every non-zero id of the PNG must be listed in `segments_info`."""
    listed = {s.id for s in segments}
    present = {int(v) for v in np.unique(ids) if v != 0}
    extra = sorted(present - listed)
    if extra:
        raise DataFormatError(path, f"PNG contains segment ids {extra[:5]} missing from segments_info", field=field)
