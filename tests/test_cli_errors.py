"""Every bad input of the command line: exit code 2, one line on stderr naming the file or field, no
traceback, and nothing written earlier lost (issue 19). Each test runs `python -m vidseg.cli` as a user
would; the checks that happen before torch is imported take a fraction of a second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from test_predictor import moving_frames, tiny_config

from vidseg.cli import _default_threads, main
from vidseg.io.checkpoint import save_checkpoint
from vidseg.io.video import VideoWriter, open_video
from vidseg.models.model import build_model

H, W = 48, 72
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Runs the CLI like `vidseg`, then fails if torch was imported: a missing input must not wait for it.
NO_TORCH = ("import sys; from vidseg.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")


def _vidseg(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidseg.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=cwd)


def _one_line_error(result: subprocess.CompletedProcess, *needles: str | Path) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    cfg = tiny_config("dvis_online")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "trk", build_model(cfg).state_dict(), cfg, "tracker", 1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    with VideoWriter(path, fps=10) as writer:
        for f in moving_frames(6, H, W):
            writer.write(f)
    return path


# --- inputs and --out, checked before torch is imported ---------------------------------------------------


@pytest.mark.parametrize("args, needle", [
    (["segment", "/no/such/video.mp4", "--out", "{tmp}/o"], "/no/such/video.mp4: SOURCE: no such file"),
    (["segment", "{clip}", "--weights", "/no/ckpt", "--out", "{tmp}/o"], "/no/ckpt: --weights: no such file"),
    (["demo", "--source", "/no/such/clip.mp4", "--out", "{tmp}/o"], "/no/such/clip.mp4: --source: no such file"),
    (["data", "validate", "/no/dataset", "--format", "ytvis"], "/no/dataset: path: no such file"),
    (["train", "mask2former/synthetic_tiny", "--out", "{tmp}/run", "--init", "/no/init"], "/no/init: --init"),
])
def test_missing_input_is_reported_before_torch_loads(clip, tmp_path, args, needle):
    args = [a.format(clip=clip, tmp=tmp_path) for a in args]
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True,
                            timeout=120, env=ENV)
    _one_line_error(result, needle)
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()  # nothing created


@pytest.mark.parametrize("command", [
    ["segment", "{clip}"], ["demo"], ["data", "synth"], ["train", "mask2former/synthetic_tiny"],
])
def test_out_that_is_a_file_or_cannot_be_created(clip, tmp_path, command):
    command = [c.format(clip=clip) for c in command]
    existing = tmp_path / "results.txt"
    existing.write_text("earlier results")
    _one_line_error(_vidseg(*command, "--out", existing), existing, "--out", "not a folder")
    _one_line_error(_vidseg(*command, "--out", existing / "sub"), existing / "sub", "--out", "is a file")
    assert existing.read_text() == "earlier results"


def test_non_empty_out_is_refused_unless_overwrite_deletes_the_earlier_run(ckpt, clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(clip), "--weights", str(ckpt), "--task", "vis", "--out", str(out),
                 "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # Another task into the same folder would leave results.json next to its PNGs: refused, files kept.
    line = _one_line_error(_vidseg("segment", clip, "--weights", ckpt, "--task", "vss", "--out", out),
                           out, "--out", "not empty", "--overwrite")
    assert "results.json" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # A file vidseg did not write is never deleted, not even with --overwrite.
    (out / "notes.txt").write_text("mine")
    _one_line_error(_vidseg("segment", clip, "--weights", ckpt, "--out", out, "--overwrite"), "notes.txt")
    (out / "notes.txt").unlink()
    # --overwrite: the earlier run's outputs are gone, the new ones written.
    assert main(["segment", str(clip), "--weights", str(ckpt), "--task", "vss", "--out", str(out),
                 "--no-progress", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["overlay.mp4", "summary.json", "walk"]
    # The demo writes one file that a rerun replaces: its folder may be reused without --overwrite.
    demo_out = tmp_path / "demo"
    demo_out.mkdir()
    (demo_out / "overlay.mp4").write_bytes(b"old")
    assert main(["demo", "--source", str(clip), "--weights", str(ckpt), "--out", str(demo_out)]) == 0
    assert (demo_out / "overlay.mp4").stat().st_size > 3


def test_data_synth_out_reuse_needs_overwrite(tmp_path):
    out = tmp_path / "synth"
    args = ["data", "synth", "--out", str(out), "--videos", "1", "--frames", "2", "--size", "32x32",
            "--formats", "ytvis"]
    assert main(args) == 0
    _one_line_error(_vidseg(*args), out, "not empty")
    assert main([*args, "--overwrite"]) == 0


# --- devices, threads and config values -------------------------------------------------------------------


@pytest.mark.parametrize("device", ["tpu", "cuda"])
def test_bad_device_is_one_line(ckpt, clip, tmp_path, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _one_line_error(_vidseg("segment", clip, "--weights", ckpt, "--out", tmp_path / "o", "--device", device),
                    f"device {device!r}")
    assert not (tmp_path / "o").exists()


def test_threads_must_be_positive_and_default_to_half_the_cpus(clip, tmp_path):
    _one_line_error(_vidseg("segment", clip, "--threads", "0", "--out", tmp_path / "o"), "--threads")
    assert 1 <= _default_threads() <= max(1, min(4, (os.cpu_count() or 1) // 2))


@pytest.mark.parametrize("override, needle", [
    ("optim.batch_size=0", "optim.batch_size: must be >= 1, got 0"),
    ("model.decoder.num_layers=-3", "model.decoder.num_layers: must be >= 1, got -3"),
    ("optim.lr=-1", "optim.lr: must be > 0, got -1.0"),
])
def test_out_of_range_overrides_name_the_full_key(tmp_path, override, needle):
    _one_line_error(_vidseg("train", "mask2former/synthetic_tiny", "--out", tmp_path / "run", "--set", override),
                    needle)
    assert not (tmp_path / "run").exists()


# --- datasets ---------------------------------------------------------------------------------------------


def test_data_validate_unusable_dataset_exits_2(tmp_path):
    (tmp_path / "instances.json").write_text('{"videos": [')  # truncated
    result = _vidseg("data", "validate", tmp_path, "--format", "ytvis")
    _one_line_error(result, tmp_path, "not usable")
    assert "NOT USABLE" in result.stdout  # the problems themselves are listed on stdout


def test_data_convert_empty_masks_names_the_masks_folder_and_writes_nothing(tmp_path):
    (tmp_path / "frames" / "v1").mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "frames" / "v1" / "00000.jpg")
    (tmp_path / "masks").mkdir()
    result = _vidseg("data", "convert", "--frames", tmp_path / "frames", "--masks", tmp_path / "masks",
                     "--out", tmp_path / "out")
    _one_line_error(result, f"{tmp_path / 'masks'}: masks: no mask PNGs")
    assert not (tmp_path / "out").exists()


# --- videos -----------------------------------------------------------------------------------------------


def test_frame_folder_with_another_frame_size_stops_with_the_frame_named(ckpt, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, f in enumerate(moving_frames(6, H, W)):
        Image.fromarray(f if t != 3 else f[:40]).save(folder / f"{t:05d}.png")
    out = tmp_path / "out"
    _one_line_error(_vidseg("segment", folder, "--weights", ckpt, "--out", out, "--no-progress"),
                    folder / "00003.png", "frame 3", "72x40")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and "00003.png" in summary["error"]
    with av.open(str(out / "overlay.mp4")) as c:  # the frames done are finalised
        assert sum(1 for _ in c.decode(video=0)) == 3


def _faststart_mp4(path: Path, frames: int) -> Path:
    """An mp4 with its index first (as web videos are), so a truncated copy still opens."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for f in moving_frames(frames, H, W):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_truncated_mp4_says_it_ended_early_and_keeps_frame_indices(ckpt, tmp_path, capsys):
    full = _faststart_mp4(tmp_path / "full.mp4", 40)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])  # the index and some frames
    read, lost = [], []
    for index, _ in open_video(cut).indexed(lambda i, e: lost.append(i)):
        read.append(index)
    out = tmp_path / "out"
    assert main(["segment", str(cut), "--weights", str(ckpt), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"video ended early: {max(read + lost) + 1} of 40 frames" in captured.err
    assert "video ended early" in captured.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ended_early"] is True and summary["expected_frames"] == 40
    assert summary["frames"] == len(read) < 40
    # Every result sits at its frame index: missing frames are empty slots, not shifted onto the next ones.
    entries = json.loads((out / "results.json").read_text())
    for e in entries:
        assert len(e["segmentations"]) == max(read + lost) + 1
    for t in range(max(read + lost) + 1):
        assert any(e["segmentations"][t] is not None for e in entries) == (t in read), t


def test_sigterm_exits_143_with_complete_files(ckpt, tmp_path):
    source = tmp_path / "long.mp4"
    with VideoWriter(source, fps=25, preset="ultrafast") as writer:
        template = moving_frames(1, H, W)[0]
        for t in range(600):
            writer.write(np.roll(template, t, axis=1))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "vidseg.cli", "segment", str(source), "--weights", str(ckpt),
                             "--out", str(out), "--device", "cpu", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not (out / "overlay.mp4").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "interrupted after" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["stop_signal"] == "SIGTERM" and 0 < summary["frames"] < 600
