"""YouTube-VIS 2019/2021/2022 and OVIS instance JSON: reader and writer.

Layout (official): `<split>/JPEGImages/<video>/<frame>.jpg` and one JSON with
`videos[{id, width, height, length, file_names}]`,
`annotations[{id, video_id, category_id, segmentations[T], areas[T], bboxes[T], iscrowd, (occlusion[T])}]`,
`categories[{id, name}]`. Per-frame entries are None where the object is absent; a segmentation is a
polygon list, an uncompressed RLE or a compressed RLE. OVIS adds `occlusion[T]`
(`no_occlusion` / `slight_occlusion` / `severe_occlusion` / None).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from vidseg.data.annotations import InstanceTrack, ProblemLog, VideoAnnotation, VisDataset
from vidseg.data.segmentation import rle_bbox, to_compressed_rle, to_uncompressed_rle
from vidseg.errors import DataFormatError
from vidseg.io.jsonio import dump_json, load_json_object, require
from vidseg.structures import rle_area
from vidseg.types import Category

OCCLUSION_LEVELS = ("no_occlusion", "slight_occlusion", "severe_occlusion")


def _default_image_root(json_path: Path) -> Path:
    for cand in (json_path.parent / "JPEGImages", json_path.parent):
        if cand.is_dir():
            return cand
    return json_path.parent


def read_categories(data: dict, path: Path) -> list[Category]:
    cats = []
    for i, c in enumerate(require(data, "categories", list, path, "")):
        where = f"categories[{i}]"
        cid = require(c, "id", int, path, where)
        name = require(c, "name", str, path, where)
        color = c.get("color")
        cats.append(
            Category(
                id=cid,
                name=name,
                isthing=bool(c.get("isthing", 1)),
                color=tuple(int(v) for v in color) if color else None,
                supercategory=c.get("supercategory"),
            )
        )
    if len({c.id for c in cats}) != len(cats):
        raise DataFormatError(path, "duplicate category ids", field="categories")
    return sorted(cats, key=lambda c: c.id)


def _read_video(v: dict, i: int, path: Path, image_root: Path, check_files: bool) -> VideoAnnotation:
    where = f"videos[{i}]"
    vid = require(v, "id", int, path, where)
    height = require(v, "height", int, path, where)
    width = require(v, "width", int, path, where)
    files = require(v, "file_names", list, path, where)
    if not files or not all(isinstance(f, str) for f in files):
        raise DataFormatError(path, "must be a non-empty list of paths", field=f"{where}.file_names")
    if "length" in v and v["length"] != len(files):
        raise DataFormatError(
            path, f"length {v['length']} but {len(files)} file_names", field=f"{where}.length"
        )
    if check_files:
        for t, f in enumerate(files):
            if not (image_root / f).is_file():
                raise DataFormatError(image_root / f, "frame file not found", field=f"{where}.file_names[{t}]")
    name = Path(files[0]).parent.as_posix() or str(vid)
    return VideoAnnotation(vid, name, list(files), height, width, [], image_root)


def _per_frame_list(a: dict, key: str, length: int, path: Path, where: str, required: bool) -> list | None:
    if key not in a:
        if required:
            raise DataFormatError(path, "missing", field=f"{where}.{key}")
        return None
    value = a[key]
    if not isinstance(value, list):
        raise DataFormatError(path, f"expected a list, got {type(value).__name__}", field=f"{where}.{key}")
    if len(value) != length:
        raise DataFormatError(
            path, f"has {len(value)} entries but the video has {length} frames", field=f"{where}.{key}"
        )
    return value


def _read_track(a: dict, j: int, path: Path, videos: dict[int, VideoAnnotation], cat_ids: set[int]):
    where = f"annotations[{j}]"
    aid = require(a, "id", int, path, where)
    where = f"annotations[{j}] (id {aid})"
    vid = require(a, "video_id", int, path, where)
    if vid not in videos:
        raise DataFormatError(path, f"unknown video_id {vid}", field=f"{where}.video_id")
    cat = require(a, "category_id", int, path, where)
    if cat not in cat_ids:
        raise DataFormatError(path, f"unknown category_id {cat}", field=f"{where}.category_id")
    video = videos[vid]
    n = len(video)
    segs = _per_frame_list(a, "segmentations", n, path, where, required=True)
    assert segs is not None  # required: a missing list raised
    rles = [
        None if s is None else to_compressed_rle(s, video.height, video.width, path, f"{where}.segmentations[{t}]")
        for t, s in enumerate(segs)
    ]
    areas = _per_frame_list(a, "areas", n, path, where, required=False)
    if areas is None:
        areas = [None if r is None else float(rle_area(r)) for r in rles]
    bboxes = _per_frame_list(a, "bboxes", n, path, where, required=False)
    if bboxes is None:
        bboxes = [None if r is None else rle_bbox(r) for r in rles]
    occlusion = _per_frame_list(a, "occlusion", n, path, where, required=False)
    if occlusion is not None:
        bad = [o for o in occlusion if o is not None and o not in OCCLUSION_LEVELS]
        if bad:
            raise DataFormatError(path, f"unknown occlusion level {bad[0]!r}", field=f"{where}.occlusion")
    iscrowd = a.get("iscrowd", 0)
    if iscrowd not in (0, 1):
        raise DataFormatError(path, f"must be 0 or 1, got {iscrowd!r}", field=f"{where}.iscrowd")
    return vid, InstanceTrack(aid, cat, rles, list(areas), list(bboxes), int(iscrowd), occlusion)


def read_ytvis(
    json_path: str | Path,
    image_root: str | Path | None = None,
    *,
    skip_bad: bool = False,
    check_files: bool = True,
) -> VisDataset:
    """Read a YouTube-VIS / OVIS JSON.

    Args:
        json_path: the annotation file.
        image_root: folder the `file_names` are relative to (default: `JPEGImages/` beside the JSON).
        skip_bad: skip (and record in `.problems`) bad videos/annotations instead of raising.
        check_files: check that every frame file exists (frames themselves are read lazily).

    Raises:
        DataFormatError: naming the file and field of the first problem (unless `skip_bad`).
    """
    path = Path(json_path)
    root = Path(image_root) if image_root is not None else _default_image_root(path)
    data = load_json_object(path)
    log = ProblemLog(skip_bad)
    categories = read_categories(data, path)
    cat_ids = {c.id for c in categories}
    videos: dict[int, VideoAnnotation] = {}
    for i, v in enumerate(require(data, "videos", list, path, "")):
        try:
            video = _read_video(v, i, path, root, check_files)
            if video.video_id in videos:
                raise DataFormatError(path, f"duplicate video id {video.video_id}", field=f"videos[{i}].id")
            videos[video.video_id] = video
        except DataFormatError as e:
            log.report(e)
    ann_ids: set[int] = set()
    for j, a in enumerate(data.get("annotations") or []):
        try:
            vid, track = _read_track(a, j, path, videos, cat_ids)
            if track.id in ann_ids:
                raise DataFormatError(path, f"duplicate annotation id {track.id}", field=f"annotations[{j}].id")
            ann_ids.add(track.id)
            videos[vid].instances.append(track)
        except DataFormatError as e:
            log.report(e)
    return VisDataset(categories, list(videos.values()), path, log.problems)


def ytvis_json(dataset: VisDataset, rle: Literal["uncompressed", "compressed"] = "uncompressed") -> dict:
    """The YouTube-VIS JSON object of a dataset (OVIS `occlusion` is written where tracks have it)."""
    videos, annotations = [], []
    for v in dataset.videos:
        videos.append(
            {"id": v.video_id, "width": v.width, "height": v.height, "length": len(v), "file_names": v.frame_files}
        )
        for tr in v.instances:
            segs = [
                None if r is None else (to_uncompressed_rle(r) if rle == "uncompressed" else dict(r))
                for r in tr.segmentations
            ]
            ann = {
                "id": tr.id,
                "video_id": v.video_id,
                "category_id": tr.category_id,
                "iscrowd": tr.iscrowd,
                "segmentations": segs,
                "areas": tr.areas,
                "bboxes": tr.bboxes,
                "height": v.height,
                "width": v.width,
            }
            if tr.occlusion is not None:
                ann["occlusion"] = tr.occlusion
            annotations.append(ann)
    categories = [{"id": c.id, "name": c.name, "supercategory": c.supercategory or c.name} for c in dataset.categories]
    return {
        "info": {"description": "written by vidseg"},
        "licenses": [],
        "videos": videos,
        "categories": categories,
        "annotations": annotations,
    }


def write_ytvis(
    dataset: VisDataset, json_path: str | Path, rle: Literal["uncompressed", "compressed"] = "uncompressed"
) -> Path:
    """Write a YouTube-VIS JSON. Real YTVIS GT uses uncompressed RLE; both load in the official API."""
    path = Path(json_path)
    dump_json(path, ytvis_json(dataset, rle))
    return path


def make_track(
    track_id: int, category_id: int, rles: list, iscrowd: int = 0, occlusion: list[str | None] | None = None
) -> InstanceTrack:
    """An `InstanceTrack` whose areas and boxes are computed from its RLEs (None where absent)."""
    areas = [None if r is None else float(rle_area(r)) for r in rles]
    bboxes = [None if r is None else rle_bbox(r) for r in rles]
    return InstanceTrack(track_id, category_id, list(rles), areas, bboxes, iscrowd, occlusion)
