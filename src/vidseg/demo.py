"""`vidseg demo`: a clip through the real reading and overlay pipeline.

vidseg does not ship a trained model yet. Until it does, the demo generates a synthetic clip with known
objects, encodes it as H.264, reads it back through `io.video` like any user video, and draws the clip's
ground-truth tracks with `io.visualize` — and it says so. With `--source`, the given video is read and
written back through the same pipeline, without masks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vidseg.io.video import VideoWriter, open_video
from vidseg.io.visualize import OverlayWriter
from vidseg.structures import FrameResult

NO_MODEL_NOTICE = (
    "note: vidseg ships no trained model yet; the overlay shows the ground-truth tracks of a "
    "generated clip (or, with --source, your video without masks) — it is not a model prediction"
)


def run_demo(
    source: str | Path | None = None,
    out_dir: str | Path = "vidseg_demo",
    num_frames: int = 48,
    log: Callable[[str], None] = print,
) -> Path:
    """Write `out_dir/overlay.mp4` and return its path."""
    out_dir = Path(out_dir)
    log(NO_MODEL_NOTICE)
    if source is None:
        return _synthetic_demo(out_dir, num_frames, log)
    video = open_video(source)
    log(f"reading {source} ({video.info.num_frames or '?'} frames at {video.info.fps or '?'} fps)")
    with OverlayWriter(out_dir, fps=video.info.fps) as overlay:
        for t, frame in enumerate(video):
            h, w = frame.shape[:2]
            overlay.write(frame, FrameResult(frame_index=t, height=h, width=w))
    assert overlay.mp4_path is not None
    return overlay.mp4_path


def _synthetic_demo(out_dir: Path, num_frames: int, log: Callable[[str], None]) -> Path:
    from vidseg.data.synthetic import generate_video

    clip = generate_video(seed=0, num_frames=num_frames, height=240, width=320)
    fps = 12.0
    clip_path = out_dir / "input.mp4"
    with VideoWriter(clip_path, fps=fps) as writer:
        for frame in clip.frames:
            writer.write(frame)
    log(f"generated a {num_frames}-frame clip: {clip_path}")
    video = open_video(clip_path)
    with OverlayWriter(out_dir, fps=video.info.fps, class_names=clip.class_names) as overlay:
        for t, frame in enumerate(video):
            masks = clip.instance_masks[t]
            result = FrameResult.from_masks(
                t, masks, clip.track_ids[t], clip.class_ids[t], [1.0] * len(masks)
            )
            overlay.write(frame, result)
    assert overlay.mp4_path is not None
    return overlay.mp4_path
