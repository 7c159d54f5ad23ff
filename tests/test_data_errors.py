"""Malformed inputs give a DataFormatError naming file and field; skip_bad skips and reports instead."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from vidseg.cli import main
from vidseg.data.formats.vipseg import read_vipseg
from vidseg.data.formats.vspw import read_vspw
from vidseg.data.formats.ytvis import read_ytvis
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.data.validate import validate_dataset
from vidseg.errors import DataFormatError


@pytest.fixture()
def synth(tmp_path):
    write_synthetic_dataset(tmp_path / "d", 2, 4, 40, 48, seed=1)
    return tmp_path / "d"


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_truncated_json(synth):
    path = synth / "ytvis" / "train" / "instances.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(DataFormatError) as e:
        read_ytvis(path)
    assert e.value.path == str(path) and e.value.field == "<json>" and "truncated" in str(e.value)


def test_segmentation_length_mismatch(synth):
    path = synth / "ytvis" / "train" / "instances.json"
    _edit_json(path, lambda d: d["annotations"][0]["segmentations"].pop())
    with pytest.raises(DataFormatError) as e:
        read_ytvis(path)
    assert e.value.path == str(path)
    assert e.value.field.startswith("annotations[0]") and e.value.field.endswith(".segmentations")
    assert "3 entries but the video has 4 frames" in str(e.value)
    ds = read_ytvis(path, skip_bad=True)  # the other annotations survive
    assert len(ds.problems) == 1 and sum(len(v.instances) for v in ds.videos) > 0


def test_unknown_category(synth):
    path = synth / "ytvis" / "train" / "instances.json"
    _edit_json(path, lambda d: d["annotations"][1].__setitem__("category_id", 99))
    with pytest.raises(DataFormatError) as e:
        read_ytvis(path)
    assert e.value.field.endswith("category_id") and "99" in str(e.value)
    vip = synth / "vipseg" / "panoptic_gt_VIPSeg_train.json"
    _edit_json(vip, lambda d: d["annotations"][0]["annotations"][2]["segments_info"][0].__setitem__("category_id", 50))
    with pytest.raises(DataFormatError) as e:
        read_vipseg(vip)
    assert e.value.path == str(vip) and "segments_info[0].category_id" in e.value.field


def test_missing_frame_file(synth):
    frame = synth / "ytvis" / "train" / "JPEGImages" / "video_0000" / "00002.jpg"
    frame.unlink()
    with pytest.raises(DataFormatError) as e:
        read_ytvis(synth / "ytvis" / "train" / "instances.json")
    assert e.value.path == str(frame) and e.value.field == "videos[0].file_names[2]"
    ds = read_ytvis(synth / "ytvis" / "train" / "instances.json", skip_bad=True)
    assert ds.videos == [] and len(ds.problems) > 0  # the video and its annotations are skipped
    (synth / "vspw" / "data" / "video_0000" / "mask" / "00001.png").unlink()
    with pytest.raises(DataFormatError) as e:
        read_vspw(synth / "vspw", "train")
    assert e.value.path.endswith("00001.png")


def test_png_of_wrong_size(synth):
    png = synth / "vipseg" / "panomasksRGB" / "video_0000" / "00001.png"
    Image.open(png).crop((0, 0, 47, 40)).save(png)
    v = read_vipseg(synth / "vipseg" / "panoptic_gt_VIPSeg_train.json").videos[0]
    with pytest.raises(DataFormatError) as e:
        v.load_panoptic(1)
    assert e.value.path == str(png) and "panoptic 1" in e.value.field and "47x40" in str(e.value)
    mask = synth / "vspw" / "data" / "video_0000" / "mask" / "00003.png"
    Image.fromarray(np.zeros((41, 48), np.uint8)).save(mask)
    with pytest.raises(DataFormatError) as e:
        read_vspw(synth / "vspw", "train", check_sizes=True)
    assert e.value.path == str(mask)
    report = validate_dataset(synth / "vspw", "vspw")
    assert not report.usable and any("00003.png" in p for p in report.problems)
    report = validate_dataset(synth / "vspw", "vspw", skip_bad=True)
    assert report.usable and report.skipped_videos == 1 and report.num_videos == 1


def test_panoptic_png_with_unlisted_segment(synth):
    vip = synth / "vipseg" / "panoptic_gt_VIPSeg_train.json"
    _edit_json(vip, lambda d: d["annotations"][0]["annotations"][0]["segments_info"].pop())
    report = validate_dataset(synth / "vipseg", "vipseg")
    assert not report.usable and any("missing from segments_info" in p for p in report.problems)


def test_cli_validate_exit_codes(synth, capsys):
    assert main(["data", "validate", str(synth / "ytvis"), "--format", "ytvis"]) == 0
    path = synth / "ytvis" / "train" / "instances.json"
    _edit_json(path, lambda d: d["annotations"][0].__setitem__("category_id", 77))
    assert main(["data", "validate", str(synth / "ytvis"), "--format", "ytvis"]) == 2  # unusable: a user error
    out = capsys.readouterr().out
    assert "problem:" in out and "instances.json" in out and "category_id" in out and "NOT USABLE" in out
    assert main(["data", "validate", str(synth / "ytvis"), "--format", "ytvis", "--skip-bad"]) == 0
    assert "skipped:" in capsys.readouterr().out
    path.write_text("{")
    shutil.rmtree(synth / "ytvis" / "val")
    assert main(["data", "validate", str(synth / "ytvis"), "--format", "ytvis", "--skip-bad"]) == 2
    assert main(["data", "validate", str(synth / "nope"), "--format", "ytvis"]) == 2
