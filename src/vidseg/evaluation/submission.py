"""Submission writers for the evaluation servers, fed frame by frame.

* YouTube-VIS / OVIS: `results.json` (a list of `{video_id, score, category_id, segmentations}` with
  compressed RLE, `None` where a track is absent) inside a zip at its root, as the CodaLab servers expect.
  Entries are streamed into the JSON file video by video; only the current video's RLEs are held.
* VIPSeg: `pan_pred/<video>/<frame>.png` (RGB ids) written as each frame arrives, and `pred.json`
  (`{annotations: [{video_id, annotations: [{image_id, file_name, segments_info}]}]}`) at `close()`.
* VSPW: `<video>/<frame>.png` single-channel class indices 0..123 (255 void).

No writer holds a whole video of dense masks.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from vidseg.structures import FrameResult, VideoResult, panoptic_to_rgb, semantic_to_vspw_png


def _frame_stem(result: FrameResult, file_name: str | None) -> str:
    return file_name if file_name is not None else f"{result.frame_index:05d}.png"


class YtvisSubmissionWriter:
    """Streams YouTube-VIS results to `<out>.json` and zips it as `results.json` on `close()`.

    Args:
        out: path of the zip to write (e.g. `submission.zip`); the JSON is written beside it first.
        category_ids: dataset category id of each contiguous class index (None: index + 1).
    """

    def __init__(self, out: str | Path, category_ids: list[int] | None = None):
        self.zip_path = Path(out)
        self.json_path = self.zip_path.with_suffix(".json")
        self.zip_path.parent.mkdir(parents=True, exist_ok=True)
        self.category_ids = category_ids
        self._file: IO[str] | None = open(self.json_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._file.write("[")
        self._first = True
        self._video: VideoResult | None = None
        self.num_entries = 0

    def add_frame(self, video_id: int, result: FrameResult) -> None:
        """Add one frame (masks as RLE); a new `video_id` finishes the previous video."""
        if self._video is not None and self._video.video_id != video_id:
            self._flush()
        if self._video is None:
            self._video = VideoResult(video_id)
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

    def _flush(self) -> None:
        if self._video is not None:
            video, self._video = self._video, None
            self.add_entries(video.to_ytvis(self.category_ids))

    def close(self) -> Path:
        """Finish the JSON and write the zip; returns the zip path."""
        if self._file is None:
            return self.zip_path
        self._flush()
        self._file.write("]")
        self._file.close()
        self._file = None
        with zipfile.ZipFile(self.zip_path, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(self.json_path, "results.json")
        return self.zip_path

    def __enter__(self) -> YtvisSubmissionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VipsegSubmissionWriter:
    """Writes `pan_pred/<video>/<frame>.png` per frame and `pred.json` on `close()`.

    Args:
        out_dir: submission folder.
        category_ids: dataset category id of each contiguous class index (None: identity, VIPSeg's 0..123).
    """

    def __init__(self, out_dir: str | Path, category_ids: list[int] | None = None):
        self.out_dir = Path(out_dir)
        self.category_ids = category_ids
        self._videos: dict[str, list[dict[str, Any]]] = {}

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
        frames = self._videos.setdefault(str(video_id), [])
        frames.append({"image_id": Path(file_name).stem, "file_name": file_name, "segments_info": segments_info})

    def _category(self, c: int) -> int:
        return int(self.category_ids[c]) if self.category_ids is not None else int(c)

    def close(self) -> Path:
        anns = [{"video_id": v, "annotations": frames} for v, frames in self._videos.items()]
        path = self.out_dir / "pred.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"annotations": anns}, f)
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
