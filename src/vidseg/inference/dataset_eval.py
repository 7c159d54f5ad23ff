"""Predict a dataset split with a `VideoPredictor` into the official submission formats, then score it.

The submissions are written by the same writers as `vidseg segment` and scored by the same code as
`vidseg eval`, so a number here is the number `vidseg eval --task ... --gt ... --pred ...` prints for the
files left in `out_dir`:

* VIS: YouTube-VIS/OVIS `results.json` (zip) against an `instances.json` -> AP, and identity switches of
  the slots against the GT tracks.
* VPS: VIPSeg `pan_pred/` + `pred.json` against the panoptic GT -> VPQ, STQ; the thing tracks of the same
  predictions also give identity switches against the GT tracks (`vidseg.evaluation.id_switches`).
* VSS: VSPW class PNGs against the GT -> mIoU, mVC.

A model trained on a panoptic label space (things + stuff) is scored on VIS with its thing classes only:
the dataset's categories are matched to the model's classes by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidseg.data.formats.vipseg import read_vipseg
from vidseg.data.formats.vspw import read_vspw
from vidseg.data.formats.ytvis import read_ytvis
from vidseg.errors import DataFormatError
from vidseg.evaluation.id_switches import IdSwitchCount, count_id_switches
from vidseg.evaluation.report import Metrics, evaluate_task
from vidseg.evaluation.submission import VipsegSubmissionWriter, VspwSubmissionWriter, YtvisSubmissionWriter
from vidseg.inference.predictor import VideoPredictor
from vidseg.structures import FrameResult, decode_rle


@dataclass
class SplitScores:
    """What `evaluate_vps` / `evaluate_vis` / `evaluate_vss` return.

    Attributes:
        metrics: the official metrics (as `vidseg eval` reports them).
        submission: where the predictions were written (pass it to `vidseg eval --pred`).
        id_switches: identity switches against the GT tracks (VPS: thing segments; VIS: one identity per
            slot, its best-scoring result in each frame).
    """

    metrics: Metrics
    submission: Path
    id_switches: IdSwitchCount | None = None


def _frames(video, length: int) -> list[np.ndarray]:
    return [video.load_frame(t) for t in range(length)]


def evaluate_vps(predictor: VideoPredictor, gt_json: str | Path, out_dir: str | Path) -> SplitScores:
    """VPQ/STQ and thing-track ID switches of `predictor` (task vps) on a VIPSeg-format split."""
    if predictor.task != "vps":
        raise ValueError(f"evaluate_vps needs a vps predictor, got {predictor.task!r}")
    dataset = read_vipseg(gt_json)
    thing = {c.id for c in dataset.categories if c.isthing}
    category_ids = [c.id for c in dataset.categories]
    switches = IdSwitchCount()
    out_dir = Path(out_dir)
    with VipsegSubmissionWriter(out_dir, category_ids=category_ids) as writer:
        for video in dataset.videos:
            predictor.reset()
            gt_tracks, pred_tracks = [], []
            results = list(predictor.run(_frames(video, len(video))))
            if len(results) != len(video):
                raise DataFormatError(gt_json, f"video {video.video_id}: {len(results)} results for "
                                      f"{len(video)} frames", field="videos")
            for t, result in enumerate(results):
                writer.add_frame(str(video.video_id), result, file_name=Path(video.frames[t].mask_file).name)
                pan = video.load_panoptic(t)
                gt_tracks.append({s.id: pan == s.id for s in video.frames[t].segments if s.category_id in thing})
                pred_tracks.append(_thing_tracks(result))
            switches = switches + count_id_switches(gt_tracks, pred_tracks)
    metrics = evaluate_task("vps", gt_json, out_dir, workers=1)
    return SplitScores(metrics, out_dir, switches)


def _thing_tracks(result: FrameResult) -> dict[int, np.ndarray]:
    if result.panoptic is None:
        return {}
    return {int(s.id): result.panoptic == s.id for s in result.segments if s.is_thing}


def evaluate_vis(predictor: VideoPredictor, gt_json: str | Path, out_zip: str | Path) -> SplitScores:
    """YouTube-VIS AP of `predictor` (task vis) on an instance split; model classes mapped by name."""
    if predictor.task != "vis":
        raise ValueError(f"evaluate_vis needs a vis predictor, got {predictor.task!r}")
    dataset = read_ytvis(gt_json)
    names = list(predictor.classes.names)
    by_name = {c.name: c.id for c in dataset.categories}
    missing = [c.name for c in dataset.categories if c.name not in names]
    if missing:
        raise DataFormatError(gt_json, f"categories {missing} are not classes of the model ({names})",
                              field="categories")
    # Model class k -> dataset category id; model classes the dataset lacks (e.g. stuff) are dropped.
    category_ids = [by_name.get(n, -1) for n in names]
    switches = IdSwitchCount()
    with YtvisSubmissionWriter(out_zip, category_ids=category_ids) as writer:
        for video in dataset.videos:
            predictor.reset()
            gt_tracks, pred_tracks = [], []
            for t, result in enumerate(predictor.run(_frames(video, len(video)))):
                keep = [i for i, c in enumerate(result.class_ids.tolist()) if category_ids[c] >= 0]
                result = result.select(keep)
                writer.add_frame(video.video_id, result)
                gt_tracks.append({a.id: a.mask(t, video.height, video.width) for a in video.instances
                                  if not a.iscrowd})
                pred_tracks.append(_slot_tracks(result, len(names)))
            switches = switches + count_id_switches(gt_tracks, pred_tracks)
    metrics = evaluate_task("vis", gt_json, out_zip, workers=1)
    return SplitScores(metrics, Path(out_zip), switches)


def _slot_tracks(result: FrameResult, num_classes: int) -> dict[int, np.ndarray]:
    """A VIS frame's identities: the slot of each (slot, class) result (track id = slot x K + class + 1),
    keeping the best-scoring result per slot, so a slot that changes its label keeps its identity."""
    best: dict[int, int] = {}
    for i, track in enumerate(result.track_ids.tolist()):
        slot = (int(track) - 1) // num_classes
        if slot not in best or result.scores[i] > result.scores[best[slot]]:
            best[slot] = i
    return {slot: decode_rle(result.masks[i]) for slot, i in best.items()}


def evaluate_vss(predictor: VideoPredictor, root: str | Path, split: str, out_dir: str | Path) -> SplitScores:
    """mIoU / mVC of `predictor` (task vss) on a VSPW-format split (raw GT labels, as shipped)."""
    if predictor.task != "vss":
        raise ValueError(f"evaluate_vss needs a vss predictor, got {predictor.task!r}")
    dataset = read_vspw(root, split)
    out_dir = Path(out_dir)
    writer = VspwSubmissionWriter(out_dir)
    for video in dataset.videos:
        predictor.reset()
        for t, result in enumerate(predictor.run(_frames(video, len(video)))):
            writer.add_frame(video.name, result, file_name=video.mask_files[t].name)
    metrics = evaluate_task("vss", root, out_dir, workers=1, vspw_raw_labels=True)
    return SplitScores(metrics, out_dir)


__all__ = ["SplitScores", "evaluate_vis", "evaluate_vps", "evaluate_vss"]
