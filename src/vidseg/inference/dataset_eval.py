"""Predict a dataset split with a `VideoPredictor` into the official submission formats, then score it.

The predictions are the official whole-video results (`VideoPredictor.predict`), written by
`vidseg.inference.predict_split` (the loop `vidseg predict` runs).

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.evaluation.id_switches import FrameTracks, IdSwitchCount, count_id_switches
from vidseg.evaluation.report import Metrics, evaluate_task
from vidseg.inference.predict_split import predict_split, read_split
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


@dataclass
class _SwitchCounter:
    """Identity switches over a split, fed frame by frame (`predict_split`'s `on_frame`); one video's
    GT and predicted tracks are held until the next video starts."""

    gt_tracks: Any  # (video, t) -> {gt id: [H, W] bool}
    pred_tracks: Any  # FrameResult -> {pred id: [H, W] bool}
    total: IdSwitchCount = field(default_factory=IdSwitchCount)
    _video: object = None
    _gt: list[FrameTracks] = field(default_factory=list)
    _pred: list[FrameTracks] = field(default_factory=list)

    def __call__(self, video: Any, t: int, result: FrameResult) -> None:
        if video is not self._video:
            self.done()
            self._video = video
        self._gt.append(self.gt_tracks(video, t))
        self._pred.append(self.pred_tracks(result))

    def done(self) -> IdSwitchCount:
        if self._gt:
            self.total = self.total + count_id_switches(self._gt, self._pred)
        self._gt, self._pred = [], []
        return self.total


def evaluate_vps(predictor: VideoPredictor, gt_json: str | Path, out_dir: str | Path) -> SplitScores:
    """VPQ/STQ and thing-track ID switches of `predictor` (task vps) on a VIPSeg-format split."""
    if predictor.task != "vps":
        raise ValueError(f"evaluate_vps needs a vps predictor, got {predictor.task!r}")
    split = read_split("vps", gt_json)
    thing = {c.id for c in split.dataset.categories if c.isthing}

    def gt_tracks(video: Any, t: int) -> FrameTracks:
        pan = video.load_panoptic(t)
        return {s.id: pan == s.id for s in video.frames[t].segments if s.category_id in thing}

    switches = _SwitchCounter(gt_tracks, _thing_tracks)
    out_dir = Path(out_dir)
    predict_split(predictor, split, out_dir, resume=False, on_frame=switches)
    metrics = evaluate_task("vps", gt_json, out_dir, workers=1)
    return SplitScores(metrics, out_dir, switches.done())


def _thing_tracks(result: FrameResult) -> dict[int, np.ndarray]:
    if result.panoptic is None:
        return {}
    return {int(s.id): result.panoptic == s.id for s in result.segments if s.is_thing}


def evaluate_vis(predictor: VideoPredictor, gt_json: str | Path, out_zip: str | Path) -> SplitScores:
    """YouTube-VIS AP of `predictor` (task vis) on an instance split; model classes mapped by name
    (`vidseg.inference.predict_split.vis_category_ids`)."""
    if predictor.task != "vis":
        raise ValueError(f"evaluate_vis needs a vis predictor, got {predictor.task!r}")
    split = read_split("vis", gt_json)
    num_classes = len(predictor.classes.names)

    def gt_tracks(video: Any, t: int) -> FrameTracks:
        return {a.id: a.mask(t, video.height, video.width) for a in video.instances if not a.iscrowd}

    switches = _SwitchCounter(gt_tracks, lambda result: _slot_tracks(result, num_classes))
    out_zip = Path(out_zip)
    predict_split(predictor, split, out_zip.parent, resume=False, on_frame=switches, vis_zip=out_zip.name)
    metrics = evaluate_task("vis", gt_json, out_zip, workers=1)
    return SplitScores(metrics, out_zip, switches.done())


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
    out_dir = Path(out_dir)
    predict_split(predictor, read_split("vss", root, split), out_dir, resume=False)
    metrics = evaluate_task("vss", root, out_dir, workers=1, vspw_raw_labels=True)
    return SplitScores(metrics, out_dir)


__all__ = ["SplitScores", "evaluate_vis", "evaluate_vps", "evaluate_vss"]
