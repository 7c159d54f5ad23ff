"""Submission writers for the evaluation servers, fed frame by frame: one `SubmissionWriter` per video task,
made by `writer_for(task, out_dir)`.

* vis (YouTube-VIS / OVIS): `results.json` (a list of `{video_id, score, category_id, segmentations}` with
  compressed RLE, `None` where a track is absent) inside a zip at its root, as the CodaLab servers expect.
  Entries are streamed into the JSON file video by video; the current video's RLEs wait in a temporary
  file (`_SpilledVideo`), so memory holds only per-track indices and scores, not masks.
* vps (VIPSeg): `pan_pred/<video>/<frame>.png` (RGB ids) written as each frame arrives, and `pred.json`
  (`{annotations: [{video_id, annotations: [{image_id, file_name, segments_info}]}]}`) at `close()`, its
  entries kept in a temporary file until then.
* vss (VSPW): `<video>/<frame>.png` single-channel class indices 0..123 (255 void).

No writer holds a video of masks (dense or RLE) in memory. A submission may be written in parts (one video
each, e.g. by several processes): `writer_for(..., part=path)` writes a video's JSON to `path`, and the
writer of the whole submission takes the parts in order with `add_part`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from vidseg.io.imageio import write_png
from vidseg.structures import FrameResult, panoptic_to_rgb, semantic_to_vspw_png, track_class_and_score
from vidseg.types import VideoTask


@dataclass(frozen=True)
class VideoKey:
    """How the submission formats name a video.

    Attributes:
        name: VIPSeg's `video_id`, and the video's folder (VIPSeg `pan_pred/<name>/`, VSPW `<name>/`).
        id: YouTube-VIS's `video_id` (an integer in `results.json`); None for a video without one.
    """

    name: str
    id: int | None = None


class SubmissionWriter(Protocol):
    """One task's official prediction files, streamed to disk as the frames arrive.

    Frames come video by video, each video's in order; `result.frame_index` is the frame's position in its
    video, and a frame never added has no prediction. `file_name` names the frame's PNG (the GT's name;
    default `<frame_index:05d>.png`; vis: unused).
    """

    @property
    def submission(self) -> Path:
        """What `vidseg eval --pred` takes: the zip (vis) or the submission folder (vps, vss)."""
        ...

    @property
    def outputs(self) -> list[str]:
        """The files and folders written, relative to the submission folder."""
        ...

    def add_frame(self, video: VideoKey, result: FrameResult, file_name: str | None = None) -> None: ...

    def end_video(self, video: VideoKey, num_frames: int) -> None:
        """`video` has `num_frames` frames: those after the last one added have no prediction either."""
        ...

    def add_part(self, path: str | Path) -> None:
        """Append one part (the JSON a `writer_for(..., part=path)` writer of the same task wrote)."""
        ...

    def close(self) -> None:
        """Finish the files (once; later calls do nothing)."""
        ...

    def __enter__(self) -> SubmissionWriter: ...

    def __exit__(self, *exc: object) -> None: ...


def writer_for(
    task: VideoTask,
    out_dir: str | Path,
    category_ids: Sequence[int] | None = None,
    *,
    part: str | Path | None = None,
    zip_name: str = "results.zip",
) -> SubmissionWriter:
    """The writer of `task`'s submission in `out_dir` (see the module docstring).

    Args:
        category_ids: dataset category id of each contiguous class index (None: vis index + 1, vps the
            index itself; vss writes class indices).
        part: write one video's part: its JSON goes to `part` (vis: its result entries, no zip; vps: its
            `pred.json` entry; vss: its frame count), its PNGs to `out_dir` as usual.
        zip_name: vis: the zip's name in `out_dir` (`results.json` is written beside it, as its `.json`).
    """
    out = Path(out_dir)
    makers: dict[str, Callable[[], SubmissionWriter]] = {
        "vis": lambda: YtvisSubmissionWriter(out / zip_name if part is None else part, category_ids),
        "vps": lambda: VipsegSubmissionWriter(out, category_ids, json_path=part),
        "vss": lambda: VspwSubmissionWriter(out, json_path=part),
    }
    if task not in makers:
        raise ValueError(f"unknown video task {task!r}; expected one of {', '.join(makers)}")
    return makers[task]()


def _frame_png(result: FrameResult, file_name: str | None) -> str:
    return file_name if file_name is not None else f"{result.frame_index:05d}.png"


@dataclass
class _SpilledTrack:
    """Where one track's RLEs are in the spill file: per appearance, its frame, byte offset and length."""

    first: int
    frames: array = field(default_factory=lambda: array("q"))
    offsets: array = field(default_factory=lambda: array("q"))
    lengths: array = field(default_factory=lambda: array("q"))
    scores: dict[int, array] = field(default_factory=dict)  # class -> per-frame scores (float64)


class _SpilledVideo:
    """One video's objects grouped by track, with the RLEs (as their JSON text) in a temporary file.

    Gives exactly `VideoResult(video_id, frames).to_ytvis(...)` serialised with `json.dumps`, byte for byte
    (same track order, class and score rule, `None` for absent frames, last result of a track in a frame),
    where `frames` has an empty result at each index no frame was added for.
    """

    def __init__(self, video_id: int):
        self.video_id = video_id
        self.num_frames = 0
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="vidseg-ytvis-")  # noqa: SIM115 - closed in close()
        self._end = 0
        self._tracks: dict[int, _SpilledTrack] = {}

    def pad(self, num_frames: int) -> None:
        """Frames up to `num_frames` that were never added have no segmentation (`null`)."""
        self.num_frames = max(self.num_frames, num_frames)

    def add(self, frame: FrameResult) -> None:
        """Add `frame` at its `frame_index` (one past the last frame added if that is lower)."""
        self.pad(frame.frame_index)
        t = self.num_frames
        for rle, tid, cid, score in zip(frame.masks, frame.track_ids, frame.class_ids, frame.scores):
            data = json.dumps(rle).encode("ascii")
            self._file.write(data)
            track = self._tracks.setdefault(int(tid), _SpilledTrack(first=t))
            track.frames.append(t)
            track.offsets.append(self._end)
            track.lengths.append(len(data))
            track.scores.setdefault(int(cid), array("d")).append(float(score))
            self._end += len(data)
        self.num_frames += 1

    def write_entries(self, out: IO[str], category_ids: Sequence[int] | None, first: bool) -> int:
        """Append this video's entries (comma-separated, a leading comma unless `first`) to `out`; returns
        how many were written. Reads one RLE at a time back from the spill file."""
        self._file.flush()
        count = 0
        for _, track in sorted(self._tracks.items(), key=lambda kv: (kv[1].first, kv[0])):
            cls_id, score = track_class_and_score(track.scores)
            cat = category_ids[cls_id] if category_ids is not None else cls_id + 1
            head = {"video_id": self.video_id, "score": score, "category_id": int(cat)}
            out.write(("" if first and count == 0 else ",") + json.dumps(head)[:-1] + ', "segmentations": [')
            t_next = 0  # frames before this one are written
            n = len(track.frames)
            for i in range(n):
                t = track.frames[i]
                if i + 1 < n and track.frames[i + 1] == t:
                    continue  # two results of one track in a frame: the last one counts
                out.write("null, " * (t - t_next))
                self._file.seek(track.offsets[i])
                out.write(self._file.read(track.lengths[i]).decode("ascii"))
                out.write(", " if t + 1 < self.num_frames else "")
                t_next = t + 1
            out.write(", ".join(["null"] * (self.num_frames - t_next)) + "]}")
            count += 1
        return count

    def close(self) -> None:
        self._file.close()


class YtvisSubmissionWriter:
    """Streams YouTube-VIS results to a JSON file and, for a `.zip` target, zips it as `results.json` on
    `close()`.

    Args:
        out: the zip to write (e.g. `submission.zip`; the JSON is written beside it first, with suffix
            `.json`), or a `.json` path to write the JSON alone.
        category_ids: dataset category id of each contiguous class index (None: index + 1).
    """

    def __init__(self, out: str | Path, category_ids: Sequence[int] | None = None):
        out = Path(out)
        self.zip_path: Path | None = None if out.suffix == ".json" else out
        self.json_path = out.with_suffix(".json")
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.category_ids = category_ids
        self._file: IO[str] | None = open(self.json_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._file.write("[")
        self._first = True
        self._video: _SpilledVideo | None = None

    @property
    def submission(self) -> Path:
        return self.zip_path or self.json_path

    @property
    def outputs(self) -> list[str]:
        return [self.json_path.name] + ([self.zip_path.name] if self.zip_path is not None else [])

    def add_frame(self, video: VideoKey, result: FrameResult, file_name: str | None = None) -> None:
        """Add one frame (masks as RLE) at its `frame_index`; a new video finishes the previous one."""
        self._current(video).add(result)

    def end_video(self, video: VideoKey, num_frames: int) -> None:
        self._current(video).pad(num_frames)
        self._flush()

    def _current(self, video: VideoKey) -> _SpilledVideo:
        if video.id is None:
            raise ValueError(f"video {video.name!r}: YouTube-VIS results need a numeric video id")
        if self._video is not None and self._video.video_id != video.id:
            self._flush()
        if self._video is None:
            self._video = _SpilledVideo(video.id)
        return self._video

    def add_part(self, path: str | Path) -> None:
        """Append the entries of a part's JSON array (e.g. one video's), copied in chunks."""
        assert self._file is not None, "writer is closed"
        self._flush()
        with open(path, encoding="utf-8") as f:
            text = f.read(1 << 16)
            if not text.startswith("["):
                raise ValueError(f"{path}: not a JSON array")
            text = text[1:]
            started = False
            while True:
                more = f.read(1 << 16)
                chunk = text if more else text.rstrip()[:-1]  # the last chunk ends with "]"
                if chunk and not started:
                    self._file.write("" if self._first else ",")
                    started, self._first = True, False
                self._file.write(chunk)
                if not more:
                    break
                text = more

    def _flush(self) -> None:
        if self._video is not None:
            video, self._video = self._video, None
            assert self._file is not None, "writer is closed"
            try:
                written = video.write_entries(self._file, self.category_ids, self._first)
            finally:
                video.close()
            self._first = self._first and written == 0

    def close(self) -> None:
        """Finish the JSON and write the zip."""
        if self._file is None:
            return
        self._flush()
        self._file.write("]")
        self._file.close()
        self._file = None
        if self.zip_path is None:
            return
        tmp = self.zip_path.with_name(self.zip_path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(self.json_path, "results.json")
        shutil.move(tmp, self.zip_path)

    def __enter__(self) -> YtvisSubmissionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VipsegSubmissionWriter:
    """Writes `pan_pred/<video>/<frame>.png` per frame and `pred.json` on `close()`.

    Each frame's `pred.json` entry waits in a temporary file (memory: two integers per frame), and
    `close()` writes exactly what `json.dump({"annotations": [{video_id, annotations}, ...]})` would, the
    videos in order of their first frame (a part's videos: in the order `add_part` was called).

    Args:
        out_dir: submission folder.
        category_ids: dataset category id of each contiguous class index (None: identity, VIPSeg's 0..123).
        json_path: where the JSON goes (default `<out_dir>/pred.json`; e.g. one video's part of a split).
    """

    def __init__(self, out_dir: str | Path, category_ids: Sequence[int] | None = None,
                 json_path: str | Path | None = None):
        self.out_dir = Path(out_dir)
        self.json_path = Path(json_path) if json_path is not None else self.out_dir / "pred.json"
        self.category_ids = category_ids
        self._spill: IO[bytes] | None = tempfile.TemporaryFile(prefix="vidseg-vipseg-")  # noqa: SIM115 - closed in close()
        self._end = 0
        # The videos in order: a frame-fed video's id (its frames' entries: offsets, lengths in `_frames`),
        # or the (offset, length) of a whole video entry taken from a part.
        self._videos: list[str | tuple[int, int]] = []
        self._frames: dict[str, tuple[array, array]] = {}

    @property
    def submission(self) -> Path:
        return self.out_dir

    @property
    def outputs(self) -> list[str]:
        return [self.json_path.name, "pan_pred"]

    def add_frame(self, video: VideoKey, result: FrameResult, file_name: str | None = None) -> None:
        """`result.panoptic` [H, W] ids with `result.segments`; `file_name` = the GT frame's PNG name."""
        if result.panoptic is None:
            raise ValueError("FrameResult has no panoptic map")
        segments = [
            {"id": int(s.id), "category_id": self._category(s.category_id), "iscrowd": 0} for s in result.segments
        ]
        name = _frame_png(result, file_name)
        write_png(self.out_dir / "pan_pred" / video.name / name, panoptic_to_rgb(result.panoptic))
        entry = {"image_id": Path(name).stem, "file_name": name, "segments_info": segments}
        if video.name not in self._frames:
            self._frames[video.name] = (array("q"), array("q"))
            self._videos.append(video.name)
        offsets, lengths = self._frames[video.name]
        offsets.append(self._end)
        lengths.append(self._spill_text(json.dumps(entry)))

    def end_video(self, video: VideoKey, num_frames: int) -> None:
        """Nothing to write: a frame without a prediction has no PNG and no entry."""

    def add_part(self, path: str | Path) -> None:
        """Append the videos of a part's `{"annotations": [...]}` as they are."""
        with open(path, encoding="utf-8") as f:
            videos = json.load(f)["annotations"]
        for video in videos:
            start = self._end
            self._videos.append((start, self._spill_text(json.dumps(video))))

    def _spill_text(self, text: str) -> int:
        data = text.encode("ascii")
        assert self._spill is not None, "writer is closed"
        self._spill.write(data)
        self._end += len(data)
        return len(data)

    def _category(self, c: int) -> int:
        return int(self.category_ids[c]) if self.category_ids is not None else int(c)

    def close(self) -> None:
        """Write the JSON (once)."""
        if self._spill is None:
            return
        spill, self._spill = self._spill, None
        spill.flush()

        def read(offset: int, length: int) -> str:
            spill.seek(offset)
            return spill.read(length).decode("ascii")

        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.json_path.with_name(self.json_path.name + ".tmp")  # a reader never sees half a file
        with spill, open(tmp, "w", encoding="utf-8") as f:
            f.write('{"annotations": [')
            for i, video in enumerate(self._videos):
                f.write(", " if i else "")
                if isinstance(video, tuple):
                    f.write(read(*video))
                    continue
                f.write('{"video_id": ' + json.dumps(video) + ', "annotations": [')
                offsets, lengths = self._frames[video]
                for j, (offset, length) in enumerate(zip(offsets, lengths)):
                    f.write((", " if j else "") + read(offset, length))
                f.write("]}")
            f.write("]}")
        os.replace(tmp, self.json_path)

    def __enter__(self) -> VipsegSubmissionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VspwSubmissionWriter:
    """Writes `<out>/<video>/<frame>.png` with class indices 0..123 (void 255) per frame.

    Args:
        out_dir: submission folder.
        json_path: where to list the frames written, one line `{"video": name, "frames": count}` per video
            (e.g. one video's part of a split); None: no list (the format is the PNGs alone).
    """

    def __init__(self, out_dir: str | Path, json_path: str | Path | None = None):
        self.out_dir = Path(out_dir)
        self.json_path = Path(json_path) if json_path is not None else None
        self._frames: dict[str, int] = {}  # video -> frames written
        self._closed = False

    @property
    def submission(self) -> Path:
        return self.out_dir

    @property
    def outputs(self) -> list[str]:
        return list(self._frames)

    def add_frame(self, video: VideoKey, result: FrameResult, file_name: str | None = None) -> None:
        """`result.semantic` [H, W] (class index, -1 void)."""
        if result.semantic is None:
            raise ValueError("FrameResult has no semantic map")
        write_png(self.out_dir / video.name / _frame_png(result, file_name), semantic_to_vspw_png(result.semantic))
        self._frames[video.name] = self._frames.get(video.name, 0) + 1

    def end_video(self, video: VideoKey, num_frames: int) -> None:
        """Nothing to write: a frame without a prediction has no PNG."""

    def add_part(self, path: str | Path) -> None:
        """Count a part's videos as written (their PNGs are in the folder already)."""
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            self._frames[str(entry["video"])] = self._frames.get(str(entry["video"]), 0) + int(entry["frames"])

    def close(self) -> None:
        """Write the frame list (once), when asked for one."""
        if self._closed:
            return
        self._closed = True
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            lines = [json.dumps({"video": v, "frames": n}) for v, n in self._frames.items()]
            self.json_path.write_text("\n".join(lines), encoding="utf-8")

    def __enter__(self) -> VspwSubmissionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
