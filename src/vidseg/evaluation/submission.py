"""Submission writers for the evaluation servers, fed frame by frame.

* YouTube-VIS / OVIS: `results.json` (a list of `{video_id, score, category_id, segmentations}` with
  compressed RLE, `None` where a track is absent) inside a zip at its root, as the CodaLab servers expect.
  Entries are streamed into the JSON file video by video; the current video's RLEs wait in a temporary
  file (`_SpilledVideo`), so memory holds only per-track indices and scores, not masks.
* VIPSeg: `pan_pred/<video>/<frame>.png` (RGB ids) written as each frame arrives, and `pred.json`
  (`{annotations: [{video_id, annotations: [{image_id, file_name, segments_info}]}]}`) at `close()`, its
  entries kept in a temporary file until then.
* VSPW: `<video>/<frame>.png` single-channel class indices 0..123 (255 void).

No writer holds a video of masks (dense or RLE) in memory.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from vidseg.structures import FrameResult, VideoResult, panoptic_to_rgb, semantic_to_vspw_png, track_class_and_score


def _frame_stem(result: FrameResult, file_name: str | None) -> str:
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
    (same track order, class and score rule, `None` for absent frames, last result of a track in a frame).
    """

    def __init__(self, video_id: int):
        self.video_id = video_id
        self.num_frames = 0
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="vidseg-ytvis-")  # noqa: SIM115 - closed in close()
        self._end = 0
        self._tracks: dict[int, _SpilledTrack] = {}

    def add(self, frame: FrameResult) -> None:
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

    def write_entries(self, out: IO[str], category_ids: list[int] | None, first: bool) -> int:
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

    def __init__(self, out: str | Path, category_ids: list[int] | None = None):
        out = Path(out)
        self.zip_path: Path | None = None if out.suffix == ".json" else out
        self.json_path = out.with_suffix(".json")
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.category_ids = category_ids
        self._file: IO[str] | None = open(self.json_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._file.write("[")
        self._first = True
        self._video: _SpilledVideo | None = None
        self.num_entries = 0

    def add_frame(self, video_id: int, result: FrameResult) -> None:
        """Add one frame (masks as RLE); a new `video_id` finishes the previous video."""
        if self._video is not None and self._video.video_id != video_id:
            self._flush()
        if self._video is None:
            self._video = _SpilledVideo(video_id)
        self._video.add(result)

    def add_video(self, video: VideoResult) -> None:
        self._flush()
        self.add_entries(video.to_ytvis(self.category_ids))

    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        """Official result entries, written as they are (their RLE counts must be str)."""
        assert self._file is not None, "writer is closed"
        for e in entries:
            self._file.write(("" if self._first else ",") + json.dumps(e))
            self._first = False
            self.num_entries += 1

    def add_json_file(self, path: str | Path) -> None:
        """Append the entries of another writer's JSON file (e.g. one video's part), copied in chunks."""
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
            self.num_entries += written
            self._first = self._first and written == 0

    def close(self) -> Path:
        """Finish the JSON and write the zip; returns the zip path (the JSON path without a zip)."""
        if self._file is None:
            return self.zip_path or self.json_path
        self._flush()
        self._file.write("]")
        self._file.close()
        self._file = None
        if self.zip_path is None:
            return self.json_path
        tmp = self.zip_path.with_name(self.zip_path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(self.json_path, "results.json")
        shutil.move(tmp, self.zip_path)
        return self.zip_path

    def __enter__(self) -> YtvisSubmissionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VipsegSubmissionWriter:
    """Writes `pan_pred/<video>/<frame>.png` per frame and `pred.json` on `close()`.

    Each frame's `pred.json` entry waits in a temporary file (memory: two integers per frame), and
    `close()` writes exactly what `json.dump({"annotations": [{video_id, annotations}, ...]})` would, the
    videos in order of their first frame.

    Args:
        out_dir: submission folder.
        category_ids: dataset category id of each contiguous class index (None: identity, VIPSeg's 0..123).
        json_path: where the JSON goes (default `<out_dir>/pred.json`; e.g. one video's part of a split).
    """

    def __init__(self, out_dir: str | Path, category_ids: list[int] | None = None, json_path: str | Path | None = None):
        self.out_dir = Path(out_dir)
        self.json_path = Path(json_path) if json_path is not None else self.out_dir / "pred.json"
        self.category_ids = category_ids
        self._spill: IO[bytes] | None = tempfile.TemporaryFile(prefix="vidseg-vipseg-")  # noqa: SIM115 - closed in close()
        self._end = 0
        self._videos: dict[str, tuple[array, array]] = {}  # video -> (offsets, lengths) of its frames' entries

    def add_frame(self, video_id: str, result: FrameResult, file_name: str | None = None) -> None:
        """`result.panoptic` [H, W] ids with `result.segments`; `file_name` = the GT frame's PNG name."""
        if result.panoptic is None:
            raise ValueError("FrameResult has no panoptic map")
        segments = [
            {"id": int(s.id), "category_id": self._category(s.category_id), "iscrowd": 0} for s in result.segments
        ]
        self.add_panoptic(video_id, _frame_stem(result, file_name), result.panoptic, segments)

    def add_panoptic(self, video_id: str, file_name: str, panoptic: np.ndarray, segments_info: list[dict]) -> None:
        """Lower-level: a [H, W] id map (0 = void) and its segments_info (`id`, `category_id`)."""
        path = self.out_dir / "pan_pred" / str(video_id) / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(panoptic_to_rgb(panoptic)).save(path)
        entry = {"image_id": Path(file_name).stem, "file_name": file_name, "segments_info": segments_info}
        data = json.dumps(entry).encode("ascii")
        assert self._spill is not None, "writer is closed"
        self._spill.write(data)
        offsets, lengths = self._videos.setdefault(str(video_id), (array("q"), array("q")))
        offsets.append(self._end)
        lengths.append(len(data))
        self._end += len(data)

    def _category(self, c: int) -> int:
        return int(self.category_ids[c]) if self.category_ids is not None else int(c)

    def close(self) -> Path:
        """Write the JSON (once; later calls only return its path)."""
        path = self.json_path
        if self._spill is None:
            return path
        spill, self._spill = self._spill, None
        spill.flush()
        path.parent.mkdir(parents=True, exist_ok=True)
        with spill, open(path, "w", encoding="utf-8") as f:
            f.write('{"annotations": [')
            for i, (video, (offsets, lengths)) in enumerate(self._videos.items()):
                f.write((", " if i else "") + '{"video_id": ' + json.dumps(video) + ', "annotations": [')
                for j, (offset, length) in enumerate(zip(offsets, lengths)):
                    spill.seek(offset)
                    f.write((", " if j else "") + spill.read(length).decode("ascii"))
                f.write("]}")
            f.write("]}")
        return path

    def __enter__(self) -> VipsegSubmissionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VspwSubmissionWriter:
    """Writes `<out>/<video>/<frame>.png` with class indices 0..123 (void 255) per frame."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)

    def add_frame(self, video: str, result: FrameResult | np.ndarray, file_name: str | None = None) -> Path:
        """`result.semantic` [H, W] (class index, -1 void) or the class map itself."""
        if isinstance(result, FrameResult):
            if result.semantic is None:
                raise ValueError("FrameResult has no semantic map")
            semantic, name = result.semantic, _frame_stem(result, file_name)
        else:
            if file_name is None:
                raise ValueError("file_name is needed with a bare class map")
            semantic, name = result, file_name
        path = self.out_dir / video / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(semantic_to_vspw_png(semantic)).save(path)
        return path
