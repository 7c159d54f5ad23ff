"""`vidseg segment`: overlay, official prediction files and summary for each task; Ctrl-C; user errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from test_predictor import _corrupt, _write_mp4, moving_frames, tiny_config

from vidseg.cli import main
from vidseg.evaluation.ytvis import parse_detections, parse_ytvis_gt
from vidseg.io.checkpoint import save_checkpoint
from vidseg.io.video import VideoWriter
from vidseg.models.model import build_model
from vidseg.structures import rgb_to_panoptic

FRAMES, H, W = 12, 48, 72


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(1)
    tracker_cfg, refiner_cfg = tiny_config("dvis_online"), tiny_config("dvis_offline")
    return {
        "tracker": save_checkpoint(root / "trk", build_model(tracker_cfg).state_dict(), tracker_cfg, "tracker", 1),
        "refiner": save_checkpoint(root / "ref", build_model(refiner_cfg).state_dict(), refiner_cfg, "refiner", 1),
    }


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    with VideoWriter(path, fps=10) as writer:
        for f in moving_frames(FRAMES, H, W):
            writer.write(f)
    return path


def _mp4_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _segment(*args: str) -> int:
    return main(["segment", *args, "--device", "cpu", "--no-progress"])


def _ytvis_gt(num_frames: int, h: int = H, w: int = W) -> dict:
    """A YouTube-VIS GT of the one segmented video (id 1), to read the results back through the evaluator."""
    return {
        "videos": [{"id": 1, "height": h, "width": w, "length": num_frames}],
        "annotations": [],
        "categories": [{"id": k + 1, "name": f"class {k}"} for k in range(7)],
    }


def test_vis_writes_overlay_results_json_and_summary(ckpts, clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert _segment(str(clip), "--weights", str(ckpts["tracker"]), "--task", "vis", "--out", str(out)) == 0
    assert f"segmented {FRAMES} frames" in capsys.readouterr().out
    assert _mp4_frames(out / "overlay.mp4") == FRAMES
    entries = json.loads((out / "results.json").read_text())
    with zipfile.ZipFile(out / "results.zip") as z:
        assert json.loads(z.read("results.json")) == entries
    dets = parse_detections(entries, parse_ytvis_gt(_ytvis_gt(FRAMES)), out / "results.json")
    assert len(dets[1]) == len(entries) > 0
    assert all(len(e["segmentations"]) == FRAMES for e in entries)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == FRAMES and summary["skipped_frames"] == [] and summary["fps"] > 0
    assert (summary["task"], summary["mode"], summary["stage"]) == ("vis", "online", "tracker")
    assert summary["checkpoint"] == str(ckpts["tracker"]) and summary["interrupted"] is False
    assert set(summary["outputs"]) == {"overlay.mp4", "results.json", "results.zip", "summary.json"}


def test_vps_offline_writes_pan_pred_pngs_and_pred_json(ckpts, clip, tmp_path):
    out = tmp_path / "out"
    assert _segment(str(clip), "--weights", str(ckpts["refiner"]), "--task", "vps", "--window", "5",
                    "--overlap", "1", "--out", str(out)) == 0
    pred = json.loads((out / "pred.json").read_text())
    (video,) = pred["annotations"]
    assert video["video_id"] == "walk" and len(video["annotations"]) == FRAMES
    for t, frame in enumerate(video["annotations"]):
        assert frame["file_name"] == f"{t:05d}.png"
        ids = rgb_to_panoptic(np.asarray(Image.open(out / "pan_pred" / "walk" / frame["file_name"])))
        assert ids.shape == (H, W)
        assert set(np.unique(ids)) - {0} <= {s["id"] for s in frame["segments_info"]}
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["mode"], summary["window"], summary["overlap"], summary["stage"]) == ("offline", 5, 1, "refiner")
    assert _mp4_frames(out / "overlay.mp4") == FRAMES


def test_vss_writes_one_class_png_per_frame(ckpts, clip, tmp_path):
    out = tmp_path / "out"
    assert _segment(str(clip), "--weights", str(ckpts["tracker"]), "--task", "vss", "--out", str(out)) == 0
    pngs = sorted((out / "walk").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(FRAMES)]
    labels = np.asarray(Image.open(pngs[0]))
    assert labels.shape == (H, W) and labels.dtype == np.uint8 and labels.max() < 7
    assert json.loads((out / "summary.json").read_text())["outputs"] == ["overlay.mp4", "walk", "summary.json"]


def test_corrupt_frames_are_skipped_and_reported(ckpts, tmp_path, capsys):
    good = _write_mp4(tmp_path / "good.mp4", 40)
    bad = tmp_path / "bad.mp4"
    lost = _corrupt(good, bad, [15, 16, 17])
    out = tmp_path / "out"
    assert _segment(str(bad), "--weights", str(ckpts["tracker"]), "--out", str(out)) == 0
    captured = capsys.readouterr()
    assert "3 unreadable frames skipped" in captured.out
    assert captured.err.count("warning: skipped frame") == 3
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["skipped_frames"]) == sorted(lost) and summary["frames"] == 37
    assert _mp4_frames(out / "overlay.mp4") == 37
    # YouTube-VIS needs a segmentation per source frame: the skipped ones are empty (None).
    entries = json.loads((out / "results.json").read_text())
    parse_detections(entries, parse_ytvis_gt(_ytvis_gt(40, 64, 96)))
    for e in entries:
        assert len(e["segmentations"]) == 40
        assert all(e["segmentations"][t] is None for t in lost)


def test_on_error_stop_exits_2_with_one_line_and_keeps_valid_files(ckpts, tmp_path, capsys):
    good = _write_mp4(tmp_path / "good.mp4", 40)
    bad = tmp_path / "bad.mp4"
    _corrupt(good, bad, [15])
    out = tmp_path / "out"
    assert _segment(str(bad), "--weights", str(ckpts["tracker"]), "--out", str(out), "--on-error", "stop") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot decode frame" in err[0] and str(bad) in err[0]
    summary = json.loads((out / "summary.json").read_text())
    assert "cannot decode frame" in summary["error"]
    assert 0 < summary["frames"] < 40 and _mp4_frames(out / "overlay.mp4") == summary["frames"]
    assert json.loads((out / "results.json").read_text())


def _one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _vidseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidseg.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_wrong_checkpoint_path_exits_2_with_one_line(clip, tmp_path):
    missing = tmp_path / "no_such_ckpt"
    _one_line_error(_vidseg("segment", str(clip), "--weights", str(missing), "--out", str(tmp_path / "o")),
                    str(missing))


def test_missing_weights_and_bad_mode_are_one_line_errors(ckpts, clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("vidseg.bundled.default_weights", lambda: None)
    assert _segment(str(clip), "--out", str(tmp_path / "o")) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "vidseg segment: error: --weights is required: vidseg bundles no trained model"
    ]
    assert _segment(str(clip), "--weights", str(ckpts["tracker"]), "--mode", "offline") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mode: offline needs a refiner" in err[0]
    assert _segment(str(tmp_path / "nothing.mp4"), "--weights", str(ckpts["tracker"])) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("task, weights", [("vis", "tracker"), ("vps", "refiner")])
def test_sigint_leaves_complete_valid_files(ckpts, tmp_path, task, weights):
    source = tmp_path / "long.mp4"
    with VideoWriter(source, fps=25, preset="ultrafast") as writer:
        template = moving_frames(1, H, W)[0]
        for t in range(1500):
            writer.write(np.roll(template, t, axis=1))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidseg.cli", "segment", str(source), "--weights", str(ckpts[weights]),
         "--task", task, "--window", "8", "--overlap", "2", "--out", str(out), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not (out / "overlay.mp4").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted after" in stdout
    summary = json.loads((out / "summary.json").read_text())
    frames = summary["frames"]
    assert summary["interrupted"] is True and 0 < frames < 1500
    assert _mp4_frames(out / "overlay.mp4") == frames
    if task == "vis":
        entries = json.loads((out / "results.json").read_text())
        parse_detections(entries, parse_ytvis_gt(_ytvis_gt(frames)))
        assert all(len(e["segmentations"]) == frames for e in entries)
    else:
        (video,) = json.loads((out / "pred.json").read_text())["annotations"]
        assert len(video["annotations"]) == frames == len(list((out / "pan_pred" / "long").glob("*.png")))


def test_min_score_filters_only_the_overlay(ckpts, clip, tmp_path):
    def first_frame(path: Path) -> np.ndarray:
        with av.open(str(path)) as c:
            return next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32)

    source = first_frame(clip)
    drawn, entries = {}, {}
    for min_score in ("0", "1.01"):
        out = tmp_path / min_score
        assert _segment(str(clip), "--weights", str(ckpts["tracker"]), "--task", "vis", "--out", str(out),
                        "--min-score", min_score) == 0
        drawn[min_score] = np.abs(first_frame(out / "overlay.mp4") - source).mean()
        entries[min_score] = json.loads((out / "results.json").read_text())
    assert entries["0"] == entries["1.01"]  # the prediction files keep every result
    assert drawn["1.01"] < 10 < drawn["0"]  # nothing drawn vs. the top-5 masks drawn


def test_background_decoding_and_overlay_give_the_same_files(ckpts, clip, tmp_path):
    from vidseg.inference.predictor import VideoPredictor
    from vidseg.inference.segment import segment_video

    outs = {}
    for depth in (0, 3):
        p = VideoPredictor.from_checkpoint(ckpts["refiner"], task="vps", device="cpu", read_ahead=depth, window=5,
                                           overlap=1)
        outs[depth] = tmp_path / f"d{depth}"
        summary = segment_video(p, clip, outs[depth], progress=False, write_behind=depth)
        assert summary.frames == FRAMES
    assert (outs[0] / "pred.json").read_bytes() == (outs[3] / "pred.json").read_bytes()
    pngs = sorted(p.relative_to(outs[0]) for p in (outs[0] / "pan_pred").rglob("*.png"))
    assert len(pngs) == FRAMES
    assert all((outs[0] / p).read_bytes() == (outs[3] / p).read_bytes() for p in pngs)
    assert _mp4_frames(outs[3] / "overlay.mp4") == FRAMES


def test_overlay_error_is_raised_after_the_other_files_are_complete(ckpts, clip, tmp_path, monkeypatch):
    from vidseg.inference.predictor import VideoPredictor
    from vidseg.inference.segment import segment_video
    from vidseg.io.visualize import OverlayWriter

    def fail(self, frame, result):
        raise OSError("no space left on device")

    monkeypatch.setattr(OverlayWriter, "write", fail)
    p = VideoPredictor.from_checkpoint(ckpts["tracker"], task="vis", device="cpu")
    with pytest.raises(OSError, match="no space"):
        segment_video(p, clip, tmp_path / "out", progress=False)
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    entries = json.loads((tmp_path / "out/results.json").read_text())
    assert summary["frames"] >= 1 and all(len(e["segmentations"]) == summary["frames"] for e in entries)
