"""VSPW mIoU and mVC_k: hand-computed traps of evaluator_test.py / VC_perclip.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.errors import DataFormatError
from vidseg.evaluation.vspw import VspwEvaluator, evaluate_vspw
from vidseg.structures import FrameResult, remap_raw_vspw_labels


def vc_reference(gts: list[np.ndarray], preds: list[np.ndarray], k: int) -> list[float]:
    """VC_perclip.get_common, written out directly (window i compares frame i with i + j)."""
    accs = []
    for i in range(len(gts) - k):
        g = np.ones(gts[0].shape, bool)
        p = np.ones(gts[0].shape, bool)
        for j in range(1, k):
            g &= gts[i] == gts[i + j]
            p &= preds[i] == preds[i + j]
        with np.errstate(invalid="ignore", divide="ignore"):
            accs.append(np.float64((g & p).sum()) / np.float64(g.sum()))
    return accs if len(gts) > k else []


def test_void_remap_of_raw_labels():
    raw = np.array([[0, 1, 124, 255, 7]], np.uint8)
    assert remap_raw_vspw_labels(raw).tolist() == [[255, 0, 123, 255, 6]]


def test_miou_counts_classes_present_in_gt_only():
    ev = VspwEvaluator(num_classes=4, windows=())
    gt = np.array([[0, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 2, 1, 3]], np.uint8)  # class 2 and 3 only predicted; 3 lies on void
    ev.add_video("v", [(gt, pred)])
    m = ev.summarize()
    # class 0: I=1, U=2 -> 0.5; class 1: 1.0; class 2 (not in GT) excluded although its IoU is 0
    assert m.mIoU == 0.75
    assert np.isnan(m.per_class_iou[2]) and np.isnan(m.per_class_iou[3])


def test_raw_gt_is_remapped_before_scoring():
    ev = VspwEvaluator(num_classes=4, windows=(), raw_gt_labels=True)
    raw_gt = np.array([[1, 2, 0, 255]], np.uint8)  # -> 0, 1, void, void
    pred = np.array([[0, 1, 3, 3]], np.uint8)
    ev.add_video("v", [(raw_gt, pred)])
    assert ev.summarize().mIoU == 1.0


def test_confusion_is_dataset_level_not_per_video():
    ev = VspwEvaluator(num_classes=2, windows=())
    ev.add_video("a", [(np.array([[0, 0, 0, 0]], np.uint8), np.array([[0, 0, 0, 0]], np.uint8))])
    ev.add_video("b", [(np.array([[1, 1]], np.uint8), np.array([[0, 1]], np.uint8))])
    # dataset matrix: class 0 I=4 U=5, class 1 I=1 U=2 -> (0.8 + 0.5) / 2; per-video averaging would differ
    assert ev.summarize().mIoU == pytest.approx(0.65, abs=1e-15)


def constant_video(t: int, changes: dict[int, int] | None = None) -> tuple[list, list]:
    gts = [np.zeros((2, 2), np.uint8) for _ in range(t)]
    preds = [np.zeros((2, 2), np.uint8) for _ in range(t)]
    for frame, value in (changes or {}).items():
        preds[frame][0, 0] = value
    return gts, preds


def test_mvc_window_counting_for_short_videos():
    ev = VspwEvaluator(num_classes=4, windows=(8,))
    ev.add_video("eight", zip(*constant_video(8)))  # T <= k: skipped
    # T = 9: one window (frames 0..7); the change on frame 8 is in the dropped last window
    ev.add_video("nine", zip(*constant_video(9, {8: 1})))
    m = ev.summarize()
    assert m.num_windows == {8: 1} and m.mVC8 == 1.0
    ev = VspwEvaluator(num_classes=4, windows=(8,))
    ev.add_video("ten", zip(*constant_video(10, {8: 1})))  # windows 0..7 (1.0) and 1..8 (3/4)
    assert ev.summarize().mVC8 == (1.0 + 0.75) / 2


def test_mvc_is_window_weighted_and_skips_nan_windows():
    ev = VspwEvaluator(num_classes=4, windows=(8,))
    ev.add_video("long", zip(*constant_video(11)))  # 3 windows of 1.0
    gts, preds = constant_video(9)
    preds[3][:] = 1  # every pixel changes: acc 0
    ev.add_video("short", zip(gts, preds))  # 1 window of 0.0
    gts, preds = constant_video(9)
    for t in range(9):
        gts[t][:] = t % 2  # no GT-consistent pixel: 0/0 = NaN, left out of the nanmean
    ev.add_video("flicker", zip(gts, preds))
    m = ev.summarize()
    assert m.num_windows == {8: 5}
    assert m.mVC8 == 0.75  # (1 + 1 + 1 + 0) / 4, not the per-video mean 0.5


def test_mvc_counts_void_as_consistent_and_ignores_gt_agreement():
    gts, preds = constant_video(9)
    for g in gts:
        g[:] = 255  # all void, but consistent
    for p in preds:
        p[:] = 3  # consistent and wrong: VC does not compare with the GT
    ev = VspwEvaluator(num_classes=4, windows=(8,))
    ev.add_video("v", zip(gts, preds))
    assert ev.summarize().mVC8 == 1.0


def test_mvc8_and_mvc16_are_separate_and_match_direct_computation():
    rng = np.random.default_rng(1)
    ev = VspwEvaluator(num_classes=5)
    ref = {8: [], 16: []}
    for t in (5, 9, 17, 23):
        gts = [rng.integers(0, 2, (6, 7)).astype(np.uint8) * (rng.random((6, 7)) < 0.3) for _ in range(t)]
        gts = [np.where(rng.random((6, 7)) < 0.9, gts[0], g).astype(np.uint8) for g in gts]
        preds = [np.where(rng.random((6, 7)) < 0.85, gts[0], 4).astype(np.uint8) for _ in range(t)]
        ev.add_video(f"v{t}", zip(gts, preds))
        for k in ref:
            ref[k] += vc_reference(gts, preds, k)
    m = ev.summarize()
    assert m.num_windows == {8: len(ref[8]), 16: len(ref[16])}
    assert m.mVC8 == np.nanmean(np.array(ref[8])) and m.mVC16 == np.nanmean(np.array(ref[16]))
    assert m.mVC8 != m.mVC16


def test_confusion_over_frames_matches_per_frame_counting():
    # The accumulator updates a histogram at the changed pixels; every frame counted in full must agree.
    rng = np.random.default_rng(3)
    c = 6
    ev = VspwEvaluator(num_classes=c, windows=(2,))
    expected = np.zeros((c, c), np.int64)
    for v, dtype in enumerate((np.uint8, np.int64)):
        gt = rng.integers(0, c + 1, (9, 11)).astype(np.uint8)
        gt[gt == c] = 255
        pred = rng.integers(0, c, (9, 11))
        frames = []
        for _ in range(7):
            gt = np.where(rng.random(gt.shape) < 0.2, rng.integers(0, c, gt.shape), gt).astype(np.uint8)
            pred = np.where(rng.random(gt.shape) < 0.3, rng.integers(0, c, gt.shape), pred)
            shown = pred.astype(dtype)
            if dtype is np.int64:
                shown[gt == 255] = -1  # out of uint8 range, allowed on void GT
            frames.append((gt, shown))
            labelled = gt < c
            expected += np.bincount(c * gt[labelled].astype(np.int64) + pred[labelled], minlength=c * c).reshape(c, c)
        ev.add_video(f"v{v}", frames)
    assert np.array_equal(ev.confusion, expected)


def write_video(root: Path, name: str, gts: list[np.ndarray], preds: list[np.ndarray] | None, pred_root: Path):
    for t, g in enumerate(gts):
        (root / "data" / name / "mask").mkdir(parents=True, exist_ok=True)
        Image.fromarray(g).save(root / "data" / name / "mask" / f"{t:05d}.png")
        if preds is not None:
            (pred_root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(preds[t]).save(pred_root / name / f"{t:05d}.png")


def test_files_workers_and_malformed_predictions(tmp_path):
    rng = np.random.default_rng(2)
    gt_root, pred_root = tmp_path / "gt", tmp_path / "pred"
    names = []
    for v in range(4):
        base = rng.integers(0, 6, (8, 10))
        raw = [np.where(rng.random(base.shape) < 0.9, base, 3).astype(np.uint8) for _ in range(10)]
        raw[0][0, 0] = 255
        pred = [np.where(rng.random(r.shape) < 0.8, remap_raw_vspw_labels(r) % 124, 1).astype(np.uint8) for r in raw]
        write_video(gt_root, f"vid{v}", raw, pred, pred_root)
        names.append(f"vid{v}")
    (gt_root / "val.txt").write_text("\n".join(names))  # no trailing newline: must still read all names
    serial = evaluate_vspw(gt_root, pred_root, raw_gt_labels=True, workers=0)
    parallel = evaluate_vspw(gt_root, pred_root, workers=2)  # raw labels are the default, as in `vidseg eval`
    assert serial.to_json() == parallel.to_json() and serial.num_videos == 4 and 0 < serial.mIoU < 1
    assert evaluate_vspw(gt_root, pred_root, raw_gt_labels=False, workers=0).mIoU != serial.mIoU
    assert 0 < serial.mVC8 < 1 and np.isnan(serial.mVC16)  # 10 frames: no 16-frame window
    # a prediction of the wrong size
    Image.fromarray(np.zeros((8, 11), np.uint8)).save(pred_root / "vid1" / "00003.png")
    with pytest.raises(DataFormatError, match="00003.png.*prediction is 11x8"):
        evaluate_vspw(gt_root, pred_root, workers=2)
    # a class outside the dataset (the official code would spill it into the next GT row)
    Image.fromarray(np.full((8, 10), 200, np.uint8)).save(pred_root / "vid1" / "00003.png")
    with pytest.raises(DataFormatError, match="class 200"):
        evaluate_vspw(gt_root, pred_root, raw_gt_labels=True, workers=0)
    # an RGB prediction
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(pred_root / "vid1" / "00003.png")
    with pytest.raises(DataFormatError, match="single-channel"):
        evaluate_vspw(gt_root, pred_root, raw_gt_labels=True, workers=0)
    (pred_root / "vid1" / "00003.png").unlink()
    with pytest.raises(DataFormatError, match="not found"):
        evaluate_vspw(gt_root, pred_root, raw_gt_labels=True, workers=0)


def test_frame_results_stream():
    ev = VspwEvaluator(num_classes=4, windows=(2,))
    gt = np.array([[0, 1], [2, 255]], np.uint8)
    frames = [FrameResult(t, 2, 2, semantic=np.array([[0, 1], [2, -1]], np.int32)) for t in range(3)]
    ev.add_video("v", zip([gt] * 3, frames))
    m = ev.summarize()
    assert m.mIoU == 1.0 and m.mVC8 != m.mVC8  # no k = 8 here: NaN
