"""Custom data -> YouTube-VIS: folders of frames or video files plus index-mask PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vidseg.cli import main
from vidseg.data.convert import convert_to_ytvis
from vidseg.data.formats.ytvis import read_ytvis
from vidseg.errors import DataFormatError
from vidseg.io.imageio import davis_palette, write_jpeg, write_png


def _masks(t: int, h: int = 24, w: int = 32) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[2 + t : 10 + t, 3:12] = 1
    if t >= 1:
        m[14:20, 18 + t : 26 + t] = 2  # object 2 appears on frame 1
    return m


def _make(tmp_path, videos=("walk",)):
    for name in videos:
        for t in range(4):
            write_jpeg(tmp_path / "frames" / name / f"{t:05d}.jpg", np.full((24, 32, 3), 40 * t, np.uint8))
            if t != 2:  # frame 2 is not annotated
                write_png(tmp_path / "masks" / name / f"{t:05d}.png", _masks(t), palette=davis_palette())


def test_convert_folders_with_classes(tmp_path):
    _make(tmp_path, ("walk", "run"))
    path = convert_to_ytvis(tmp_path / "frames", tmp_path / "masks", tmp_path / "out",
                            classes={"walk": {1: "cat", 2: "dog"}, "run": {1: "dog", 2: "dog"}})
    ds = read_ytvis(path)
    assert [(c.id, c.name) for c in ds.categories] == [(1, "cat"), (2, "dog")]
    walk = next(v for v in ds.videos if v.name == "walk")
    assert walk.frame_files == ["walk/00000.jpg", "walk/00001.jpg", "walk/00003.jpg"]  # annotated frames only
    assert [tr.category_id for tr in walk.instances] == [1, 2]
    obj2 = walk.instances[1]
    assert obj2.segmentations[0] is None
    np.testing.assert_array_equal(obj2.mask(2, 24, 32), _masks(3) == 2)
    ids = [tr.id for v in ds.videos for tr in v.instances]
    assert len(set(ids)) == len(ids) and min(ids) >= 1
    assert main(["data", "validate", str(tmp_path / "out"), "--format", "ytvis"]) == 0


def test_convert_errors_and_cli(tmp_path, capsys):
    _make(tmp_path)
    with pytest.raises(DataFormatError) as e:
        convert_to_ytvis(tmp_path / "frames", tmp_path / "masks", tmp_path / "o1", classes={"walk": {1: "cat"}})
    assert e.value.field == "classes" and "object 2" in str(e.value)
    (tmp_path / "classes.json").write_text(json.dumps({"walk": {"1": "cat", "2": "cat"}}))
    argv = ["data", "convert", "--frames", str(tmp_path / "frames"), "--masks", str(tmp_path / "masks"),
            "--out", str(tmp_path / "o2"), "--classes", str(tmp_path / "classes.json"), "--all-frames"]
    assert main(argv) == 0
    ds = read_ytvis(tmp_path / "o2" / "instances.json")
    assert len(ds.videos[0]) == 4 and ds.videos[0].instances[0].segmentations[2] is None
    assert main(["data", "convert", "--frames", str(tmp_path / "nope"), "--masks", "x", "--out", "y"]) == 2
    assert "frame folder not found" in capsys.readouterr().err


def test_convert_video_file(tmp_path):
    av = pytest.importorskip("av")
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    with av.open(str(frames_dir / "clip.mp4"), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for t in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 60 * t, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    for t in range(3):
        write_png(tmp_path / "masks" / "clip" / f"{t:05d}.png", _masks(t), palette=davis_palette())
    ds = read_ytvis(convert_to_ytvis(frames_dir, tmp_path / "masks", tmp_path / "out"))
    v = ds.videos[0]
    assert v.name == "clip" and len(v) == 3 and (v.height, v.width) == (24, 32)
    assert [c.name for c in ds.categories] == ["object"] and len(v.instances) == 2
    assert v.load_frame(2).mean() > v.load_frame(0).mean()
