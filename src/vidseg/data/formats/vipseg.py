"""VIPSeg panoptic videos: reader and writer.

Layout (the official `VIPSeg_720P` after `create_panoptic_video_labels.py`):

    <root>/images/<video>/<frame>.jpg
    <root>/panomasksRGB/<video>/<frame>.png        id = R + 256 G + 256² B, 0 = void
    <root>/panoptic_gt_VIPSeg_<split>.json
    <root>/<split>.txt                              video names (optional)

JSON: `videos[{video_id, images[{id, width, height, file_name}]}]`,
`annotations[{video_id, annotations[{image_id, file_name, segments_info[{id, category_id, iscrowd, area}]}]}]`,
`categories[{id, name, isthing, color}]`. The real dataset has 124 categories with ids 0..123, the 58 things
first; the reader accepts any category list (the synthetic benchmark uses 7).
"""

from __future__ import annotations

from pathlib import Path

from vidseg.data.annotations import PanopticDataset, PanopticFrame, PanopticVideo, ProblemLog
from vidseg.data.formats.panoptic import categories_json, read_segments, segments_json
from vidseg.data.formats.ytvis import read_categories
from vidseg.errors import DataFormatError
from vidseg.io.jsonio import dump_json, load_json_object, require


def _read_video(
    v: dict, ann: dict | None, i: int, path: Path, image_root: Path, mask_root: Path, cat_ids: set[int],
    check_files: bool,
) -> PanopticVideo:
    where = f"videos[{i}]"
    vid = require(v, "video_id", (str, int), path, where)
    images = require(v, "images", list, path, where)
    if not images:
        raise DataFormatError(path, "video has no images", field=f"{where}.images")
    if ann is None:
        raise DataFormatError(path, f"no annotations for video {vid!r}", field="annotations")
    aw = f"annotations[video {vid}]"
    frames_ann = require(ann, "annotations", list, path, aw)
    if len(frames_ann) != len(images):
        raise DataFormatError(
            path, f"{len(frames_ann)} annotated frames but {len(images)} images", field=f"{aw}.annotations"
        )
    height = require(images[0], "height", int, path, f"{where}.images[0]")
    width = require(images[0], "width", int, path, f"{where}.images[0]")
    frames = []
    for t, (img, fa) in enumerate(zip(images, frames_ann)):
        iw = f"{where}.images[{t}]"
        image_file = require(img, "file_name", str, path, iw)
        if (img.get("height"), img.get("width")) != (height, width):
            raise DataFormatError(path, "frame size differs from the first frame", field=iw)
        fw = f"{aw}.annotations[{t}]"
        mask_file = require(fa, "file_name", str, path, fw)
        if "image_id" in fa and "id" in img and fa["image_id"] != img["id"]:
            raise DataFormatError(path, f"image_id {fa['image_id']!r} != image id {img['id']!r}", field=fw)
        segments = read_segments(fa, path, fw, cat_ids)
        image_id = img.get("id", Path(image_file).stem)
        frame = PanopticFrame(image_id, f"{vid}/{image_file}", f"{vid}/{mask_file}", segments)
        if check_files:
            for root, rel, field in ((image_root, frame.image_file, iw), (mask_root, frame.mask_file, fw)):
                if not (root / rel).is_file():
                    raise DataFormatError(root / rel, "file not found", field=f"{field}.file_name")
        frames.append(frame)
    return PanopticVideo(vid, frames, height, width, image_root, mask_root)


def read_vipseg(
    json_path: str | Path,
    image_root: str | Path | None = None,
    mask_root: str | Path | None = None,
    *,
    skip_bad: bool = False,
    check_files: bool = True,
) -> PanopticDataset:
    """Read a VIPSeg panoptic JSON; PNGs and frames are read lazily (`load_panoptic`, `load_frame`).

    Args:
        json_path: `panoptic_gt_VIPSeg_<split>.json`.
        image_root, mask_root: default `images/` and `panomasksRGB/` beside the JSON.
        skip_bad: skip and record bad videos instead of raising.
        check_files: check that every frame and PNG exists.
    """
    path = Path(json_path)
    image_root = Path(image_root) if image_root is not None else path.parent / "images"
    mask_root = Path(mask_root) if mask_root is not None else path.parent / "panomasksRGB"
    data = load_json_object(path)
    categories = read_categories(data, path)
    cat_ids = {c.id for c in categories}
    anns = {}
    for j, a in enumerate(require(data, "annotations", list, path, "")):
        anns[require(a, "video_id", (str, int), path, f"annotations[{j}]")] = a
    log = ProblemLog(skip_bad)
    videos = []
    for i, v in enumerate(require(data, "videos", list, path, "")):
        try:
            videos.append(
                _read_video(v, anns.get(v.get("video_id")), i, path, image_root, mask_root, cat_ids, check_files)
            )
        except DataFormatError as e:
            log.report(e)
    return PanopticDataset(categories, videos, path, log.problems)


def vipseg_json(dataset: PanopticDataset) -> dict:
    """The VIPSeg JSON object (frame paths are written relative to the video folder)."""
    videos, annotations = [], []
    for v in dataset.videos:
        prefix = f"{v.video_id}/"
        images, frames = [], []
        for f in v.frames:
            image_file = f.image_file.removeprefix(prefix)
            images.append({"id": f.image_id, "width": v.width, "height": v.height, "file_name": image_file})
            frames.append(
                {
                    "image_id": f.image_id,
                    "file_name": f.mask_file.removeprefix(prefix),
                    "segments_info": segments_json(f.segments),
                }
            )
        videos.append({"video_id": v.video_id, "images": images})
        annotations.append({"video_id": v.video_id, "annotations": frames})
    return {"videos": videos, "annotations": annotations, "categories": categories_json(dataset.categories)}


def write_vipseg(dataset: PanopticDataset, json_path: str | Path) -> Path:
    """Write the panoptic JSON (the PNGs are written with `formats.panoptic.write_panoptic_png`)."""
    path = Path(json_path)
    dump_json(path, vipseg_json(dataset))
    return path
