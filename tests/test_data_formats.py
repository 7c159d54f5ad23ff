"""Readers and writers of every format: write -> read gives the same masks, ids and classes."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from vidseg.data.annotations import (
    Category,
    PanopticDataset,
    PanopticFrame,
    PanopticVideo,
    VideoAnnotation,
    VisDataset,
)
from vidseg.data.formats.coco import (
    read_coco_instances,
    read_coco_panoptic,
    write_coco_instances,
    write_coco_panoptic,
)
from vidseg.data.formats.davis import read_davis, write_davis_sequence
from vidseg.data.formats.panoptic import segments_from_panoptic, write_panoptic_png
from vidseg.data.formats.vipseg import read_vipseg
from vidseg.data.formats.vspw import read_vspw, write_vspw_meta, write_vspw_video
from vidseg.data.formats.ytvis import make_track, read_ytvis, write_ytvis
from vidseg.data.segmentation import to_compressed_rle, to_uncompressed_rle
from vidseg.data.synthetic import CLASS_NAMES, generate_video, video_seed, write_synthetic_dataset
from vidseg.data.validate import validate_dataset
from vidseg.io.imageio import read_label_png, write_jpeg
from vidseg.structures import decode_rle, encode_rle, remap_raw_vspw_labels


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, 3, 5, 48, 64, seed=7)
    return out


def _rand_masks(rng, n, h, w):
    masks = rng.random((n, h, w)) < 0.3
    masks[0, 0, 0] = True  # a run starting with foreground
    return masks


# ---- RLE encodings ------------------------------------------------------------------------------------------


def test_uncompressed_rle_roundtrip():
    rng = np.random.default_rng(0)
    for m in _rand_masks(rng, 4, 13, 17):
        unc = to_uncompressed_rle(encode_rle(m))
        assert isinstance(unc["counts"], list) and sum(unc["counts"]) == 13 * 17
        back = to_compressed_rle(unc, 13, 17, None, "seg")
        np.testing.assert_array_equal(decode_rle(back), m)
    empty = to_uncompressed_rle(encode_rle(np.zeros((3, 4), bool)))
    assert empty["counts"] == [12]


def test_polygon_segmentation_is_rasterised_like_pycocotools():
    poly = [[2.0, 2.0, 12.0, 2.0, 12.0, 9.0, 2.0, 9.0]]
    rle = to_compressed_rle(poly, 16, 20, None, "seg")
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, 16, 20))).astype(bool)
    np.testing.assert_array_equal(decode_rle(rle), ref)
    assert decode_rle(rle).sum() > 50


# ---- YouTube-VIS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rle", ["uncompressed", "compressed"])
def test_ytvis_roundtrip(tmp_path, rle):
    rng = np.random.default_rng(1)
    h, w, t = 12, 16, 4
    masks = _rand_masks(rng, 3, h, w)
    root = tmp_path / "JPEGImages"
    for k in range(t):
        write_jpeg(root / "vid" / f"{k:05d}.jpg", np.zeros((h, w, 3), np.uint8))
    tracks = [
        make_track(1, 3, [encode_rle(masks[0]), None, encode_rle(masks[1]), None],
                   occlusion=["no_occlusion", None, "severe_occlusion", None]),
        make_track(2, 1, [None, encode_rle(masks[2]), encode_rle(masks[2]), encode_rle(masks[0])], iscrowd=1),
    ]
    files = [f"vid/{k:05d}.jpg" for k in range(t)]
    ds = VisDataset([Category(1, "a"), Category(3, "c")], [VideoAnnotation(5, "vid", files, h, w, tracks, root)])
    path = write_ytvis(ds, tmp_path / "instances.json", rle=rle)
    raw = json.loads(path.read_text())
    assert isinstance(raw["annotations"][0]["segmentations"][0]["counts"], list if rle == "uncompressed" else str)
    back = read_ytvis(path)
    assert [c.id for c in back.categories] == [1, 3]
    v = back.videos[0]
    assert (v.video_id, v.name, v.frame_files, v.height, v.width) == (5, "vid", files, h, w)
    for a, b in zip(tracks, v.instances):
        assert (a.id, a.category_id, a.iscrowd, a.occlusion, a.areas) == (b.id, b.category_id, b.iscrowd,
                                                                         b.occlusion, b.areas)
        for t_ in range(t):
            np.testing.assert_array_equal(a.mask(t_, h, w), b.mask(t_, h, w))
    assert v.load_frame(0).shape == (h, w, 3)
    assert back.category_index() == {1: 0, 3: 1}


def test_ytvis_synthetic_masks_equal_generator(synth):
    ds = read_ytvis(synth / "ytvis" / "train" / "instances.json")
    video = generate_video(video_seed(7, 0), 5, 48, 64)
    v = ds.videos[0]
    for t in range(5):
        for tid, cls, m in zip(video.track_ids[t], video.class_ids[t], video.instance_masks[t]):
            tr = [x for x in v.instances if x.iscrowd == 0][int(tid) - 1]
            assert tr.category_id == cls + 1
            np.testing.assert_array_equal(tr.mask(t, 48, 64), m)


# ---- VIPSeg -------------------------------------------------------------------------------------------------


def test_vipseg_roundtrip_matches_generator(synth):
    ds = read_vipseg(synth / "vipseg" / "panoptic_gt_VIPSeg_train.json")
    assert [c.id for c in ds.categories] == list(range(7))
    assert [c.isthing for c in ds.categories] == [True] * 4 + [False] * 3
    assert (synth / "vipseg" / "train.txt").read_text() == "video_0000\nvideo_0001\n"
    video = generate_video(video_seed(7, 1), 5, 48, 64)
    v = ds.videos[1]
    assert v.video_id == "video_0001" and len(v) == 5
    for t in range(5):
        np.testing.assert_array_equal(v.load_panoptic(t), video.panoptic[t])
        assert v.frames[t].segments == video.segments[t]


def test_vipseg_writer_reader_handmade(tmp_path):
    ids = np.zeros((6, 8), np.int32)
    ids[:3] = 1  # stuff category 0
    ids[3:, :4] = 257  # thing, uses the G channel
    ids[3:, 4:] = 70000  # thing, uses the B channel
    cats = [Category(0, "road", False), Category(1, "person", True)]
    segs = segments_from_panoptic(ids, {1: 0, 257: 1, 70000: 1})
    write_panoptic_png(tmp_path / "panomasksRGB" / "v" / "0.png", ids)
    write_jpeg(tmp_path / "images" / "v" / "0.jpg", np.zeros((6, 8, 3), np.uint8))
    from vidseg.data.formats.vipseg import write_vipseg

    vid = PanopticVideo("v", [PanopticFrame("0", "v/0.jpg", "v/0.png", segs)], 6, 8)
    write_vipseg(PanopticDataset(cats, [vid]), tmp_path / "panoptic_gt_VIPSeg_val.json")
    back = read_vipseg(tmp_path / "panoptic_gt_VIPSeg_val.json")
    np.testing.assert_array_equal(back.videos[0].load_panoptic(0), ids)
    assert [(s.id, s.category_id, s.area) for s in back.videos[0].frames[0].segments] == [
        (1, 0, 24), (257, 1, 12), (70000, 1, 12)]


# ---- VSPW ---------------------------------------------------------------------------------------------------


def test_vspw_roundtrip_and_remap(synth, tmp_path):
    ds = read_vspw(synth / "vspw", "val")
    assert [v.name for v in ds.videos] == ["video_0002"]
    assert ds.class_names == list(CLASS_NAMES)
    video = generate_video(video_seed(7, 2), 5, 48, 64)
    for t in range(5):
        np.testing.assert_array_equal(remap_raw_vspw_labels(ds.videos[0].load_mask(t)), video.semantic[t])
    raw = np.array([[0, 1, 124, 255]], np.uint8)
    np.testing.assert_array_equal(remap_raw_vspw_labels(raw), [[255, 0, 123, 255]])
    # writer on its own, with the split lists newline-terminated
    masks = [np.array([[0, 1], [2, 255]], np.uint8)] * 2
    write_vspw_video(tmp_path, "clip", [np.zeros((2, 2, 3), np.uint8)] * 2, masks)
    write_vspw_meta(tmp_path, [Category(0, "wall", False), Category(1, "sky", False)], {"train": ["clip"]})
    assert (tmp_path / "train.txt").read_text() == "clip\n"
    back = read_vspw(tmp_path, "train", check_sizes=True)
    np.testing.assert_array_equal(back.videos[0].load_mask(1), masks[1])
    assert back.class_names == ["wall", "sky"]


# ---- COCO ---------------------------------------------------------------------------------------------------


def test_coco_instances_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    masks = _rand_masks(rng, 2, 10, 14)
    write_jpeg(tmp_path / "img.jpg", np.zeros((10, 14, 3), np.uint8))
    tracks = [make_track(4, 18, [encode_rle(masks[0])]), make_track(9, 1, [encode_rle(masks[1])], iscrowd=1)]
    ds = VisDataset([Category(1, "person"), Category(18, "dog")],
                    [VideoAnnotation(3, "img", ["img.jpg"], 10, 14, tracks, tmp_path)])
    path = write_coco_instances(ds, tmp_path / "instances.json")
    back = read_coco_instances(path)
    v = back.videos[0]
    assert (v.video_id, v.frame_files, len(v)) == (3, ["img.jpg"], 1)
    assert [(t.id, t.category_id, t.iscrowd) for t in v.instances] == [(4, 18, 0), (9, 1, 1)]
    for a, b in zip(masks, v.instances):
        np.testing.assert_array_equal(b.mask(0, 10, 14), a)


def test_coco_panoptic_roundtrip(tmp_path):
    ids = np.zeros((5, 7), np.int32)
    ids[:, :3] = 3000
    ids[2:, 4:] = 12
    write_jpeg(tmp_path / "a.jpg", np.zeros((5, 7, 3), np.uint8))
    write_panoptic_png(tmp_path / "panoptic_val" / "a.png", ids)
    segs = segments_from_panoptic(ids, {3000: 1, 12: 184}, crowd={12})
    cats = [Category(1, "person", True), Category(184, "sky", False)]
    ds = PanopticDataset(cats, [PanopticVideo(11, [PanopticFrame(11, "a.jpg", "a.png", segs)], 5, 7)])
    path = write_coco_panoptic(ds, tmp_path / "panoptic_val.json")
    back = read_coco_panoptic(path)
    np.testing.assert_array_equal(back.videos[0].load_panoptic(0), ids)
    assert back.videos[0].frames[0].segments == segs
    assert [c.isthing for c in back.categories] == [True, False]


# ---- DAVIS --------------------------------------------------------------------------------------------------


def test_davis_roundtrip_palette_and_sparse(tmp_path):
    rng = np.random.default_rng(3)
    maps = [rng.integers(0, 3, (9, 11)).astype(np.uint8) for _ in range(3)]
    write_davis_sequence(tmp_path, "seq", [np.zeros((9, 11, 3), np.uint8)] * 3, [maps[0], None, maps[2]])
    assert Image.open(tmp_path / "Annotations" / "seq" / "00000.png").mode == "P"
    ds = read_davis(tmp_path)
    v = ds.videos[0]
    assert [c.name for c in ds.categories] == ["object"] and v.annotated == [True, False, True]
    assert [t.id for t in v.instances] == [1, 2]
    for k, tr in enumerate(v.instances):
        assert tr.segmentations[1] is None
        for t in (0, 2):
            np.testing.assert_array_equal(tr.mask(t, 9, 11), maps[t] == k + 1)


def test_davis2016_reads_as_class_agnostic_vis(shared_data):
    root = shared_data / "davis2016"
    ds = read_davis(root)
    assert len(ds.videos) == 14 and len(ds.categories) == 1
    assert ds.videos[0].name == "bmx-trees"
    for v in ds.videos:
        assert len(v.instances) == 1 and all(v.annotated)
        tr = v.instances[0]
        png_dir = root / "Annotations" / v.name
        for t in range(0, len(v), 7):  # every 7th frame keeps the test fast; the reader reads them all
            png = read_label_png(png_dir / f"{t:05d}.png")
            np.testing.assert_array_equal(tr.mask(t, v.height, v.width), png > 0)
    assert ds.videos[0].load_frame(0).shape == (480, 854, 3)


def test_cutie_judo_warns_and_pads_mask(shared_data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_davis(shared_data / "cutie_judo", image_dir="images", mask_dir="masks")
    msgs = [str(w.message) for w in caught]
    assert any("00005.png" in m and "853x480" in m and "854x480" in m for m in msgs)
    v = ds.videos[0]
    assert len(v) == 16 and [t for t in range(16) if v.annotated[t]] == [0, 5, 8, 13]
    assert len(v.instances) == 4  # people entering one by one
    first = [next(t for t, s in enumerate(tr.segmentations) if s is not None) for tr in v.instances]
    assert first == [0, 5, 8, 13]
    m5 = v.instances[1].mask(5, 480, 854)
    raw = read_label_png(shared_data / "cutie_judo" / "masks" / "00005.png")
    np.testing.assert_array_equal(m5[:, :853], raw == 2)
    assert not m5[:, 853].any()
    report = validate_dataset(shared_data / "cutie_judo", "davis")  # images/ + masks/ found by default
    assert report.usable and report.num_videos == 1 and report.num_instances == 4
    assert any("853x480" in w for w in report.warnings)


def test_label_and_panoptic_pngs_read_as_the_official_scripts_do(tmp_path):
    """One reader for the datasets and the evaluators: `np.array(Image.open(path))`, single channel."""
    from vidseg.errors import DataFormatError
    from vidseg.io.imageio import read_id_png

    labels = np.array([[0, 1], [1, 0]], bool)
    Image.fromarray(labels).save(tmp_path / "bits.png")  # mode "1": uint8 0/1, not bool, not 0/255
    got = read_label_png(tmp_path / "bits.png")
    assert got.dtype == np.uint8 and got.tolist() == [[0, 1], [1, 0]]
    rgb = np.array([[[1, 2, 3], [0, 0, 0]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "pan.png")
    assert read_id_png(tmp_path / "pan.png").tolist() == [[1 + 2 * 256 + 3 * 65536, 0]]
    rgba = np.array([[[1, 2, 3, 200], [255, 255, 255, 0]]], np.uint8)  # alpha is not part of the id
    Image.fromarray(rgba, "RGBA").save(tmp_path / "pan_rgba.png")
    assert read_id_png(tmp_path / "pan_rgba.png").tolist() == [[1 + 2 * 256 + 3 * 65536, 256**3 - 1]]
    with pytest.raises(DataFormatError, match="single-channel"):
        read_label_png(tmp_path / "pan.png")
    with pytest.raises(DataFormatError, match="RGB panoptic"):
        read_id_png(tmp_path / "bits.png")
