from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest

from vidseg import __version__
from vidseg.cli import main


def _vidseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vidseg.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_only_real_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "config" in out


def _decode(path) -> list:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_demo_writes_overlay_of_the_bundled_clip_with_the_bundled_model(tmp_path):
    result = _vidseg("demo", "--out", str(tmp_path), "--frames", "5")
    assert result.returncode == 0, result.stderr
    assert "bundled DINOv2-S DVIS++ model" in result.stdout and "demo_clip.mp4" in result.stdout
    assert str(tmp_path / "overlay.mp4") in result.stdout
    assert len(_decode(tmp_path / "overlay.mp4")) == 5


def test_demo_overlay_frame_shows_the_tracked_object_masked(tmp_path):
    """A middle frame of the overlay colours the predicted object (a non-trivial area) and leaves the rest."""
    from vidseg.bundled import DEMO_CLIP, DEMO_MODEL
    from vidseg.demo import DEFAULT_MIN_SCORE, run_demo
    from vidseg.inference.predictor import VideoPredictor
    from vidseg.inference.segment import confident

    n = 8
    summary = run_demo(out_dir=tmp_path, max_frames=n, log=lambda _: None)
    assert summary.frames == n and summary.track_ids
    raw, overlay = _decode(DEMO_CLIP)[:n], _decode(summary.overlay)
    assert len(overlay) == n and overlay[0].shape == raw[0].shape

    # The same n frames, so that the offline refiner sees the same window as the demo's.
    predictor = VideoPredictor.from_checkpoint(DEMO_MODEL, device="cpu")
    results = [confident(r, DEFAULT_MIN_SCORE) for r in predictor.run(raw)]
    mid = n // 2
    masks = results[mid].dense_masks()
    assert len(masks), "no object scored above the display threshold in the middle frame"
    main = int(results[mid].track_ids[masks.reshape(len(masks), -1).sum(1).argmax()])
    mask = masks.any(0)
    assert 0.02 < mask.mean() < 0.6  # the object, not nothing and not the whole frame
    diff = np.abs(overlay[mid].astype(np.float32) - raw[mid].astype(np.float32)).sum(-1)
    inside, outside = diff[mask].mean(), diff[~mask].mean()
    assert inside > 60  # coloured where the object is
    assert inside > 4 * outside  # elsewhere only codec noise and the small label
    tracked = sum(main in r.track_ids for r in results)
    assert tracked >= 0.8 * n  # the same track id follows the object


def test_demo_with_source_video(tmp_path):
    from vidseg.io.video import VideoWriter

    src = tmp_path / "in.mp4"
    with VideoWriter(src, fps=8) as w:
        for _ in range(6):
            w.write(np.zeros((32, 48, 3), np.uint8))
    assert main(["demo", "--source", str(src), "--out", str(tmp_path / "o")]) == 0
    assert len(_decode(tmp_path / "o" / "overlay.mp4")) == 6


def test_demo_frames_must_be_positive(capsys):
    assert main(["demo", "--frames", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--frames" in err[0]


def _assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_demo_missing_source_exit_2_one_line(tmp_path):
    _assert_one_line_error(_vidseg("demo", "--source", "/nonexistent.mp4", "--out", str(tmp_path)),
                           "/nonexistent.mp4")


def test_demo_corrupt_mp4_exit_2(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 4000)
    _assert_one_line_error(_vidseg("demo", "--source", str(bad), "--out", str(tmp_path / "o")), str(bad))


def test_demo_empty_folder_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_one_line_error(_vidseg("demo", "--source", str(tmp_path / "empty"), "--out", str(tmp_path / "o")),
                           str(tmp_path / "empty"))


def test_demo_non_video_file_exit_2(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    _assert_one_line_error(_vidseg("demo", "--source", str(txt), "--out", str(tmp_path / "o")), str(txt))


def test_unknown_config_key_exit_2_names_key(capsys):
    assert main(["config", "show", "mask2former/synthetic_tiny", "--set", "model.decoder.num_layer=6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.decoder.num_layer" in err[0] and "num_layers" in err[0]


def test_wrong_value_type_exit_2_names_key(capsys):
    assert main(["config", "show", "mask2former/synthetic_tiny", "--set", "optim.lr=fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lr" in err[0]


def test_config_show_applies_override(capsys):
    assert main(["config", "show", "mask2former/synthetic_tiny", "--set", "model.decoder.num_layers=6"]) == 0
    assert "num_layers: 6" in capsys.readouterr().out
