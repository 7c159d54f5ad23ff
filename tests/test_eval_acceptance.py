"""Acceptance: the synthetic dataset's GT, written through our submission writers, evaluated by `vidseg eval`
gives each metric's perfect score as the official code computes it; and the writers' formats."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.cli import main
from vidseg.evaluation.submission import VideoKey, VipsegSubmissionWriter, VspwSubmissionWriter, YtvisSubmissionWriter
from vidseg.evaluation.ytvis import IOU_THRESHOLDS, RECALL_THRESHOLDS, YtvisGroundTruth
from vidseg.io.imageio import read_id_png, read_label_png
from vidseg.structures import FrameResult, PanopticSegment, decode_rle, remap_raw_vspw_labels

PERFECT_ONE = 1.0 / (1.0 + np.spacing(1))  # precision of a single TP: tp / (tp + fp + eps)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from vidseg.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, num_videos=8, num_frames=18, height=48, width=64, seed=3)
    return root


def cli_eval(task: str, gt: Path, pred: Path, out: Path, *extra: str) -> dict:
    assert (
        main(
            ["eval", "--task", task, "--gt", str(gt), "--pred", str(pred), "--out", str(out), "--workers", "2", *extra]
        )
        == 0
    )
    return json.loads(out.read_text())


def expected_perfect_ap(gt: YtvisGroundTruth) -> float:
    """All-TP AP as accumulate() computes it: a category with one GT has precision 1/(1+eps) at every recall
    threshold; with n >= 2 GTs, k/(k+eps) rounds to 1.0 for k >= 2 and the envelope lifts the first to 1.0."""
    n_gt = {c: 0 for c in gt.category_ids}
    for tracks in gt.tracks.values():
        for t in tracks:
            if not t.iscrowd:
                n_gt[t.category_id] += 1
    per_cat = [PERFECT_ONE if n == 1 else 1.0 for c, n in n_gt.items() if n > 0]
    arr = np.broadcast_to(np.array(per_cat), (len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(per_cat)))
    return float(np.mean(arr[arr > -1]))


def write_gt_as_results(gt: YtvisGroundTruth, out: Path) -> None:
    """The GT tracks (crowd left out) as results of score 1, streamed frame by frame into the writer."""
    with YtvisSubmissionWriter(out) as w:
        for vid, tracks in gt.tracks.items():
            tracks = [t for t in tracks if not t.iscrowd]
            for f in range(gt.videos[vid].length):
                present = [t for t in tracks if t.segmentations[f] is not None]
                masks = (
                    np.stack([decode_rle(t.segmentations[f]) for t in present])
                    if present
                    else np.zeros((0, gt.videos[vid].height, gt.videos[vid].width), bool)
                )
                w.add_frame(
                    VideoKey(str(vid), vid),
                    FrameResult.from_masks(
                        f, masks, [t.id for t in present], [t.category_id - 1 for t in present], [1.0] * len(present)
                    ),
                )


def test_ytvis_gt_against_itself(synthetic, tmp_path, capsys):
    gt_path = synthetic / "ytvis" / "val" / "instances.json"
    gt = YtvisGroundTruth.load(gt_path)
    write_gt_as_results(gt, tmp_path / "submission.zip")
    with zipfile.ZipFile(tmp_path / "submission.zip") as z:
        assert z.namelist() == ["results.json"]
    m = cli_eval("vis", gt_path, tmp_path / "submission.zip", tmp_path / "m.json")
    assert set(m) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"}
    assert m["AP"] == expected_perfect_ap(gt) and m["AR10"] == 1.0
    assert "AP" in capsys.readouterr().out
    o = cli_eval("ovis", gt_path, tmp_path / "submission.zip", tmp_path / "o.json")
    assert o["AP"] == m["AP"] and "APso" in o
    # The JSON beside the zip alone scores the same.
    assert cli_eval("vis", gt_path, tmp_path / "submission.json", tmp_path / "j.json")["AP"] == m["AP"]


def test_vipseg_gt_against_itself(synthetic, tmp_path):
    root = synthetic / "vipseg"
    gt = json.loads((root / "panoptic_gt_VIPSeg_val.json").read_text())
    with VipsegSubmissionWriter(tmp_path / "sub") as w:
        for video, ann in zip(gt["videos"], gt["annotations"]):
            for t, frame in enumerate(ann["annotations"]):
                ids = read_id_png(root / "panomasksRGB" / video["video_id"] / frame["file_name"])
                segs = [PanopticSegment(s["id"], s["category_id"], False) for s in frame["segments_info"]]
                fr = FrameResult(t, *ids.shape, panoptic=ids.astype(np.int32), segments=segs)
                w.add_frame(VideoKey(video["video_id"]), fr, frame["file_name"])
    m = cli_eval("vps", root, tmp_path / "sub", tmp_path / "m.json")
    assert (m["VPQ"], m["VPQ_thing"], m["VPQ_stuff"]) == (100.0, 100.0, 100.0)
    assert (m["STQ"], m["AQ"], m["SQ"]) == (1.0, 1.0, 1.0)
    assert set(m["vpq"]["windows"]) == {"1", "2", "4", "6", "8"}


def test_vspw_gt_against_itself(synthetic, tmp_path):
    root = synthetic / "vspw"
    w = VspwSubmissionWriter(tmp_path / "sub")
    for name in (root / "val.txt").read_text().split():
        for f in sorted((root / "data" / name / "mask").iterdir()):
            sem = remap_raw_vspw_labels(read_label_png(f)).astype(np.int32)
            fr = FrameResult(0, *sem.shape, semantic=np.where(sem == 255, 0, sem))  # a model labels every pixel
            w.add_frame(VideoKey(name), fr, f.name)
    m = cli_eval("vss", root, tmp_path / "sub", tmp_path / "m.json")
    assert (m["mIoU"], m["mVC8"], m["mVC16"]) == (1.0, 1.0, 1.0)
    assert m["num_windows"] == {"VC8": 2 * (18 - 8), "VC16": 2 * (18 - 16)}  # 2 val videos, T - k windows each


def test_vspw_writer_maps_void_and_cli_reports_user_errors(tmp_path, capsys):
    w = VspwSubmissionWriter(tmp_path)
    w.add_frame(VideoKey("v"), FrameResult(0, 2, 2, semantic=np.array([[0, 5], [-1, 123]], np.int32)))
    assert np.array(Image.open(tmp_path / "v" / "00000.png")).tolist() == [[0, 5], [255, 123]]
    assert main(["eval", "--task", "vps", "--gt", str(tmp_path / "missing"), "--pred", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err
