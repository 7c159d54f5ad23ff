"""`vidseg eval` on bad inputs, as a user runs it: exit code 2, one line on stderr naming the file and the
field, no traceback; a short prediction warns once and still evaluates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vidseg.structures import encode_rle

H, W = 24, 32


def _mask(y0: int) -> dict:
    m = np.zeros((H, W), np.uint8)
    m[y0 : y0 + 8, 4:20] = 1
    return encode_rle(m)


def _entry(score: object = 0.9, frames: int = 3) -> dict:
    return {"video_id": 1, "category_id": 1, "score": score, "segmentations": [_mask(2)] * frames}


@pytest.fixture()
def gt(tmp_path: Path) -> Path:
    path = tmp_path / "gt.json"
    seg = [_mask(2)] * 3
    path.write_text(
        json.dumps(
            {
                "videos": [{"id": 1, "height": H, "width": W, "length": 3}],
                "annotations": [
                    {"id": 1, "video_id": 1, "category_id": 1, "segmentations": seg, "areas": [128] * 3, "iscrowd": 0}
                ],
                "categories": [{"id": 1, "name": "thing"}],
            }
        )
    )
    return path


def _eval(gt: Path, entries: list[dict] | str, *extra: str) -> subprocess.CompletedProcess:
    results = gt.parent / "results.json"
    results.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    cmd = [sys.executable, "-m", "vidseg.cli", "eval", "--task", "vis", "--gt", str(gt), "--pred", str(results)]
    return subprocess.run([*cmd, "--workers", "1", *extra], capture_output=True, text=True, timeout=120)


def _assert_one_line_error(proc: subprocess.CompletedProcess, *parts: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("vidseg eval: error: ")
    for part in parts:
        assert part in lines[0], lines[0]


def _garbage_counts() -> list[dict]:
    bad = _entry()
    bad["segmentations"] = [_mask(2), _mask(2), {"size": [H, W], "counts": "0000"}]
    return [_entry(), bad]


def test_garbage_rle_counts(gt):
    proc = _eval(gt, _garbage_counts())
    _assert_one_line_error(proc, "results.json: [1].segmentations[2].counts: ", f"{H}x{W}")


@pytest.mark.parametrize("score", ["NaN", "Infinity", '"0.9"'])
def test_non_finite_or_string_score(gt, score):
    text = json.dumps([_entry(), _entry(score=-1.0)]).replace("-1.0", score)
    proc = _eval(gt, text)
    _assert_one_line_error(proc, "results.json: [1].score: ", "finite number")


def test_short_segmentations_warn_once_naming_the_prediction(gt):
    proc = _eval(gt, [_entry(frames=1), _entry(frames=2)])
    assert proc.returncode == 0, proc.stderr
    warning_lines = [ln for ln in proc.stderr.splitlines() if "shorter than the video" in ln]
    assert len(warning_lines) == 1 and "results.json" in warning_lines[0] and "[0]" in warning_lines[0]
    assert "AP" in proc.stdout


def test_unwritable_out_fails_before_evaluating(gt, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = _eval(gt, _garbage_counts(), "--out", str(blocker / "metrics.json"))
    # the --out problem is reported, not the (later) problem of the results
    _assert_one_line_error(proc, f"--out {blocker / 'metrics.json'}", "cannot write")
    assert proc.stdout == ""


def test_writable_out_is_not_left_behind_on_a_failed_evaluation(gt, tmp_path):
    out = tmp_path / "new" / "metrics.json"
    proc = _eval(gt, _garbage_counts(), "--out", str(out))
    _assert_one_line_error(proc, "[1].segmentations[2].counts")
    assert not out.exists()
