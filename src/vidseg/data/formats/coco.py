"""COCO instances and COCO panoptic JSON: readers and writers, images as 1-frame videos.

Images become 1-frame videos so the same records (`VisDataset`, `PanopticDataset`) and the same clip
sampler serve them; `clips.CocoPseudoVideos` turns each into a T-frame clip by random affine motion.

* instances: `images[{id, file_name, height, width}]`,
  `annotations[{id, image_id, category_id, segmentation (polygons | RLE), area, bbox, iscrowd}]`, `categories`.
* panoptic: `images[...]`, `annotations[{image_id, file_name, segments_info[{id, category_id, iscrowd, area, bbox}]}]`,
  `categories[{id, name, isthing, color}]`, PNGs in `panoptic_<split>/` (id = R + 256 G + 256² B).
"""

from __future__ import annotations

from pathlib import Path

from vidseg.data.annotations import (
    InstanceTrack,
    PanopticDataset,
    PanopticFrame,
    PanopticVideo,
    ProblemLog,
    VideoAnnotation,
    VisDataset,
)
from vidseg.data.formats.panoptic import categories_json, read_segments, segments_json
from vidseg.data.formats.ytvis import read_categories
from vidseg.data.segmentation import rle_bbox, to_compressed_rle, to_uncompressed_rle
from vidseg.errors import DataFormatError
from vidseg.io.jsonio import dump_json, load_json_object, require
from vidseg.structures import rle_area


def _read_images(data: dict, path: Path, image_root: Path, check_files: bool, log: ProblemLog) -> dict:
    images = {}
    for i, im in enumerate(require(data, "images", list, path, "")):
        where = f"images[{i}]"
        try:
            iid = require(im, "id", int, path, where)
            fname = require(im, "file_name", str, path, where)
            h = require(im, "height", int, path, where)
            w = require(im, "width", int, path, where)
            if check_files and not (image_root / fname).is_file():
                raise DataFormatError(image_root / fname, "image file not found", field=f"{where}.file_name")
            images[iid] = (fname, h, w)
        except DataFormatError as e:
            log.report(e)
    return images


def read_coco_instances(
    json_path: str | Path, image_root: str | Path | None = None, *, skip_bad: bool = False, check_files: bool = True
) -> VisDataset:
    """COCO instances JSON -> `VisDataset` of 1-frame videos (video_id = image id)."""
    path = Path(json_path)
    root = Path(image_root) if image_root is not None else path.parent
    data = load_json_object(path)
    log = ProblemLog(skip_bad)
    categories = read_categories(data, path)
    cat_ids = {c.id for c in categories}
    videos = {
        iid: VideoAnnotation(iid, Path(f).stem, [f], h, w, [], root)
        for iid, (f, h, w) in _read_images(data, path, root, check_files, log).items()
    }
    for j, a in enumerate(data.get("annotations") or []):
        where = f"annotations[{j}]"
        try:
            aid = require(a, "id", int, path, where)
            iid = require(a, "image_id", int, path, where)
            cat = require(a, "category_id", int, path, where)
            if iid not in videos:
                raise DataFormatError(path, f"unknown image_id {iid}", field=f"{where}.image_id")
            if cat not in cat_ids:
                raise DataFormatError(path, f"unknown category_id {cat}", field=f"{where}.category_id")
            v = videos[iid]
            if "segmentation" not in a:
                raise DataFormatError(path, "missing", field=f"{where}.segmentation")
            rle = to_compressed_rle(a["segmentation"], v.height, v.width, path, f"{where}.segmentation")
            area = float(a["area"]) if "area" in a else float(rle_area(rle))
            bbox = [float(x) for x in a["bbox"]] if "bbox" in a else rle_bbox(rle)
            v.instances.append(InstanceTrack(aid, cat, [rle], [area], [bbox], int(a.get("iscrowd", 0))))
        except DataFormatError as e:
            log.report(e)
    return VisDataset(categories, list(videos.values()), path, log.problems)


def write_coco_instances(dataset: VisDataset, json_path: str | Path) -> Path:
    """Write 1-frame videos as a COCO instances JSON (compressed RLE; crowd as uncompressed RLE like COCO)."""
    images, annotations = [], []
    for v in dataset.videos:
        if len(v) != 1:
            raise ValueError(f"video {v.name!r} has {len(v)} frames; COCO images have 1")
        images.append({"id": v.video_id, "file_name": v.frame_files[0], "height": v.height, "width": v.width})
        for tr in v.instances:
            rle = tr.segmentations[0]
            if rle is None:
                continue
            annotations.append(
                {
                    "id": tr.id,
                    "image_id": v.video_id,
                    "category_id": tr.category_id,
                    "segmentation": to_uncompressed_rle(rle) if tr.iscrowd else dict(rle),
                    "area": tr.areas[0],
                    "bbox": tr.bboxes[0],
                    "iscrowd": tr.iscrowd,
                }
            )
    cats = [{"id": c.id, "name": c.name, "supercategory": c.supercategory or c.name} for c in dataset.categories]
    path = Path(json_path)
    dump_json(path, {"images": images, "annotations": annotations, "categories": cats})
    return path


def read_coco_panoptic(
    json_path: str | Path,
    image_root: str | Path | None = None,
    mask_root: str | Path | None = None,
    *,
    skip_bad: bool = False,
    check_files: bool = True,
) -> PanopticDataset:
    """COCO panoptic JSON -> `PanopticDataset` of 1-frame videos.

    Default roots: images beside the JSON, PNGs in the folder named like the JSON without `.json`
    (`panoptic_val2017.json` -> `panoptic_val2017/`).
    """
    path = Path(json_path)
    image_root = Path(image_root) if image_root is not None else path.parent
    mask_root = Path(mask_root) if mask_root is not None else path.with_suffix("")
    data = load_json_object(path)
    log = ProblemLog(skip_bad)
    categories = read_categories(data, path)
    cat_ids = {c.id for c in categories}
    images = _read_images(data, path, image_root, check_files, log)
    videos = []
    for j, a in enumerate(require(data, "annotations", list, path, "")):
        where = f"annotations[{j}]"
        try:
            iid = require(a, "image_id", int, path, where)
            if iid not in images:
                raise DataFormatError(path, f"unknown image_id {iid}", field=f"{where}.image_id")
            mask_file = require(a, "file_name", str, path, where)
            if check_files and not (mask_root / mask_file).is_file():
                raise DataFormatError(mask_root / mask_file, "PNG not found", field=f"{where}.file_name")
            fname, h, w = images[iid]
            frame = PanopticFrame(iid, fname, mask_file, read_segments(a, path, where, cat_ids))
            videos.append(PanopticVideo(iid, [frame], h, w, image_root, mask_root))
        except DataFormatError as e:
            log.report(e)
    return PanopticDataset(categories, videos, path, log.problems)


def write_coco_panoptic(dataset: PanopticDataset, json_path: str | Path) -> Path:
    """Write 1-frame panoptic videos as a COCO panoptic JSON (PNGs via `write_panoptic_png`)."""
    images, annotations = [], []
    for v in dataset.videos:
        if len(v) != 1:
            raise ValueError(f"video {v.video_id!r} has {len(v)} frames; COCO images have 1")
        f = v.frames[0]
        images.append({"id": f.image_id, "file_name": f.image_file, "height": v.height, "width": v.width})
        annotations.append(
            {"image_id": f.image_id, "file_name": f.mask_file, "segments_info": segments_json(f.segments)}
        )
    path = Path(json_path)
    dump_json(path, {"images": images, "annotations": annotations, "categories": categories_json(dataset.categories)})
    return path
