"""The README's "Python API" snippet runs as written, and its "Command line" flags exist."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
from conftest import REPO_ROOT

from vidseg.cli import build_parser
from vidseg.io.video import VideoWriter

README = (REPO_ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def _code_block(section: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block"
    return match.group(1)


def test_python_api_snippet_runs_on_a_tiny_clip(tmp_path, monkeypatch, capsys):
    with VideoWriter(tmp_path / "my_video.mp4", fps=10) as writer:  # the file name the snippet uses
        for t in range(3):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[10:30, 5 + 4 * t:25 + 4 * t] = 200
            writer.write(frame)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_code_block(_section("Python API"), "python"), "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert re.findall(r"^(\d+) \[", printed, re.M) == ["0", "1", "2"]  # frame_index, track_ids... per frame
    assert namespace["result"].frame_index == 2  # type: ignore[attr-defined]  # and the last step()


def _subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", ["demo", "segment"])
def test_command_line_section_flags_exist(command):
    block = _code_block(_section("Command line"), "text")
    usage = re.search(rf"^vidseg {command} (.*?)(?=^vidseg )", block, re.S | re.M)
    assert usage
    flags = set(re.findall(r"--[a-z][a-z-]*", usage.group(1)))
    known = {o for a in _subcommand(command)._actions for o in a.option_strings}
    assert flags and flags <= known, flags - known
    assert "[--out DIR]" in usage.group(1)  # --out has a default: the README must not show it as required
    assert "bundled" in _subcommand(command).format_help()  # --weights defaults to the bundled model
