"""`vidseg segment`: one video through a `VideoPredictor` into an overlay, official-format files and a summary.

Ctrl-C (or SIGTERM) stops reading; the frames already read are finished, every writer is closed and
`summary.json` says `interrupted: true`, so the files on disk are complete and valid for those frames.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidseg.errors import VidsegError
from vidseg.evaluation.submission import VideoKey, writer_for
from vidseg.inference.predictor import OnError, SkippedFrame, Source, VideoPredictor
from vidseg.io.background import WriteBehind
from vidseg.io.video import VideoSource, open_video
from vidseg.structures import FrameResult

# ---------------------------------------------------------------------------------------------------------
# A video to files (`vidseg segment`)


@dataclass
class SegmentSummary:
    """What `segment_video` did; written as `summary.json`.

    Attributes:
        source: the input.
        frames: frames segmented (results written).
        skipped_frames: indices of unreadable frames that were left out.
        seconds: wall time of the segmentation loop; fps: frames / seconds.
        interrupted: stopped by Ctrl-C (SIGINT) or SIGTERM; the files hold the frames done.
        stop_signal: "SIGINT" or "SIGTERM" when interrupted, else None.
        expected_frames: frames the file's header announces (after the stride), None when unknown.
        ended_early: the video ended before `expected_frames` (a truncated or damaged file), with no
            error: the frames after the last one read are missing from every output.
        error: the error that stopped the run (e.g. a bad frame with on_error="stop"), None if none.
        outputs: files and folders written, relative to the output folder.
    """

    source: str
    task: str
    mode: str
    checkpoint: str | None
    stage: str | None
    device: str
    window: int | None
    overlap: int | None
    frames: int = 0
    skipped_frames: list[int] = field(default_factory=list)
    seconds: float = 0.0
    fps: float = 0.0
    interrupted: bool = False
    stop_signal: str | None = None
    expected_frames: int | None = None
    ended_early: bool = False
    error: str | None = None
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        d = dict(self.__dict__)
        d["num_skipped_frames"] = len(self.skipped_frames)
        return d


class _StopSignal:
    """Turns the first SIGINT/SIGTERM into a request to stop after the current frame (the second SIGINT
    interrupts at once). Installed only in the main thread, where Python delivers signals."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]


def segment_video(
    predictor: VideoPredictor,
    source: Source,
    out_dir: str | Path,
    *,
    on_error: OnError = "skip",
    progress: bool = True,
    min_score: float = 0.5,
    log: Callable[[str], None] | None = None,
    write_behind: int = 4,
) -> SegmentSummary:
    """Segment `source` into `out_dir`: `overlay.mp4`, the task's prediction files and `summary.json`.

    The overlay draws objects scoring at least `min_score` (VIS keeps the top-k results without a
    threshold, and unconfident masks would bury the objects); the prediction files keep every result.

    Prediction files (the official formats, the video named after the source file):
    VIS `results.json` (+ `results.zip` for the server; video_id 1), VPS `pan_pred/<video>/*.png` +
    `pred.json`, VSS `<video>/*.png`. Ctrl-C or SIGTERM stops after the current frame; every file is then
    complete for the frames done (the mp4 finalised, the JSON closed) and `summary.json` says so.

    The overlay is drawn and encoded in a background thread, up to `write_behind` frames behind the model
    (0: in this thread); frames are decoded ahead by the predictor (`VideoPredictor.read_ahead`).
    """
    from tqdm import tqdm

    from vidseg.io.visualize import OverlayWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = source if isinstance(source, VideoSource) else open_video(source)
    name = video.path.stem if video.path is not None else "video"
    info = video.info
    offline = predictor.mode == "offline"
    summary = SegmentSummary(
        source=info.source, task=predictor.task, mode=predictor.mode,
        checkpoint=None if predictor.checkpoint is None else str(predictor.checkpoint), stage=predictor.stage,
        device=str(predictor.device), window=predictor.window if offline else None,
        overlap=predictor.overlap if offline else None,
    )
    bar = tqdm(total=info.num_frames, unit="frame", desc=name, dynamic_ncols=True, disable=not progress)
    say = log or (lambda message: tqdm.write(message, file=sys.stderr))  # keeps the bar intact

    def skipped(frame: SkippedFrame) -> None:
        summary.skipped_frames.append(frame.index)
        bar.set_postfix(skipped=len(summary.skipped_frames))
        say(f"warning: skipped frame {frame.index}: {frame.reason}")

    start = time.perf_counter()
    writer = writer_for(predictor.task, out, predictor.classes.category_ids)
    key = VideoKey(name, id=1)  # the source is the submission's one video
    written = False
    next_index = 0  # one past the last frame written

    def write_official() -> None:
        # The files hold the official whole-video results of the frames read (`VideoPredictor.finish`:
        # classes averaged over the whole video, one refiner pass), not the streamed per-frame ones.
        nonlocal written, next_index
        if not written:
            written = True
            for result in predictor.finish():
                writer.add_frame(key, result)
                next_index = result.frame_index + 1

    overlay = OverlayWriter(out, fps=info.fps, class_names=predictor.classes.names)
    drawer: WriteBehind[tuple[np.ndarray, FrameResult]] = WriteBehind(lambda x: overlay.write(*x), write_behind)
    overlay_error: BaseException | None = None
    try:
        with _StopSignal() as stop:
            results = predictor.stream(video, on_error=on_error, on_skip=skipped,
                                       should_stop=lambda: stop.received is not None)
            for frame, result in results:
                summary.frames += 1  # its results are recorded; the overlay follows in the background
                bar.update(1)
                drawer.put((frame, confident(result, min_score)))
            write_official()
            summary.interrupted = stop.received is not None
            if stop.received is not None:
                summary.stop_signal = signal.Signals(stop.received).name
            else:
                _check_complete(summary, info.num_frames, next_index, say)
    except VidsegError as e:
        summary.error = str(e)
        raise
    finally:
        # Also on an error or a second Ctrl-C: finalise what was written so far. An overlay error is raised
        # once every other file is complete.
        overlay_error = drawer.close()
        overlay.close()
        write_official()
        # Unreadable frames after the last result are frames of the video too (VIS: no segmentation there).
        writer.end_video(key, max(summary.skipped_frames, default=-1) + 1)
        writer.close()
        bar.close()
        summary.seconds = round(time.perf_counter() - start, 3)
        summary.fps = round(summary.frames / summary.seconds, 3) if summary.seconds > 0 else 0.0
        summary.outputs = [*(["overlay.mp4"] if overlay.frames_written else []), *writer.outputs, "summary.json"]
        _write_json_atomic(out / "summary.json", summary.to_dict())
    if overlay_error is not None:
        raise overlay_error
    return summary


def _check_complete(summary: SegmentSummary, expected: int | None, read: int, say: Callable[[str], None]) -> None:
    """Record and say when the video ended before the frame count in its header: a truncated file decodes
    without an error up to where its data stops, and would otherwise pass for a shorter video."""
    summary.expected_frames = expected
    read = max(read, max(summary.skipped_frames, default=-1) + 1)
    if expected is not None and read < expected:
        summary.ended_early = True
        say(f"warning: video ended early: {read} of {expected} frames (the header's count) read; "
            "the file may be truncated")


def confident(result: FrameResult, min_score: float) -> FrameResult:
    """The result without the objects scoring below `min_score` (its semantic/panoptic maps are kept)."""
    return result.select(np.flatnonzero(result.scores >= min_score))


def _write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
