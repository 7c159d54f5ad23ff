from __future__ import annotations

import numpy as np
import pytest

from vidseg.structures import (
    FrameResult,
    VideoResult,
    decode_rle,
    encode_rle,
    panoptic_to_rgb,
    rgb_to_panoptic,
    rle_area,
    semantic_to_vspw_png,
)


def _mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_rle_round_trip_and_area():
    m = _mask(7, 9, 1, 4, 2, 8)
    rle = encode_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [7, 9]
    np.testing.assert_array_equal(decode_rle(rle), m)
    assert rle_area(rle) == 18


def test_decode_uncompressed_rle():
    m = _mask(4, 3, 0, 2, 1, 3)
    # column-major run lengths: 4 zeros (col 0), then 2 ones, 2 zeros, 2 ones, 2 zeros
    rle = {"size": [4, 3], "counts": [4, 2, 2, 2, 2]}
    np.testing.assert_array_equal(decode_rle(rle), m)


def test_frame_result_checks_lengths():
    with pytest.raises(ValueError, match="2 masks"):
        FrameResult(0, 4, 4, masks=[encode_rle(np.ones((4, 4)))] * 2, track_ids=np.array([1]),
                    class_ids=np.array([0, 0]), scores=np.array([1.0, 1.0]))


def test_video_result_to_ytvis_groups_tracks_with_none_where_absent():
    video = VideoResult(video_id=5)
    a, b = _mask(6, 6, 0, 2, 0, 2), _mask(6, 6, 3, 6, 3, 6)
    video.add(FrameResult.from_masks(0, np.stack([a]), [7], [1], [0.9]))
    video.add(FrameResult.from_masks(1, np.stack([a, b]), [7, 3], [1, 0], [0.7, 0.5]))
    video.add(FrameResult.from_masks(2, np.stack([b]), [3], [2], [0.8]))
    entries = video.to_ytvis()
    assert [e["video_id"] for e in entries] == [5, 5]
    first, second = entries
    assert first["category_id"] == 2 and first["score"] == pytest.approx(0.8)
    assert first["segmentations"][2] is None
    np.testing.assert_array_equal(decode_rle(first["segmentations"][1]), a)
    # track 3: class 2 has summed score 0.8 > class 0's 0.5
    assert second["category_id"] == 3 and second["score"] == pytest.approx(0.8)
    assert second["segmentations"][0] is None
    assert video.to_ytvis(category_ids=[10, 20, 30])[0]["category_id"] == 20


def test_panoptic_rgb_round_trip():
    ids = np.array([[0, 1, 256], [65536 + 7, 1000, 123456]], np.int32)
    rgb = panoptic_to_rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert tuple(rgb[0, 2]) == (0, 1, 0)
    np.testing.assert_array_equal(rgb_to_panoptic(rgb), ids)


def test_semantic_to_vspw_png():
    out = semantic_to_vspw_png(np.array([[0, 123], [-1, 5]]))
    np.testing.assert_array_equal(out, np.array([[0, 123], [255, 5]], np.uint8))


def test_data_format_error_pickles_with_path_and_field():
    import pickle

    from vidseg.errors import DataFormatError

    e = pickle.loads(pickle.dumps(DataFormatError("/a/b.json", "bad value", field="videos[0].id")))
    assert str(e) == "/a/b.json: videos[0].id: bad value" and e.field == "videos[0].id"


def test_select_keeps_the_chosen_objects_and_the_maps():
    import numpy as np

    from vidseg.structures import FrameResult

    masks = np.zeros((3, 4, 5), bool)
    masks[1, 1:3, 1:4] = True
    r = FrameResult.from_masks(2, masks, [7, 8, 9], [0, 1, 2], [0.1, 0.9, 0.5])
    r.semantic = np.zeros((4, 5), np.int32)
    picked = r.select([1])
    assert picked.track_ids.tolist() == [8] and picked.class_ids.tolist() == [1]
    assert picked.dense_masks()[0].sum() == 6 and picked.semantic is r.semantic
    assert r.select([0, 1, 2]) is r and len(r.select([]).masks) == 0
