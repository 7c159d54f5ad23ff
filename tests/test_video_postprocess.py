"""Per-task video post-processing on hand-built class probabilities and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidseg.inference.postprocess import (
    FrameGeometry,
    VideoPostprocessor,
    upsample_masks,
    vis_frames,
    vps_frames,
    vss_frames,
)
from vidseg.models.video import ClipOutput, VideoFrameOutput

IN, OUT = 10.0, -10.0  # mask logits inside / outside


def masks_from(regions: list[list[tuple[slice, slice] | None]], q: int, h: int = 4, w: int = 4) -> torch.Tensor:
    """[T, Q, h, w] logits: regions[t][i] = (rows, cols) where query i is inside at frame t (None = empty)."""
    out = torch.full((len(regions), q, h, w), OUT)
    for t, frame in enumerate(regions):
        for i, reg in enumerate(frame):
            if reg is not None:
                out[t, i][reg] = IN
    return out


# ---------------------------------------------------------------------------------------------------------
# VIS


def test_vis_topk_lets_one_query_yield_several_labels() -> None:
    probs = torch.tensor(
        [
            [0.45, 0.40, 0.05, 0.10],  # query 0: two plausible classes
            [0.05, 0.05, 0.80, 0.10],
            [0.01, 0.01, 0.01, 0.97],  # no-object
        ]
    )
    all_rows = (slice(None), slice(0, 2))
    masks = masks_from([[all_rows, (slice(0, 1), slice(3, 4)), None], [all_rows, None, None]], q=3)
    frames = list(vis_frames(probs, masks, [10, 11], topk=3))
    assert [f.frame_index for f in frames] == [10, 11]
    for f in frames:
        # sorted by score; id = q * K + k + 1 is the same in every frame
        assert f.track_ids.tolist() == [1 * 3 + 2 + 1, 0 * 3 + 0 + 1, 0 * 3 + 1 + 1]
        assert f.class_ids.tolist() == [2, 0, 1]
        assert np.allclose(f.scores, [0.80, 0.45, 0.40])
    dense0, dense1 = frames[0].dense_masks(), frames[1].dense_masks()
    assert dense0[1].sum() == 8 and np.array_equal(dense0[1], dense0[2])  # same query, same mask
    assert dense0[0].sum() == 1 and dense1[0].sum() == 0  # an empty frame still lists the track


def test_vis_masks_are_logits_above_zero() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05]])
    masks = torch.tensor([[[[0.1, -0.1], [0.0, 3.0]]]])
    frame = list(vis_frames(probs, masks, [0], topk=1))[0]
    assert frame.dense_masks()[0].tolist() == [[True, False], [False, True]]


def test_geometry_crops_padding_before_resizing() -> None:
    # Input 8x8 of which the top 4x8 is the frame; the stride-2 mask is positive on the frame, negative on
    # the padding. Cropping first keeps the whole frame; resizing the padded mask directly would not.
    logits = torch.tensor([[5.0] * 4, [5.0] * 4, [-5.0] * 4, [-5.0] * 4])[None]
    geometry = FrameGeometry(input_size=(8, 8), valid_size=(4, 8), output_size=(2, 4))
    up = upsample_masks(logits, geometry)
    assert up.shape == (1, 2, 4) and (up > 0).all()
    frame = list(vis_frames(torch.tensor([[0.9, 0.1]]), logits[None], [0], topk=1, geometry=geometry))[0]
    assert (frame.height, frame.width) == (2, 4) and frame.dense_masks().all()


# ---------------------------------------------------------------------------------------------------------
# VPS

IS_THING = [True, True, False, False]  # classes 0, 1 things; 2, 3 stuff


def _vps_case() -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.zeros(7, 5)
    for q, (k, s) in enumerate([(0, 0.9), (1, 0.95), (2, 0.9), (2, 0.85), (0, 0.99), (1, 0.85), (3, 0.5)]):
        p[q, k] = s
        p[q, 4] = 1 - s
    col = lambda c, rows=slice(None): (rows, slice(c, c + 1))  # noqa: E731
    frame0 = [
        col(0),  # q0 thing
        col(1),  # q1 thing
        col(2, slice(0, 2)),  # q2 stuff class 2
        col(2, slice(2, 4)),  # q3 stuff class 2 (merged with q2)
        col(3, slice(1, 4)),  # q4 thing
        (slice(None), slice(0, 4)),  # q5: under q0, q1, q4; wins only (0, 3) -> overlap too small
        (slice(None), slice(None)),  # q6: score 0.5 < 0.8 -> never kept
    ]
    frame1 = list(frame0)
    frame1[1] = None  # q1 leaves the video
    return p, masks_from([frame0, frame1], q=7)


def test_vps_merge_ids_stuff_and_overlap() -> None:
    probs, masks = _vps_case()
    frames = list(vps_frames(probs, masks, [0, 1], IS_THING, stable_ids=True))
    f0, f1 = frames
    stuff_id = 7 + 1 + 2
    expected0 = np.array(
        [
            [1, 2, stuff_id, 0],
            [1, 2, stuff_id, 5],
            [1, 2, stuff_id, 5],
            [1, 2, stuff_id, 5],
        ]
    )
    assert np.array_equal(f0.panoptic, expected0)
    # q1 is gone in frame 1; q5 would win its column but was dropped over the volume -> void.
    expected1 = expected0.copy()
    expected1[:, 1] = 0
    assert np.array_equal(f1.panoptic, expected1)
    # thing ids are slot + 1 in both frames; stuff of one class is one segment
    assert [(s.id, s.category_id, s.is_thing) for s in f0.segments] == [
        (1, 0, True), (2, 1, True), (5, 0, True), (stuff_id, 2, False),
    ]
    assert [s.id for s in f1.segments] == [1, 5, stuff_id]
    assert f0.track_ids.tolist() == [1, 2, 5, stuff_id]
    assert np.allclose(f0.scores, [0.9, 0.95, 0.99, 0.9])  # merged stuff scores as its best member
    assert f0.semantic[0].tolist() == [0, 1, 2, -1]
    assert np.array_equal(f0.dense_masks()[3], expected0 == stuff_id)


def test_vps_overlap_is_measured_over_the_video_volume() -> None:
    # q0 covers everything in both frames; q1 (more confident) takes 12 of 16 pixels in frame 1 only.
    # Frame 0 alone would keep q0 (16/16), the volume does not: (16 + 4) / 32 < 0.8.
    probs = torch.tensor([[0.9, 0.1], [0.95, 0.05]])
    everywhere, top = (slice(None), slice(None)), (slice(0, 3), slice(None))
    masks = masks_from([[everywhere, None], [everywhere, top]], 2)
    volume = list(vps_frames(probs, masks, [0, 1], [True]))
    assert (volume[0].panoptic == 0).all()
    # Official ids are 1..S in query order: q1 is the only segment.
    assert (volume[1].panoptic[:3] == 1).all() and (volume[1].panoptic[3] == 0).all()
    alone = list(vps_frames(probs, masks[:1], [0], [True]))
    assert (alone[0].panoptic == 1).all()


def test_vps_nothing_kept_gives_void() -> None:
    probs = torch.tensor([[0.3, 0.7]])
    frame = list(vps_frames(probs, torch.zeros(1, 1, 3, 3), [4], [True]))[0]
    assert frame.frame_index == 4 and (frame.panoptic == 0).all() and (frame.semantic == -1).all()
    assert frame.segments == [] and frame.masks == []


def test_vps_needs_thing_flags() -> None:
    with pytest.raises(ValueError, match="is_thing"):
        VideoPostprocessor("vps")
    with pytest.raises(ValueError, match="is_thing"):
        list(vps_frames(torch.zeros(2, 3), torch.zeros(1, 2, 2, 2), [0], [True]))


# ---------------------------------------------------------------------------------------------------------
# VSS


def test_vss_argmax_of_class_times_mask() -> None:
    probs = torch.tensor([[0.1, 0.8, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1], [0.6, 0.2, 0.1, 0.1]])
    left, right = (slice(None), slice(0, 2)), (slice(None), slice(2, 4))
    masks = masks_from([[left, right, None]], q=3)
    frame = list(vss_frames(probs, masks, [3]))[0]
    assert frame.frame_index == 3 and frame.semantic.dtype == np.int32
    assert (frame.semantic[:, :2] == 1).all() and (frame.semantic[:, 2:] == 2).all()
    # query chunking does not change the result
    assert np.array_equal(list(vss_frames(probs, masks, [3], query_chunk=1))[0].semantic, frame.semantic)


# ---------------------------------------------------------------------------------------------------------
# Online and offline drivers


def _frame(t: int, class_logits: torch.Tensor, masks: torch.Tensor) -> VideoFrameOutput:
    q = class_logits.shape[0]
    return VideoFrameOutput(
        class_logits=class_logits[None],
        mask_logits=masks[None],
        embeddings=torch.zeros(1, q, 4),
        indices=torch.arange(q)[None],
        frame_index=t,
    )


def test_online_vis_averages_logits_over_frames_seen() -> None:
    post = VideoPostprocessor("vis", topk=1)
    masks = torch.full((1, 2, 2), IN)
    logits = [torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([[0.0, 4.0, 0.0]]), torch.tensor([[0.0, 4.0, 0.0]])]
    state = post.init_state()
    results = []
    for t, lg in enumerate(logits):
        res, state = post.online(_frame(t, lg, masks), state)
        results.append(res)
    assert state.count == 3
    assert results[0].class_ids.tolist() == [0]
    assert results[1].class_ids.tolist() == [1]  # mean logits (1.5, 2, 0) -> class 1
    expected = torch.stack(logits).mean(0).softmax(-1)[0, 1]
    assert np.isclose(results[2].scores[0], float(expected), atol=1e-6)
    assert results[1].track_ids.tolist() == results[2].track_ids.tolist() == [2]


def test_online_vps_ids_stable_over_frames() -> None:
    post = VideoPostprocessor("vps", is_thing=[True, False])
    logits = torch.tensor([[6.0, 0.0, 0.0], [0.0, 6.0, 0.0]])  # slot 0 thing, slot 1 stuff
    state = post.init_state()
    ids = []
    for t, cols in enumerate([(0, 2), (1, 3), (2, 4)]):
        m = torch.full((2, 4, 4), OUT)
        m[0, :, cols[0] : cols[1]] = IN
        m[1, :, : cols[0]] = IN
        res, state = post.online(_frame(t, logits, m), state)
        ids.append(sorted({int(i) for i in np.unique(res.panoptic)} - {0}))
    assert ids[0] == [1] and ids[1] == ids[2] == [1, 2 + 1 + 1]


def test_offline_driver_uses_combined_clip_probabilities() -> None:
    post = VideoPostprocessor("vss")
    refiner_logits = torch.tensor([[[0.0, 5.0, 0.0]]])  # refiner says class 1
    tracker_logits = torch.tensor([[[9.0, 0.0, 0.0]]])  # tracker is more confident in class 0
    masks = torch.full((1, 2, 1, 3, 3), IN)
    clip = ClipOutput(refiner_logits, masks, torch.zeros(1, 2, 1, 4), [7, 8], online_class_logits=tracker_logits)
    frames = post.offline(clip)
    assert [f.frame_index for f in frames] == [7, 8]
    assert all((f.semantic == 0).all() for f in frames)  # elementwise max keeps the tracker's 0.9997
