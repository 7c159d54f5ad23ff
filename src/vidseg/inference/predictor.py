"""Streaming video segmentation: frames in, `FrameResult`s out, memory independent of the video length.

    predictor = VideoPredictor.from_checkpoint("runs/tracker/ckpt_0040000", task="vis")
    for result in predictor.run("my_video.mp4"):   # a video, frame folder, image or iterable of frames
        ...                                        # FrameResult: RLE masks, track/class ids, scores

Every frame is resized (short side `inference.min_size`, long side at most `inference.max_size`), run
through `VideoSegmentationModel.step` with the video model's state carried from frame to frame, and its
masks are mapped back onto the original frame (`FrameGeometry`). Results leave as RLE / numpy on the CPU.

Online mode (MinVIS, DVIS++ online, Local2Global, or DVIS++ offline without its refiner): one result per
frame, as soon as the frame is in; classes are each slot's logits averaged over the frames seen so far
(softmax over K+1 classes, or the sigmoid of K for focal heads such as Local2Global's).
`step(frame)` processes one frame; `run(source)` is exactly a loop of `step`s, so both give identical
results.

Offline mode (DVIS++ offline): the tracker still steps over every frame with its state carried, so slot q
is the same object in the whole video. The refiner runs over windows of `window` frames that overlap by
`2 * overlap` frames: every window but the first starts with `overlap` frames that were already emitted
and every window but the last ends with `overlap` frames that the next window emits, so each emitted frame
has at least `overlap` frames of context on both sides (except at the ends of the video). Only a window's
frames are held (mask features on the CPU), so memory is bounded by `window`, not by the video length.
`push(frame)` returns the results that became final, `flush()` the rest at the end; `run` is built on them.

Ids across windows: a result's id depends only on its slot (VIS: slot x K + class + 1; VPS: thing = slot
+ 1, stuff = Q + 1 + class), and slots are consistent across windows because the tracker state is carried.
The class probabilities that select and label the results of a window are the running mean, weighted by
emitted frames, of every window's refined probabilities so far (as online mode averages logits over the
frames so far): the label of an object settles as the video goes on instead of jumping with each window, and
with `window` >= the video length the result is exactly that of a single refiner pass over the video.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vidseg.bundled import default_weights
from vidseg.config import ExperimentConfig
from vidseg.data.classes import dataset_classes
from vidseg.devices import resolve_device
from vidseg.errors import CheckpointError, ConfigError, DataFormatError
from vidseg.inference.clip_record import ClipRecord
from vidseg.inference.postprocess import FrameGeometry, VideoPostprocessor
from vidseg.inference.video_record import VideoRecord
from vidseg.io.background import read_ahead
from vidseg.io.checkpoint import read_classes
from vidseg.io.video import VideoInfo, VideoSource, open_video
from vidseg.malloc import release_free_memory
from vidseg.models.model import VideoSegmentationModel, load_model
from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.outputs import SegmenterOutput
from vidseg.models.video import ModelStep
from vidseg.structures import FrameResult
from vidseg.types import VIDEO_TASK, ClassInfo, VideoTask

Mode = Literal["online", "offline"]
Amp = Literal["none", "bf16", "fp16"]
OnError = Literal["skip", "stop"]
Source = str | Path | Iterable[np.ndarray] | VideoSource

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Frames between heap trims (`vidseg.malloc`): a trim costs about a millisecond.
TRIM_EVERY = 50


# Names `VideoPredictor.from_pretrained` knows besides checkpoint paths.
PRETRAINED = ("demo",)


def class_info_from_config(config: ExperimentConfig, stored: ClassInfo | None = None) -> ClassInfo:
    """The model's classes: `stored` (those its checkpoint stores), else, for a checkpoint written before
    vidseg stored them, those `config.data` names (`vidseg.data.classes.dataset_classes`), else
    `ClassInfo.generic(K)`. With `inference.thing_rule: first`, class k is a thing when k < the number of
    thing classes (DVIS++'s VPS rule)."""
    k = config.model.num_classes
    info = stored or dataset_classes(config.data, k) or ClassInfo.generic(k)
    if config.inference.thing_rule == "first":
        things = sum(info.is_thing)
        info = replace(info, is_thing=tuple(c < things for c in range(len(info.names))))
    return info
    return None


@dataclass(frozen=True)
class SkippedFrame:
    """A source frame that could not be read and was left out (`index` counts frames after the stride)."""

    index: int
    reason: str


def inference_size(height: int, width: int, min_size: int | None, max_size: int | None) -> tuple[int, int]:
    """(h, w) the model sees: short side scaled to `min_size`, then scaled down so the long side is at most
    `max_size` (Mask2Former's test-time ResizeShortestEdge). None leaves that limit out."""
    scale = 1.0 if min_size is None else min_size / min(height, width)
    if max_size is not None and max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass
class _Buffered:
    """One frame waiting in the offline window: its model step (slimmed), source index and geometry."""

    step: ModelStep
    index: int
    geometry: FrameGeometry


@dataclass
class _OfflineState:
    """The offline window and the running video-level class probabilities.

    Attributes:
        buffer: the frames of the current window, oldest first.
        emitted: how many frames at the head of `buffer` were already emitted (the left context).
        class_probs: [Q, K+1] running frame-weighted mean of the windows' class probabilities.
        frames: frames emitted so far (the weight of `class_probs`).
    """

    buffer: list[_Buffered] = field(default_factory=list)
    emitted: int = 0
    class_probs: Tensor | None = None
    frames: int = 0


class VideoPredictor:
    """Streams a video through a `VideoSegmentationModel` (see the module docstring).

    Args:
        model: the model; moved to `device` and put in eval mode.
        config: the experiment config it was trained with (`inference` and `model.num_classes` are used).
        task: "vis", "vps" or "vss"; default `config.inference.task` (image task names map to video ones).
        mode: "online" or "offline"; default offline for DVIS++ offline models, else online.
        window: offline: frames per refiner window (> 2 x overlap).
        overlap: offline: frames of context on each side of a window's emitted frames (default window // 6).
        device: "cpu", "cuda", "cuda:N"; default CUDA when available.
        amp: "bf16"/"fp16" runs the model under CUDA autocast; on the CPU the model always runs in fp32.
        classes: class names / thing flags / dataset ids; default from the dataset named in the config.
        score_threshold: objects scoring below it are dropped from every `FrameResult` (their masks, ids
            and scores; semantic/panoptic maps are kept). Default 0 keeps all (what the benchmarks score).
        record: keep each frame's record for `finish()` (the official whole-video results) in a temporary
            file: about Q x (h/4) x (w/4) x 4 bytes per frame (online: mask logits; offline: mask features),
            5.8 MB at 360x640 with 100 queries. False for endless streams that only need `step` results.
        read_ahead: frames `run`/`stream`/`predict` decode ahead in a background thread, overlapping decoding
            with the model (0: decode in the calling thread).

    One predictor segments one video at a time: `run`/`stream` start a new video themselves, while `step`
    and `push` continue the current one. After `run`, call `reset()` before stepping through another
    video (`step` then raises `RuntimeError` rather than carry the finished video's tracks into it).
    """

    def __init__(
        self,
        model: VideoSegmentationModel,
        config: ExperimentConfig,
        *,
        task: str | None = None,
        mode: str | None = None,
        window: int = 30,
        overlap: int | None = None,
        device: torch.device | str | None = None,
        amp: str = "none",
        classes: ClassInfo | None = None,
        score_threshold: float = 0.0,
        record: bool = True,
        read_ahead: int = 4,
    ):
        task_name = task or config.inference.task
        if task_name not in VIDEO_TASK:
            raise ConfigError(f"task: unknown {task_name!r}; expected vis, vps or vss")
        self.task: VideoTask = VIDEO_TASK[task_name]
        if mode not in (None, "online", "offline"):
            raise ConfigError(f"mode: unknown {mode!r}; expected online or offline")
        if mode == "offline" and not model.is_offline:
            raise ConfigError(f"mode: offline needs a refiner (a dvis_offline model), this model is "
                              f"{model.method!r}; use mode online")
        self.mode: Mode = mode or ("offline" if model.is_offline else "online")  # type: ignore[assignment]
        overlap = window // 6 if overlap is None else overlap
        if window < 1 or overlap < 0 or window <= 2 * overlap:
            raise ConfigError(f"window/overlap: need window > 2 x overlap >= 0, got window {window}, "
                              f"overlap {overlap}")
        if amp not in ("none", *_AMP_DTYPES):
            raise ConfigError(f"amp: unknown {amp!r}; expected none, bf16 or fp16")
        self.device = resolve_device(device)
        if amp != "none" and self.device.type != "cuda":
            warnings.warn(f"amp {amp!r} is for CUDA; running in fp32 on {self.device}", stacklevel=2)
            amp = "none"
        self.amp: Amp = amp  # type: ignore[assignment]
        self.window, self.overlap = window, overlap
        self.score_threshold = float(score_threshold)
        self.record = record
        self.read_ahead = read_ahead
        self.model = model.to(self.device).eval()
        self.config = config
        self.classes = classes or class_info_from_config(config)
        if len(self.classes.names) != config.model.num_classes:
            raise ConfigError(f"classes: {len(self.classes.names)} given, the model has "
                              f"{config.model.num_classes}")
        inf = config.inference
        # Focal (sigmoid) heads such as Local2Global's have K logits and no no-object class.
        self.postprocessor = VideoPostprocessor(
            self.task, self.classes.is_thing, inf.test_topk, inf.object_mask_threshold, inf.overlap_threshold,
            classification=config.model.classification,
        )
        # OMA at inference only in its "masked inference" variant (MVC paper Table 6; off by default).
        oma = config.oma
        self._oma = ObjectMaskedAttention(oma) if oma.enabled and oma.masked_inference else None
        self.checkpoint: Path | None = None
        self.stage: str | None = None
        self.video_info: VideoInfo | None = None
        self._record: ClipRecord | VideoRecord | None = None
        self.reset()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: torch.device | str | None = None, **kwargs: object
    ) -> VideoPredictor:
        """A predictor for a checkpoint of any stage (see `vidseg.models.model.load_model`).

        Raises:
            CheckpointError: missing, corrupt or mismatched checkpoint.
        """
        device = resolve_device(device)
        loaded = load_model(path, device=device)
        if kwargs.get("classes") is None:
            kwargs["classes"] = class_info_from_config(loaded.config, read_classes(loaded.path))
        predictor = cls(loaded.model, loaded.config, device=device, **kwargs)  # type: ignore[arg-type]
        predictor.checkpoint, predictor.stage = loaded.path, loaded.stage
        return predictor

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "demo", **kwargs: object) -> VideoPredictor:
        """A predictor for a bundled model by name, or for a checkpoint directory (as `from_checkpoint`).

        "demo": the bundled DVIS++ model (frozen DINOv2 ViT-S/14, class-agnostic, trained on DAVIS-2016;
        offline by default, `mode="online"` for the tracker alone). `kwargs` go to `from_checkpoint`
        (device, task, mode, ...).

        Raises:
            CheckpointError: an unknown name that is no checkpoint path either, or a bad checkpoint.
        """
        if str(name_or_path) in PRETRAINED:
            path = default_weights()
            if path is None:
                raise CheckpointError(f"pretrained {str(name_or_path)!r}: the bundled model is missing from "
                                      "this installation (vidseg/assets/demo_model)")
            return cls.from_checkpoint(path, **kwargs)  # type: ignore[arg-type]
        if not Path(name_or_path).exists():
            raise CheckpointError(f"{name_or_path}: neither a bundled model ({', '.join(PRETRAINED)}) "
                                  "nor an existing checkpoint")
        return cls.from_checkpoint(name_or_path, **kwargs)  # type: ignore[arg-type]

    # -- streaming ----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Start a new video: forget the tracker state, the running classes and the offline window."""
        self._state = self.model.init_state()
        self._classes = self.postprocessor.init_state()
        self._offline = _OfflineState()
        self._next_index = 0
        self._geometry: FrameGeometry | None = None
        self.frames_seen = 0
        self.skipped_frames: list[SkippedFrame] = []
        self._run_done = False  # set when a run()/stream() ends: its video is finished
        if self._record is not None:
            self._record.close()
        self._record = self._new_record() if self.record else None

    def _new_record(self) -> ClipRecord | VideoRecord:
        """What `finish()` needs of each frame: a clip decoder's record keeps the pixel-decoder outputs (the
        video is decoded as clips at the end); otherwise the per-frame record, with the refiner's inputs
        in offline mode."""
        decoder = self.model.video.clip_decoder
        if decoder is not None:
            return ClipRecord(decoder)
        return VideoRecord(self.model.video.window_refiner if self.mode == "offline" else None)

    def step(self, frame: np.ndarray, frame_index: int | None = None) -> FrameResult:
        """Online: segment and track one [H, W, 3] uint8 RGB frame of the current video.

        `frame_index` (default: one past the previous frame's) is the result's `frame_index`.
        """
        if self.mode != "online":
            raise ValueError("step() is online; in offline mode use push() and flush()")
        return self.push(frame, frame_index)[0]

    def push(
        self,
        frame: np.ndarray,
        frame_index: int | None = None,
        *,
        output_size: tuple[int, int] | None = None,
        provisional: bool = True,
    ) -> list[FrameResult]:
        """Add one frame; returns the streamed results that are ready now (online: this frame's, with classes
        averaged over the frames so far; offline: a window's emitted frames once the window is full).

        Every frame is also recorded for `finish()`, which gives the official whole-video results.

        Args:
            output_size: (H0, W0) the results are mapped to, for a frame that was already resized for the
                model (default: the frame's own size).
            provisional: False only records the frame (no streamed results, no windowed refinement).
        """
        if self._run_done:
            raise RuntimeError("the predictor's last video was segmented by run(); call reset() before "
                               "step()/push() start another")
        index = self._next_index if frame_index is None else int(frame_index)
        self._next_index = index + 1
        images, geometry = self._prepare(frame, index)
        if output_size is not None:
            geometry = replace(geometry, output_size=(int(output_size[0]), int(output_size[1])))
        with torch.inference_mode():
            with self._autocast():
                step, self._state = self.model.step(images, self._state)
            self.frames_seen += 1
            if self.frames_seen % TRIM_EVERY == 0:
                release_free_memory()  # a long video must not pile up freed-but-resident heap pages
            if self._record is not None:
                self._record.add(step, index, geometry)
            if not provisional:
                return []
            if self.mode == "online":
                # Post-processing (mask resizing, class averaging) stays in fp32, outside autocast.
                result, self._classes = self.postprocessor.online(step.frame, self._classes, geometry)
                return self._keep_confident([replace(result, frame_index=index)])
            self._offline.buffer.append(_Buffered(strip_for_refiner(step), index, geometry))
            if len(self._offline.buffer) < self.window:
                return []
            return self._keep_confident(self._refine(final=False))

    def finish(self) -> Iterator[FrameResult]:
        """The official results of every frame pushed since `reset()`, in frame order, lazily.

        As the official code decides them once the video has ended: online models average each slot's class
        logits over the whole video and take the top-k (`inference.test_topk`, MAX_NUM) once; the offline
        model refines the whole video in one pass when it has at most `inference.refine_max_frames` frames
        (longer videos: overlapping windows of that size, an approximation); Video Mask2Former decodes the
        whole video as one clip up to `inference.clip_max_frames` frames (longer: clips of that size with
        queries matched between them, `vidseg.inference.clip_record`). Memory: one frame (Video Mask2Former:
        one clip); the per-frame record is on disk (see `vidseg.inference.video_record`).
        """
        if self._record is None:
            raise RuntimeError("finish() needs the predictor built with record=True")
        with torch.inference_mode():
            inf = self.config.inference
            max_frames = inf.clip_max_frames if self.model.is_clip else inf.refine_max_frames
            for k, result in enumerate(self._record.results(self.model, self.postprocessor, max_frames), 1):
                if k % TRIM_EVERY == 0:
                    release_free_memory()
                yield self._keep_confident([result])[0]

    def predict(self, source: Source, *, on_error: OnError = "skip") -> Iterator[FrameResult]:
        """The official whole-video results of `source` (a new video: `reset()` first), in frame order.

        Unlike `run`, nothing is produced until the whole video is read (see `finish`).
        """
        self.reset()
        video = source if isinstance(source, VideoSource) else open_video(source)
        self.video_info = video.info
        def skipped(index: int, error: DataFormatError) -> None:
            self.skipped_frames.append(SkippedFrame(index, str(error)))
            _warn_skipped(self.skipped_frames[-1])

        frames = _decoded(video, on_error == "skip", self.read_ahead)
        try:
            for index, frame in frames:
                if isinstance(frame, DataFormatError):
                    skipped(index, frame)
                else:
                    self.push(frame, index, provisional=False)
        finally:
            frames.close()
        yield from self.finish()

    def flush(self) -> list[FrameResult]:
        """Offline: refine what is left of the video and return its results (online: nothing is held)."""
        if self.mode == "online" or len(self._offline.buffer) <= self._offline.emitted:
            return []
        with torch.inference_mode():
            return self._keep_confident(self._refine(final=True))

    def run(
        self,
        source: Source,
        *,
        on_error: OnError = "skip",
        on_skip: Callable[[SkippedFrame], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[FrameResult]:
        """Segment a whole video (a new one: `reset()` first) lazily, one result per readable frame.

        Args:
            source: video file, frame folder, image, iterable of [H, W, 3] uint8 frames, or a `VideoSource`.
            on_error: "skip": an unreadable frame is left out, recorded in `skipped_frames` and reported to
                `on_skip` (default: a warning); "stop": it raises `DataFormatError` after the results of
                the frames before it.
            should_stop: checked before each frame is read; when it returns True no more frames are read
                and the results of the frames already read are still produced (e.g. on Ctrl-C).
        """
        try:
            for _, result in self._stream(source, on_error, on_skip, should_stop, keep_frames=False):
                yield result
        finally:
            self._run_done = True  # also when the caller stops early: the state is that video's

    def stream(
        self,
        source: Source,
        *,
        on_error: OnError = "skip",
        on_skip: Callable[[SkippedFrame], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[np.ndarray, FrameResult]]:
        """`run`, yielding each original frame with its result (for overlays). Offline mode holds the
        frames of one window until their results are final."""
        try:
            for frame, result in self._stream(source, on_error, on_skip, should_stop, keep_frames=True):
                assert frame is not None
                yield frame, result
        finally:
            self._run_done = True

    def _stream(
        self,
        source: Source,
        on_error: OnError,
        on_skip: Callable[[SkippedFrame], None] | None,
        should_stop: Callable[[], bool] | None,
        keep_frames: bool,
    ) -> Iterator[tuple[np.ndarray | None, FrameResult]]:
        if on_error not in ("skip", "stop"):
            raise ConfigError(f"on_error: unknown {on_error!r}; expected skip or stop")
        self.reset()
        video = source if isinstance(source, VideoSource) else open_video(source)
        self.video_info = video.info
        report = on_skip or _warn_skipped

        def skipped(index: int, error: DataFormatError) -> None:
            record = SkippedFrame(index, str(error))
            self.skipped_frames.append(record)
            report(record)

        waiting: dict[int, np.ndarray] = {}
        frames = _decoded(video, on_error == "skip", self.read_ahead)
        stop: DataFormatError | None = None
        try:
            while should_stop is None or not should_stop():
                try:
                    index, frame = next(frames)
                except StopIteration:
                    break
                except DataFormatError as e:
                    stop = e
                    break
                if isinstance(frame, DataFormatError):
                    skipped(index, frame)
                    continue
                if keep_frames:
                    waiting[index] = frame
                for result in self.push(frame, index):
                    yield waiting.pop(result.frame_index, None), result
        finally:
            frames.close()  # closes the video file now, also when the caller stops early
        # After a stop (on_error="stop" or should_stop), the frames already read still get their results.
        for result in self.flush():
            yield waiting.pop(result.frame_index, None), result
        if stop is not None:
            raise stop

    # -- internals ----------------------------------------------------------------------------------------

    def _keep_confident(self, results: list[FrameResult]) -> list[FrameResult]:
        """`results` without the objects scoring below `score_threshold` (all of them at the default 0)."""
        if self.score_threshold <= 0:
            return results
        return [r.select(np.flatnonzero(r.scores >= self.score_threshold)) for r in results]

    def _autocast(self) -> AbstractContextManager[object]:
        if self.amp == "none":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=_AMP_DTYPES[self.amp])

    def _prepare(self, frame: np.ndarray, index: int) -> tuple[Tensor, FrameGeometry]:
        """[H0, W0, 3] uint8 -> (images [1, 3, h, w] float 0-255 on the device, geometry)."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise DataFormatError(None, f"expected an HxWx3 uint8 frame, got {frame.dtype} {frame.shape}",
                                  field=f"frame {index}")
        h0, w0 = frame.shape[:2]
        inf = self.config.inference
        h, w = inference_size(h0, w0, inf.min_size, inf.max_size)
        if (h, w) != (h0, w0):
            frame = np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR))
        d = self.model.segmenter.size_divisibility
        geometry = FrameGeometry((math.ceil(h / d) * d, math.ceil(w / d) * d), (h, w), (h0, w0))
        # One video, one frame size: a refiner window stacks the frames' mask features, and tracks matched
        # across frames, overlays and submission files all assume it (online too, not only offline).
        if self._geometry is not None and geometry != self._geometry:
            raise DataFormatError(None, f"is {w0}x{h0}, the video's first frame "
                                  f"{self._geometry.output_size[1]}x{self._geometry.output_size[0]}",
                                  field=f"frame {index}")
        self._geometry = geometry
        return self.model.segmenter.frames_to_batch([frame]), geometry

    def _refine(self, final: bool) -> list[FrameResult]:
        """Refine the window in the buffer and return its emitted frames' results (see module docstring)."""
        state = self._offline
        buffer = state.buffer
        with self._autocast():
            clip = self.model.refine([b.step for b in buffer], mask_feature_device="cpu", oma=self._oma)
        start, stop = state.emitted, len(buffer) if final else len(buffer) - self.overlap
        probs = clip.class_probs()[0].float().cpu()
        n = stop - start
        # Running mean; the first window's probabilities are used as they are (bit for bit).
        if state.class_probs is None:
            state.class_probs = probs
        else:
            state.class_probs = state.class_probs + (probs - state.class_probs) * (n / (state.frames + n))
        state.frames += n
        assert clip.mask_logits is not None
        masks = clip.mask_logits[0, start:stop].to(self.device, torch.float32)
        emitted = buffer[start:stop]
        results = list(self.postprocessor.clip(
            state.class_probs.to(self.device), masks, [b.index for b in emitted], emitted[0].geometry
        ))
        if final:
            state.buffer, state.emitted = [], 0
        else:
            keep = 2 * self.overlap
            state.buffer, state.emitted = buffer[len(buffer) - keep:] if keep else [], self.overlap
        del clip, masks
        release_free_memory()  # a window's refinement frees tens of MB of heap; keep it from staying resident
        return results


def _decoded(
    video: VideoSource, skip: bool, depth: int
) -> Generator[tuple[int, np.ndarray | DataFormatError], None, None]:
    """(index, frame) of `video`, decoded `depth` frames ahead in a background thread. With `skip`, an
    unreadable frame comes in its place as (index, its error), for the caller to report in order; without,
    its error is raised and ends the frames."""

    def frames_and_errors() -> Iterator[tuple[int, np.ndarray | DataFormatError]]:
        errors: list[tuple[int, DataFormatError]] = []
        frames = video.indexed((lambda index, error: errors.append((index, error))) if skip else None)
        try:
            for index, frame in frames:
                yield from errors
                errors.clear()
                yield index, frame
            yield from errors
        finally:
            frames.close()

    return read_ahead(frames_and_errors(), depth)


def strip_for_refiner(step: ModelStep) -> ModelStep:
    """What an offline window keeps of a step: what `refine` reads, with the mask features on the CPU.

    The segmenter's and tracker's per-frame masks ([1, Q, h, w] each, replaced by empty [1, Q, 0, 0]), aux
    outputs and multi-scale memory are dropped: they are the bulk of a step, and offline results come from
    the refiner's masks.
    """
    seg, frame = step.segmenter, step.frame
    b, q = seg.class_logits.shape[:2]
    no_masks = seg.class_logits.new_zeros(b, q, 0, 0)
    assert seg.mask_features is not None, "offline refinement needs the segmenter's mask features"
    slim_seg = SegmenterOutput(
        queries=seg.queries,
        raw_queries=seg.raw_queries,
        class_logits=seg.class_logits,
        mask_logits=no_masks,
        mask_features=seg.mask_features.to("cpu"),
        reid_embeddings=seg.reid_embeddings,
    )
    return ModelStep(replace(frame, mask_logits=no_masks, aux=[], references=None), slim_seg)


def _warn_skipped(frame: SkippedFrame) -> None:
    warnings.warn(f"skipped frame {frame.index}: {frame.reason}", stacklevel=2)
