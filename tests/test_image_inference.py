"""Image post-processing: resizing, semantic, instance and panoptic inference (Mask2Former semantics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidseg.config import InferenceConfig
from vidseg.inference.image import (
    ImagePostprocessor,
    instance_inference,
    panoptic_inference,
    panoptic_result,
    resize_mask_logits,
    semantic_inference,
    semantic_scores,
    thing_mask,
)
from vidseg.models.outputs import LayerPrediction
from vidseg.structures import PanopticSegment, decode_rle


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _region(h, w, rows, cols, inside=10.0, outside=-10.0) -> torch.Tensor:
    m = torch.full((h, w), outside)
    m[rows, cols] = inside
    return m


# ------------------------------------------------------------------------------------------------------------
# Resizing


def test_resize_mask_logits_pads_crops_and_resizes():
    logits = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0))
    out = resize_mask_logits(logits, padded_size=(8, 16), image_size=(6, 10), output_size=(12, 20))
    up = F.interpolate(logits[None], size=(8, 16), mode="bilinear", align_corners=False)[..., :6, :10]
    want = F.interpolate(up, size=(12, 20), mode="bilinear", align_corners=False)[0]
    assert out.shape == (3, 12, 20)
    torch.testing.assert_close(out, want)
    # Defaults: padded = 4x the grid, image = padded, output = image.
    assert resize_mask_logits(logits).shape == (3, 8, 16)


def test_resize_mask_logits_excludes_padding():
    logits = torch.full((1, 2, 4), -10.0)
    logits[..., :2] = 10.0  # the image occupies the left half of the padded tensor
    out = resize_mask_logits(logits, padded_size=(8, 16), image_size=(8, 8), output_size=(4, 4))
    assert bool((out > 0).all())


# ------------------------------------------------------------------------------------------------------------
# Semantic


def test_semantic_argmax_and_scores():
    cls = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])  # K=2 + no-object
    msk = torch.tensor([[[4.0, -4.0]], [[-4.0, 4.0]]])  # [Q=2, 1, 2]
    assert semantic_inference(cls, msk).tolist() == [[0, 1]]
    scores = semantic_scores(cls, msk)
    hi, lo = math.exp(5) / (math.exp(5) + 2), 1 / (math.exp(5) + 2)  # p(own class), p(other class)
    want_class0_px0 = hi * _sig(4) + lo * _sig(-4)
    assert abs(float(scores[0, 0, 0]) - want_class0_px0) < 1e-6
    assert scores.shape == (2, 1, 2)
    # Sigmoid head: K logits, no column dropped.
    assert semantic_inference(cls[:, :2], msk, "sigmoid").tolist() == [[0, 1]]


# ------------------------------------------------------------------------------------------------------------
# Instance


def test_instance_topk_one_query_several_labels():
    cls = torch.tensor([[3.0, 2.9, -5.0, 0.0], [-5.0, -5.0, 2.0, 1.0]])  # Q=2, K=3 + no-object
    msk = torch.tensor([[[2.0, 2.0], [-1.0, -3.0]], [[-1.0, 0.5], [1.0, -2.0]]])
    pred = instance_inference(cls, msk, topk=3)
    probs = cls.softmax(-1)
    pairs = list(zip(pred.query_indices.tolist(), pred.class_ids.tolist()))
    assert sorted(pairs) == [(0, 0), (0, 1), (1, 2)]
    mean_in = {0: _sig(2.0), 1: (_sig(0.5) + _sig(1.0)) / 2}
    for (q, c), s in zip(pairs, pred.scores.tolist()):
        assert abs(s - float(probs[q, c]) * mean_in[q]) < 1e-5
    assert pred.scores.tolist() == sorted(pred.scores.tolist(), reverse=True)
    assert pred.masks.dtype == torch.bool
    assert pred.masks[pred.query_indices == 1][0].tolist() == [[False, True], [True, False]]
    # Thing-only: class 1 is stuff here, its pair disappears after the top-k.
    things = instance_inference(cls, msk, topk=3, thing_classes={0, 2}, things_only=True)
    assert sorted(zip(things.query_indices.tolist(), things.class_ids.tolist())) == [(0, 0), (1, 2)]


def test_instance_topk_capped_and_sigmoid():
    cls = torch.tensor([[2.0, -1.0], [0.0, 1.0]])  # sigmoid head, K=2
    msk = torch.randn(2, 3, 3)
    pred = instance_inference(cls, msk, "sigmoid", topk=100)
    assert len(pred.scores) == 4
    assert (pred.query_indices[0].item(), pred.class_ids[0].item()) in {(0, 0), (1, 1)}


# ------------------------------------------------------------------------------------------------------------
# Panoptic


def _panoptic_case():
    h, w = 4, 8
    everything = slice(None)
    cls = torch.tensor(
        [
            [10.0, 0.0, 0.0, 0.0],  # q0: thing 0, left half
            [0.0, 0.0, 10.0, 0.0],  # q1: stuff 2, top right corner
            [0.0, 0.0, 10.0, 0.0],  # q2: stuff 2, bottom right corner (merges with q1)
            [0.0, 5.0, 0.0, 0.0],  # q3: thing 1 (p=0.98), overlaps q0 and loses half its area
            [0.0, 0.0, 0.0, 10.0],  # q4: no-object
            [1.0, 0.5, 0.0, 0.8],  # q5: thing 0 with score 0.36 < 0.8
        ]
    )
    msk = torch.stack(
        [
            _region(h, w, everything, slice(0, 4)),
            _region(h, w, slice(0, 2), slice(6, 8)),
            _region(h, w, slice(2, 4), slice(6, 8)),
            _region(h, w, everything, slice(2, 6)),
            _region(h, w, everything, slice(4, 6)),
            _region(h, w, everything, slice(4, 6)),
        ]
    )
    return cls, msk


def test_panoptic_merge_overlap_stuff_and_ids():
    cls, msk = _panoptic_case()
    pred = panoptic_inference(cls, msk, thing_classes={0, 1}, overlap_threshold=0.8)
    want = np.zeros((4, 8), np.int32)
    want[:, :4] = 1
    want[:, 6:] = 2  # both stuff queries of class 2 share one id
    # Columns 4-5 are won by q3, which is dropped (won 8 px of its 16): they stay void.
    assert pred.panoptic.dtype == torch.int32
    np.testing.assert_array_equal(pred.panoptic.numpy(), want)
    assert pred.segments == [PanopticSegment(1, 0, True), PanopticSegment(2, 2, False)]
    assert pred.query_indices.tolist() == [0, 1]
    assert abs(float(pred.scores[0]) - float(cls[0].softmax(-1)[0])) < 1e-6

    # A lower overlap threshold keeps q3 with only the pixels it won.
    kept = panoptic_inference(cls, msk, thing_classes={0, 1}, overlap_threshold=0.5)
    want[:, 4:6] = 3
    np.testing.assert_array_equal(kept.panoptic.numpy(), want)
    assert kept.segments[-1] == PanopticSegment(3, 1, True)


def test_panoptic_result_and_empty():
    cls, msk = _panoptic_case()
    pred = panoptic_inference(cls, msk, thing_classes=[True, True, False], overlap_threshold=0.5)
    fr = panoptic_result(5, pred)
    assert fr.frame_index == 5 and (fr.height, fr.width) == (4, 8)
    assert fr.track_ids.tolist() == [1, 3] and fr.class_ids.tolist() == [0, 1]
    np.testing.assert_array_equal(decode_rle(fr.masks[0]), fr.panoptic == 1)
    assert [s.id for s in fr.segments] == [1, 2, 3]
    # Nothing above the threshold: all void, no segments.
    none = panoptic_inference(torch.zeros(3, 4), torch.randn(3, 4, 4))
    assert int(none.panoptic.abs().sum()) == 0 and none.segments == []
    assert len(panoptic_result(0, none).masks) == 0


def test_panoptic_sigmoid_head():
    cls = torch.tensor([[5.0, -5.0], [-5.0, -5.0]])  # K=2, second query below threshold
    msk = torch.stack([_region(2, 2, slice(None), slice(0, 1)), _region(2, 2, slice(None), slice(None))])
    pred = panoptic_inference(cls, msk, "sigmoid", thing_classes={0})
    assert pred.panoptic.tolist() == [[1, 0], [1, 0]]


def test_thing_mask_validation():
    assert thing_mask(None, 3).tolist() == [True, True, True]
    assert thing_mask({2}, 3).tolist() == [False, False, True]
    with pytest.raises(ValueError):
        thing_mask({3}, 3)
    with pytest.raises(ValueError):
        thing_mask([True], 3)


# ------------------------------------------------------------------------------------------------------------
# Batch post-processor -> FrameResult


def test_postprocessor_batch_to_frame_results():
    g = torch.Generator().manual_seed(0)
    output = LayerPrediction(torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, 6, generator=g))
    image_sizes = [(16, 24), (12, 20)]
    output_sizes = [(32, 48), (24, 40)]
    for task in ("semantic", "instance", "vps"):
        post = ImagePostprocessor.from_config(InferenceConfig(test_topk=7), thing_classes={0, 1}, task=task)
        results = post(output, (16, 24), image_sizes, output_sizes, frame_indices=[3, 4])
        assert [r.frame_index for r in results] == [3, 4]
        assert [(r.height, r.width) for r in results] == output_sizes
        if task == "semantic":
            assert results[0].semantic.shape == (32, 48) and results[0].semantic.dtype == np.int32
        elif task == "instance":
            assert len(results[1].masks) == 7 and results[1].track_ids.tolist() == list(range(1, 8))
            assert decode_rle(results[1].masks[0]).shape == (24, 40)
        else:
            assert results[0].panoptic.shape == (32, 48)
    with pytest.raises(ValueError):
        ImagePostprocessor(task="depth")
