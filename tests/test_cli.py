from __future__ import annotations

import subprocess
import sys

import av
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


def test_demo_writes_overlay_with_expected_frame_count(tmp_path):
    result = _vidseg("demo", "--out", str(tmp_path), "--frames", "12")
    assert result.returncode == 0, result.stderr
    assert "no trained model" in result.stdout
    assert str(tmp_path / "overlay.mp4") in result.stdout
    with av.open(str(tmp_path / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12


def test_demo_with_source_video(tmp_path):
    import numpy as np

    from vidseg.io.video import VideoWriter

    src = tmp_path / "in.mp4"
    with VideoWriter(src, fps=8) as w:
        for _ in range(6):
            w.write(np.zeros((32, 48, 3), np.uint8))
    assert main(["demo", "--source", str(src), "--out", str(tmp_path / "o")]) == 0
    with av.open(str(tmp_path / "o" / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6


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
