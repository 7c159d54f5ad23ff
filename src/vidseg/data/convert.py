"""Convert your own videos and masks to a YouTube-VIS dataset in one call (`vidseg data convert`).

Input layout::

    <frames>/<video>/<frame>.jpg|png      a folder of frames per video, or
    <frames>/<video>.mp4|.avi|.mov|.mkv   a video file (its frames are extracted as 00000.jpg, 00001.jpg, ...)
    <masks>/<video>/<frame>.png           one PNG per annotated frame, same stem as its frame:
                                          palette/index PNG (0 = background, k = object k) or binary 0/255

Output (readable by `read_ytvis`, `vidseg data validate --format ytvis` and training with
`data.format=ytvis`)::

    <out>/JPEGImages/<video>/<frame>.jpg  the annotated frames (all frames with `all_frames=True`)
    <out>/instances.json                  YouTube-VIS JSON, uncompressed RLE like the official GT

Classes: by default every object is category 1, `object` (class-agnostic). Pass `classes`, a mapping
`{video: {object index: class name}}` (in the CLI a JSON file with string keys), to name them; category
ids are then 1..K in sorted name order, and an object without a class is an error naming it.

Example::

    from vidseg.data.convert import convert_to_ytvis
    convert_to_ytvis("my/frames", "my/masks", "my/ytvis", classes={"cat_walk": {1: "cat", 2: "dog"}})
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from vidseg.data.annotations import VideoAnnotation, VisDataset
from vidseg.data.formats.davis import IMAGE_EXTS, read_davis_sequence
from vidseg.data.formats.ytvis import write_ytvis
from vidseg.errors import DataFormatError
from vidseg.io.imageio import write_jpeg
from vidseg.types import Category

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _extract_video(path: Path, out_dir: Path) -> None:
    """Decode every frame of a video file to `out_dir/%05d.jpg`."""
    import av  # imported here: only needed for video-file input

    try:
        with av.open(str(path)) as container:
            for t, frame in enumerate(container.decode(video=0)):
                write_jpeg(out_dir / f"{t:05d}.jpg", frame.to_ndarray(format="rgb24"))
    except (av.FFmpegError, OSError) as e:  # corrupt or unsupported file
        raise DataFormatError(path, f"cannot decode video ({e})", field="frames") from e


def _keep_frames(video: VideoAnnotation, keep: list[int]) -> VideoAnnotation:
    for tr in video.instances:
        tr.segmentations = [tr.segmentations[t] for t in keep]
        tr.areas = [tr.areas[t] for t in keep]
        tr.bboxes = [tr.bboxes[t] for t in keep]
    video.frame_files = [video.frame_files[t] for t in keep]
    video.annotated = None
    return video


def convert_to_ytvis(
    frames: str | Path,
    masks: str | Path,
    out: str | Path,
    classes: Mapping[str, Mapping[int, str]] | None = None,
    *,
    all_frames: bool = False,
) -> Path:
    """Convert frames/videos + per-frame mask PNGs to `<out>/instances.json` + `<out>/JPEGImages/`.

    Returns:
        the path of the written JSON.

    Raises:
        DataFormatError: naming the file (and video/object) of a missing or bad input.
    """
    frames, masks, out = Path(frames), Path(masks), Path(out)
    if not frames.is_dir():
        raise DataFormatError(frames, "frame folder not found", field="frames")
    if not masks.is_dir():
        raise DataFormatError(masks, "mask folder not found", field="masks")
    image_root = out / "JPEGImages"
    entries = sorted(p for p in frames.iterdir() if p.is_dir() or p.suffix.lower() in VIDEO_EXTS)
    if not entries:
        raise DataFormatError(frames, "no video folders or video files", field="frames")
    _check_masks(masks, [p.stem if p.is_file() else p.name for p in entries])
    # A failed conversion removes what it wrote: a half-written dataset would pass for a small one.
    created = [d for d in (out, image_root) if not d.exists()]
    try:
        return _convert(entries, masks, out, classes, all_frames)
    except BaseException:
        for d in created[:1]:  # the outermost folder this call created holds everything it wrote
            shutil.rmtree(d, ignore_errors=True)
        raise


def _check_masks(masks: Path, videos: list[str]) -> None:
    """Every video has a mask folder with PNGs; checked before anything is written."""
    if not any(masks.glob("*/*.png")):
        raise DataFormatError(masks, "no mask PNGs (expected <masks>/<video>/<frame>.png)", field="masks")
    for name in videos:
        if not any((masks / name).glob("*.png")):
            raise DataFormatError(masks / name, f"no mask PNGs for video {name!r}", field="masks")


def _convert(
    entries: list[Path],
    masks: Path,
    out: Path,
    classes: Mapping[str, Mapping[int, str]] | None,
    all_frames: bool,
) -> Path:
    image_root = out / "JPEGImages"
    names = sorted({n for per in (classes or {}).values() for n in per.values()})
    cat_id = {n: k + 1 for k, n in enumerate(names)}
    categories = [Category(cat_id[n], n) for n in names] if classes else [Category(1, "object")]
    videos: list[VideoAnnotation] = []
    next_track = 1
    for i, entry in enumerate(entries):
        name = entry.stem if entry.is_file() else entry.name
        dst = image_root / name
        if entry.is_file():
            _extract_video(entry, dst)
        else:
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted(entry.iterdir()):
                if f.suffix.lower() in IMAGE_EXTS and (all_frames or (masks / name / f"{f.stem}.png").is_file()):
                    shutil.copyfile(f, dst / f.name)

        def category_of(oid: int, name: str = name) -> int:
            if not classes:
                return 1
            try:
                return cat_id[classes[name][oid]]
            except KeyError:
                raise DataFormatError(
                    masks / name, f"object {oid} of video {name!r} has no class in `classes`", field="classes"
                ) from None

        video = read_davis_sequence(dst, masks / name, name, i + 1, next_track, image_root, category_of)
        if not all_frames:
            keep = [t for t in range(len(video)) if video.is_annotated(t)]
            if entry.is_file():  # extracted frames without a mask are not part of the dataset
                for t in set(range(len(video))) - set(keep):
                    (image_root / video.frame_files[t]).unlink()
            video = _keep_frames(video, keep)
        else:
            video.annotated = None
        next_track += len(video.instances)
        videos.append(video)
    return write_ytvis(VisDataset(categories, videos), out / "instances.json")
