"""Predict a whole dataset split into an evaluable submission: sharded over processes, resumable.

    vidseg predict runs/tracker/ckpt_0040000 --split val --out preds/          # or: torchrun ... -m vidseg.cli
    vidseg eval --task vis --gt datasets/ytvis/val/instances.json --pred preds/

Every video gets the predictor's official whole-video results (`VideoPredictor.predict`: classes decided
once the video has ended, one refiner pass), written with the dataset's own video ids and frame file names:

* vis (YouTube-VIS / OVIS): `<out>/results.json` + `<out>/results.zip` (model classes mapped to the
  dataset's categories by name; classes the dataset lacks, e.g. stuff, are dropped).
* vps (VIPSeg): `<out>/pan_pred/<video>/<frame>.png` + `<out>/pred.json`.
* vss (VSPW): `<out>/<video>/<frame>.png`.

Resumable and sharded: each video's part is written atomically (temp file + rename) to
`<out>/.parts/<video>.json` once all its files are on disk (the task's `SubmissionWriter` with `part=`:
vis its result entries, vps its `pred.json` entry, vss its frame count), and a video whose part exists is
skipped. Process `rank` of `world` predicts the videos `rank, rank + world, ...`; rank 0 then waits for
every part and merges them, in the dataset's video order, into the submission. The parts stay, so a rerun
after a crash or with more processes only predicts what is missing and merges again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.data.annotations import (
    PanopticDataset,
    PanopticVideo,
    SemanticDataset,
    SemanticVideo,
    VideoAnnotation,
    VisDataset,
)
from vidseg.errors import DataFormatError
from vidseg.evaluation.submission import VideoKey, writer_for
from vidseg.inference.predictor import VideoPredictor
from vidseg.structures import FrameResult
from vidseg.types import SUBMISSION_TASK, ClassInfo, VideoTask

# Called for every written frame: (the dataset's video, frame position, the result as written).
FrameHook = Callable[[Any, int, FrameResult], None]
DatasetVideo = VideoAnnotation | PanopticVideo | SemanticVideo

PARTS = ".parts"


@dataclass(frozen=True)
class SplitData:
    """A dataset split to predict.

    Attributes:
        task: the submission format: vis (YouTube-VIS / OVIS), vps (VIPSeg) or vss (VSPW).
        gt: what `vidseg eval --gt` takes for it (the annotation JSON, or the VSPW root).
        dataset: the split as read (`read_ytvis` / `read_vipseg` / `read_vspw`).
    """

    task: VideoTask
    gt: Path
    dataset: VisDataset | PanopticDataset | SemanticDataset

    def video_keys(self) -> list[str]:
        """One file-name-safe key per video (its id, VSPW: its name), in dataset order."""
        keys = [self.video_key(v).name.replace(os.sep, "_") for v in self.dataset.videos]
        if len(set(keys)) != len(keys):
            raise DataFormatError(self.gt, "video ids are not unique", field="videos")
        return keys

    def video_key(self, video: DatasetVideo) -> VideoKey:
        """How the submission names `video`: by the dataset's video id (YouTube-VIS: an integer), VSPW by
        the video's folder name."""
        if isinstance(video, SemanticVideo):
            return VideoKey(video.name)
        if isinstance(video, VideoAnnotation):
            return VideoKey(str(video.video_id), int(video.video_id))
        return VideoKey(str(video.video_id))

    def frame_file(self, video: DatasetVideo, t: int) -> str | None:
        """The name of frame t's prediction PNG: the GT's (VIPSeg: the frame's panoptic PNG, VSPW: the
        frame's stem + .png); None for YouTube-VIS (no per-frame files)."""
        if isinstance(video, PanopticVideo):
            return Path(video.frames[t].mask_file).name
        if isinstance(video, SemanticVideo):
            return Path(video.frame_files[t]).stem + ".png"
        return None

    def category_ids(self, classes: ClassInfo) -> list[int] | None:
        """The dataset category id of each model class: YouTube-VIS matched by name (-1: a class the
        dataset lacks), VIPSeg by position; None for VSPW (its PNGs hold class indices)."""
        if isinstance(self.dataset, VisDataset):
            return vis_category_ids(classes, self.dataset, self.gt)
        if isinstance(self.dataset, PanopticDataset):
            return [c.id for c in self.dataset.categories]
        return None


def read_split(task: str, gt: str | Path, split: str = "val") -> SplitData:
    """Read the split for `task` ("vis"/"ovis": YouTube-VIS JSON, "vps": VIPSeg JSON, "vss": VSPW root).

    Raises:
        DataFormatError: missing or malformed annotations.
    """
    from vidseg.data.formats.vipseg import read_vipseg
    from vidseg.data.formats.vspw import read_vspw
    from vidseg.data.formats.ytvis import read_ytvis

    if task not in SUBMISSION_TASK:
        raise ValueError(f"unknown task {task!r}; expected vis, ovis, vps or vss")
    gt = Path(gt)
    readers: dict[VideoTask, Callable[[], VisDataset | PanopticDataset | SemanticDataset]] = {
        "vis": lambda: read_ytvis(gt), "vps": lambda: read_vipseg(gt),
        "vss": lambda: read_vspw(gt, split, need_masks=False),
    }
    video_task = SUBMISSION_TASK[task]
    return SplitData(video_task, gt, readers[video_task]())


def vis_category_ids(classes: ClassInfo, dataset: VisDataset, gt: str | Path) -> list[int]:
    """Dataset category id of each model class, matched by name (-1: a class the dataset lacks).

    Raises:
        DataFormatError: a dataset category that is no class of the model.
    """
    names = list(classes.names)
    missing = [c.name for c in dataset.categories if c.name not in names]
    if missing:
        raise DataFormatError(gt, f"categories {missing} are not classes of the model ({names})", field="categories")
    by_name = {c.name: c.id for c in dataset.categories}
    return [by_name.get(n, -1) for n in names]


def _frames(video: DatasetVideo) -> Iterator[np.ndarray]:
    return (video.load_frame(t) for t in range(len(video)))


def _video_results(predictor: VideoPredictor, video: DatasetVideo, gt: Path) -> Iterator[FrameResult]:
    """The official results of a dataset video, one per frame, in order."""
    count = 0
    for result in predictor.predict(_frames(video), on_error="stop"):
        count += 1
        yield result
    if count != len(video):
        name = getattr(video, "video_id", getattr(video, "name", "?"))
        raise DataFormatError(gt, f"video {name}: {count} results for {len(video)} frames", field="videos")


class _PartWriter:
    """Writes one video's files and its part (atomically, last) for a task."""

    def __init__(self, split: SplitData, predictor: VideoPredictor, out_dir: Path):
        self.split, self.out_dir, self.parts = split, out_dir, out_dir / PARTS
        self.category_ids = split.category_ids(predictor.classes)
        # The results of classes the dataset lacks (category -1) are left out of the submission.
        ids = np.asarray(self.category_ids if self.category_ids is not None else [], np.int64)
        self.keep: np.ndarray | None = None if bool((ids >= 0).all()) else ids >= 0

    def write(self, key: str, video: DatasetVideo, results: Iterator[FrameResult], on_frame: FrameHook | None) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        tmp, final = self.parts / f"{key}.tmp.json", self.parts / f"{key}.json"
        name = self.split.video_key(video)
        with writer_for(self.split.task, self.out_dir, self.category_ids, part=tmp) as writer:
            for t, result in enumerate(results):
                if self.keep is not None:
                    result = result.select(np.flatnonzero(self.keep[result.class_ids]))
                writer.add_frame(name, result, self.split.frame_file(video, t))
                if on_frame is not None:
                    on_frame(video, t, result)
        os.replace(tmp, final)


def predict_split(
    predictor: VideoPredictor,
    split: SplitData,
    out_dir: str | Path,
    *,
    rank: int = 0,
    world: int = 1,
    resume: bool = True,
    progress: bool = False,
    on_frame: FrameHook | None = None,
    vis_zip: str = "results.zip",
    poll_s: float = 0.5,
) -> Path | None:
    """Predict this rank's share of `split` into `out_dir`; rank 0 also merges the submission.

    Args:
        rank, world: this process and the number of processes (videos `rank::world` are this rank's).
        resume: skip videos whose part is already written (False: predict every video of this rank again).
        progress: a tqdm bar of this rank's videos.
        on_frame: called with every frame's result as written (e.g. to count identity switches).
        vis_zip: vis: the zip's name in `out_dir` (`results.json` is its `.json` beside it).
        poll_s: rank 0: seconds between looks for the other ranks' parts.

    Returns:
        rank 0: the submission (vis: the zip; vps, vss: `out_dir`); other ranks: None.
    """
    from tqdm import tqdm

    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} of world {world}")
    out = Path(out_dir)
    keys = split.video_keys()
    writer = _PartWriter(split, predictor, out)
    mine = list(range(rank, len(keys), world))
    desc = f"predict {split.task}" + (f" rank {rank}" if world > 1 else "")
    with tqdm(total=len(mine), unit="video", desc=desc, position=rank, disable=not progress) as bar:
        for i in mine:
            if not (resume and (writer.parts / f"{keys[i]}.json").is_file()):
                video = split.dataset.videos[i]
                writer.write(keys[i], video, _video_results(predictor, video, split.gt), on_frame)
            bar.update(1)
    if rank != 0:
        return None
    parts = [writer.parts / f"{k}.json" for k in keys]
    while not all(p.is_file() for p in parts):  # the other ranks' videos
        time.sleep(poll_s)
    return merge_parts(split, out, vis_zip=vis_zip)


def merge_parts(split: SplitData, out_dir: str | Path, *, vis_zip: str = "results.zip") -> Path:
    """The submission from the per-video parts in `<out_dir>/.parts`, in the dataset's video order."""
    out = Path(out_dir)
    with writer_for(split.task, out, zip_name=vis_zip) as writer:
        for key in split.video_keys():
            writer.add_part(out / PARTS / f"{key}.json")
    return writer.submission


__all__ = ["SplitData", "merge_parts", "predict_split", "read_split", "vis_category_ids"]
