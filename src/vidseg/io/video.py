"""Streaming video input and H.264 output.

`open_video` accepts a video file (mp4/mov/webm/avi/mkv through PyAV), a folder of jpg/png frames
(natural sort: 2.jpg before 10.jpg), a single image, or any iterable of HxWx3 uint8 arrays. Frames are
produced lazily as RGB uint8 [H, W, 3]: the whole video is never in memory. Missing, empty, corrupt or
unsupported input raises `DataFormatError` naming the path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Generator, Iterable, Iterator, Sized
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from vidseg.errors import DataFormatError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# Called with (frame index after stride, the error) for each frame a tolerant reader skips.
FrameErrorHandler = Callable[[int, DataFormatError], None]


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before reading it.

    Attributes:
        source: path, or "<iterable>".
        fps: frames per second of the source (divided by the stride), None when unknown.
        num_frames: frames the stream will yield (after stride), None when unknown.
        height, width: size of the yielded frames (after resizing), None when unknown.
    """

    source: str
    fps: float | None
    num_frames: int | None
    height: int | None
    width: int | None


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically ("f2" < "f10")."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def resized_shape(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) after scaling the short side to `short_side` (unchanged if None)."""
    if short_side is None:
        return height, width
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class VideoSource:
    """A lazily read stream of RGB frames.

    Args:
        source: video path, frame-folder path, image path, or an iterable of [H, W, 3] uint8 arrays.
        short_side: resize every frame so its short side has this length (None keeps the size).
        stride: yield every `stride`-th frame.

    Iterating yields [H, W, 3] uint8 arrays. A path source can be iterated several times.
    """

    def __init__(
        self,
        source: str | Path | Iterable[np.ndarray],
        short_side: int | None = None,
        stride: int = 1,
    ):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.short_side = short_side
        self.stride = stride
        self._iterable: Iterable[np.ndarray] | None = None
        self._frame_files: list[Path] = []
        self._frame_size: tuple[int, int] | None = None  # a frame folder's first frame (h, w)
        if isinstance(source, (str, Path)):
            self.path: Path | None = Path(source)
            self.kind = self._probe_path(self.path)
        else:
            self.path = None
            self.kind = "iterable"
            self._iterable = source
            self.info = VideoInfo("<iterable>", None, _len_or_none(source, stride), None, None)

    # -- probing ------------------------------------------------------------------------------------------

    def _probe_path(self, path: Path) -> str:
        if not path.exists():
            raise DataFormatError(path, "no such file or directory")
        if path.is_dir():
            self._frame_files = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                key=lambda p: natural_key(p.name),
            )
            if not self._frame_files:
                raise DataFormatError(path, f"folder has no frames ({', '.join(IMAGE_EXTENSIONS)})")
            h, w = self._image_size(self._frame_files[0])
            self._frame_size = (h, w)
            self._set_info(None, len(self._frame_files), h, w)
            return "folder"
        suffix = path.suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            self._frame_files = [path]
            h, w = self._image_size(path)
            self._set_info(None, 1, h, w)
            return "image"
        if suffix in VIDEO_EXTENSIONS:
            self._probe_video(path)
            return "video"
        raise DataFormatError(
            path, f"unsupported file type {suffix or '(none)'!r}; expected a video "
            f"({', '.join(VIDEO_EXTENSIONS)}), an image or a folder of frames"
        )

    def _probe_video(self, path: Path) -> None:
        if path.stat().st_size == 0:
            raise DataFormatError(path, "file is empty")
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise DataFormatError(path, "file has no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.base_rate
                fps = float(rate) if rate else None
                frames = stream.frames or None
                h, w = stream.codec_context.height, stream.codec_context.width
                # Decoding the first frame catches files whose header parses but whose data is broken.
                next(container.decode(stream))
        except DataFormatError:
            raise
        except (av.error.FFmpegError, StopIteration, UnicodeDecodeError) as e:
            raise DataFormatError(path, f"cannot decode video ({_av_reason(e)})") from None
        if not h or not w:
            raise DataFormatError(path, "video stream has no frame size")
        self._set_info(fps, frames, h, w)

    def _image_size(self, path: Path) -> tuple[int, int]:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise DataFormatError(path, f"cannot read image ({e})") from None
        return h, w

    def _set_info(self, fps: float | None, frames: int | None, h: int, w: int) -> None:
        oh, ow = resized_shape(h, w, self.short_side)
        self.info = VideoInfo(
            str(self.path),
            None if fps is None else fps / self.stride,
            None if frames is None else math.ceil(frames / self.stride),
            oh,
            ow,
        )

    # -- reading ------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.indexed():
            yield frame

    def indexed(self, on_error: FrameErrorHandler | None = None) -> Generator[tuple[int, np.ndarray], None, None]:
        """Yield (frame index after stride, [H, W, 3] uint8 frame).

        Without `on_error`, an unreadable frame raises `DataFormatError` and ends the stream. With it,
        the frame is skipped: `on_error(index, error)` is called and reading goes on with the next one
        (a video is decoded packet by packet so one bad packet costs one frame, not the rest of the video).
        """
        if self.kind == "video":
            yield from self._iter_video(on_error)
        elif self.kind in ("folder", "image"):
            for index, path in enumerate(self._frame_files[:: self.stride]):
                try:
                    frame = self._read_image(path)
                except DataFormatError as e:
                    if on_error is None:
                        raise
                    on_error(index, e)
                    continue
                self._check_frame_size(path, index, frame)
                yield index, self._resize(frame)
        else:
            assert self._iterable is not None
            for i, frame in enumerate(self._iterable):
                if i % self.stride:
                    continue
                try:
                    frame = _check_array(frame, i)
                except DataFormatError as e:
                    if on_error is None:
                        raise
                    on_error(i // self.stride, e)
                    continue
                yield i // self.stride, self._resize(frame)

    def _iter_video(self, on_error: FrameErrorHandler | None) -> Iterator[tuple[int, np.ndarray]]:
        assert self.path is not None
        index = -1
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                # Slice threads only: frame threading delays output and errors by several packets, so a
                # decode error could not be pinned to the frame it lost.
                stream.thread_type = "SLICE"
                clock = _FrameClock(stream)
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError as e:
                        # The decoder recovers at the next packet; only this packet's frame is lost.
                        lost = clock.lost(packet.pts)
                        if lost % self.stride:
                            continue  # a frame the stride leaves out anyway
                        err = DataFormatError(self.path, f"cannot decode frame {lost // self.stride} "
                                                         f"({_av_reason(e)})")
                        if on_error is None:
                            raise err from None
                        on_error(lost // self.stride, err)
                        continue
                    for frame in frames:
                        index = clock.index(frame.pts)
                        if index % self.stride:
                            continue
                        if self.short_side is not None:
                            oh, ow = resized_shape(frame.height, frame.width, self.short_side)
                            frame = frame.reformat(width=ow, height=oh, interpolation="BILINEAR")
                        yield index // self.stride, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise DataFormatError(self.path, f"decoding failed after frame {index} ({_av_reason(e)})") from None

    def _check_frame_size(self, path: Path, index: int, frame: np.ndarray) -> None:
        """A folder frame of another size than the first is an error, never skipped: the frame is readable,
        and a video whose size changes is inconsistent as a whole (tracks, overlay and files assume one)."""
        if self._frame_size is None or frame.shape[:2] == self._frame_size:
            return
        (h, w), (h0, w0) = frame.shape[:2], self._frame_size
        raise DataFormatError(path, f"frame is {w}x{h}, the first frame ({self._frame_files[0].name}) is "
                              f"{w0}x{h0}; all frames of a video must have one size", field=f"frame {index}")

    def _read_image(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise DataFormatError(path, f"cannot read image ({e})") from None

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        if self.short_side is None:
            return frame
        h, w = frame.shape[:2]
        oh, ow = resized_shape(h, w, self.short_side)
        if (oh, ow) == (h, w):
            return frame
        return np.asarray(Image.fromarray(frame).resize((ow, oh), Image.Resampling.BILINEAR))


def open_video(
    source: str | Path | Iterable[np.ndarray], short_side: int | None = None, stride: int = 1
) -> VideoSource:
    """Open a video, frame folder, image or iterable of frames as a lazy RGB stream."""
    return VideoSource(source, short_side=short_side, stride=stride)


class VideoWriter:
    """Writes RGB frames to an H.264 mp4 (yuv420p, so odd sizes are padded by one pixel).

    Use as a context manager; the file is finalised on close, also when an exception (Ctrl-C) ends
    the writing, so every frame written so far stays playable.
    """

    def __init__(self, path: str | Path, fps: float = 30.0, crf: int = 23, preset: str = "veryfast"):
        self.path = Path(path)
        self.preset = preset
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(30)
        self.crf = crf
        self.frames_written = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None

    def write(self, frame: np.ndarray) -> None:
        """Append one [H, W, 3] uint8 RGB frame (all frames must share the first frame's size)."""
        frame = _check_array(frame, self.frames_written)
        h, w = frame.shape[:2]
        if self._container is None:
            self._container = av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream("libx264", rate=self.fps)
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": self.preset}
        assert self._stream is not None
        if (h + h % 2, w + w % 2) != (self._stream.height, self._stream.width):
            raise ValueError(f"frame {self.frames_written} is {w}x{h}, the video is "
                             f"{self._stream.width}x{self._stream.height}")
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        assert self._stream is not None  # opened together with the container
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_array(frame: np.ndarray, index: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise DataFormatError(None, f"expected an HxWx3 array, got shape {frame.shape}", field=f"frame {index}")
    if frame.dtype != np.uint8:
        raise DataFormatError(None, f"expected uint8 pixels, got {frame.dtype}", field=f"frame {index}")
    return frame


class _FrameClock:
    """Frame index of a decoded frame (or lost packet) from its timestamp.

    Constant-rate video: index = (pts - pts of frame 0) x time_base x fps, so frames keep their position
    when a packet before them is lost. Without timestamps, or where they would not increase (variable rate),
    the index is one past the previous frame's.
    """

    def __init__(self, stream: av.video.stream.VideoStream):
        rate = stream.average_rate or stream.guessed_rate
        self._scale = None if not rate or stream.time_base is None else stream.time_base * rate
        self._start = stream.start_time or 0
        self._last = -1
        self._lost_any = False

    def position(self, pts: int | None) -> int | None:
        """Index given by the timestamp alone (None without one)."""
        if pts is None or self._scale is None:
            return None
        return round((pts - self._start) * self._scale)

    def index(self, pts: int | None) -> int:
        """Index of the next decoded frame (frames come out in presentation order)."""
        if self._last < 0 and not self._lost_any and pts is not None:
            self._start = pts  # the first frame is frame 0, whatever start time the container declares
        position = self.position(pts)
        self._last = self._last + 1 if position is None else max(self._last + 1, position)
        return self._last

    def lost(self, pts: int | None) -> int:
        """Index of the frame of a packet that failed to decode (packets arrive in decoding order)."""
        self._lost_any = True
        position = self.position(pts)
        return self._last + 1 if position is None else position


def _len_or_none(source: object, stride: int) -> int | None:
    if not isinstance(source, Sized):
        return None
    try:
        return math.ceil(len(source) / stride)
    except TypeError:  # sized by type but not by value, as a 0-d array
        return None


def _av_reason(e: Exception) -> str:
    return (getattr(e, "strerror", None) or str(e)).splitlines()[0]
