from __future__ import annotations

import numpy as np

from vidseg.io.video import open_video
from vidseg.io.visualize import OverlayWriter, draw_frame, track_color
from vidseg.structures import FrameResult


def _result(t=0):
    m = np.zeros((2, 60, 80), bool)
    m[0, 10:30, 10:30] = True
    m[1, 35:55, 40:75] = True
    return FrameResult.from_masks(t, m, [4, 9], [0, 1], [0.9, 0.6])


def test_track_colours_are_stable_and_distinct():
    assert track_color(4) == track_color(4)
    assert len({track_color(i) for i in range(20)}) == 20


def test_draw_frame_colours_masks_with_track_colour_and_keeps_background():
    frame = np.full((60, 80, 3), 100, np.uint8)
    out = draw_frame(frame, _result(), class_names=["cat", "dog"], contours=False, show_scores=False)
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[58, 2], frame[58, 2])
    expected = (0.5 * 100 + 0.5 * np.array(track_color(9))).astype(int)
    assert np.abs(out[50, 70].astype(int) - expected).max() <= 1


def test_draw_frame_draws_labels_and_contours():
    frame = np.zeros((60, 80, 3), np.uint8)
    plain = draw_frame(frame, _result(), contours=False, show_scores=False)
    labelled = draw_frame(frame, _result(), class_names=["cat", "dog"])
    assert (plain != labelled).any()
    # contour pixel has the full track colour
    assert tuple(labelled[29, 20]) == track_color(4)


def test_draw_frame_semantic_map_and_resized_masks():
    frame = np.zeros((120, 160, 3), np.uint8)
    r = _result()
    r.semantic = np.zeros((60, 80), np.int32)
    out = draw_frame(frame, r)
    assert out.shape == (120, 160, 3) and out[119, 0].any()


def test_overlay_writer_writes_mp4_and_pngs(tmp_path):
    frame = np.zeros((60, 80, 3), np.uint8)
    with OverlayWriter(tmp_path, fps=10, write_png=True) as w:
        for t in range(5):
            w.write(frame, _result(t))
    assert len(list(open_video(w.mp4_path))) == 5
    assert len(list((tmp_path / "frames").glob("*.png"))) == 5
