"""DVIS++ contrastive losses: the official tracker loss on its golden, the refiner's memory loss, the segmenter's
re-id loss."""

from __future__ import annotations

import math

import torch
from parity import fixture, tensors

from vidseg.losses.contrastive import (
    ClassMemory,
    contrastive_item,
    mean_items,
    refiner_contrastive_items,
    segmenter_contrastive_items,
    tracker_contrastive_items,
)
from vidseg.losses.matcher import Matching


def tracker_loss(references: torch.Tensor, matchings: list[Matching]):
    """One clip's tracker loss as the tracker stage averages it (`loss_reid`, utils.py:51-93)."""
    return mean_items(tracker_contrastive_items(references, matchings), references)


def _per_frame(rows: torch.Tensor, t_len: int) -> list[Matching]:
    """Golden rows (frame, slot, gt) -> T matchings."""
    out = []
    for t in range(t_len):
        r = rows[rows[:, 0] == t]
        out.append(Matching(r[:, 1], r[:, 2]))
    return out


def test_tracker_contrastive_loss_matches_official_golden_for_both_matchings():
    data = tensors(fixture("small") / "contrastive_loss.safetensors")
    refs = data["input.references"]
    for case in ("a", "b"):
        losses = tracker_loss(refs, _per_frame(data[f"input.match_{case}"], refs.shape[0]))
        expected = data[f"loss_{case}"]
        torch.testing.assert_close(losses.reid, expected[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(losses.aux, expected[1], atol=1e-5, rtol=0)


def test_contrastive_item_is_log_one_plus_sum_over_pairs_and_cosine_square_error():
    a = torch.tensor([1.0, 0.0])
    pos = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    neg = torch.tensor([[0.0, 3.0], [-1.0, 0.0]])
    reid, aux = contrastive_item(a, pos, neg)
    # dot products: pos 2, 1; neg 0, -1 -> pairs neg - pos: -2, -3, -1, -2
    expected = math.log(1 + math.exp(-2) + math.exp(-3) + math.exp(-1) + math.exp(-2))
    assert math.isclose(reid.item(), expected, rel_tol=1e-6)
    # cosines: 1, 1/sqrt(2) (label 1); 0, -1 (label 0)
    cos_err = [0.0, (1 / math.sqrt(2) - 1) ** 2, 0.0, 1.0]
    assert math.isclose(aux.item(), sum(cos_err) / 4, rel_tol=1e-6)


def test_tracker_items_one_per_neighbour_frame_all_other_slots_negative_no_presence_filter():
    t_len, q = 4, 5
    refs = torch.randn(t_len, q, 3)
    m = Matching(torch.tensor([1, 3]), torch.tensor([0, 1]))
    items = tracker_contrastive_items(refs, [m] * t_len)
    # frames 1, 2 have two neighbours, frame 3 one: (2 + 2 + 1) terms per matched slot
    assert len(items) == 2 * 5
    first = contrastive_item(refs[1, 1], refs[0, 1:2], refs[0, [0, 2, 3, 4]])
    assert torch.equal(items[0][0], first[0])


def test_tracker_contrastive_loss_prefers_consistent_references_and_is_zero_with_graph_when_empty():
    consistent = (torch.eye(3)[None].repeat(3, 1, 1) * 4).requires_grad_()
    swapped = consistent.detach().clone()
    swapped[1] = swapped[1][[1, 0, 2]]  # slots 0 and 1 exchange references at frame 1
    m = [Matching(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))] * 3
    assert tracker_loss(consistent, m).reid < 0.1 < tracker_loss(swapped, m).reid
    none = tracker_loss(consistent, [Matching.empty()] * 3)
    assert none.reid.item() == 0.0 and none.reid.requires_grad and none.num_items == 0


def test_refiner_items_use_all_frames_as_positives_and_memory_of_same_class_as_negatives():
    torch.manual_seed(0)
    t_len, q = 3, 4
    emb = torch.randn(t_len, q, 6)
    m = Matching(torch.tensor([2]), torch.tensor([0]))
    classes = torch.tensor([5])
    memory = ClassMemory(max_len=4)
    items = refiner_contrastive_items(emb, m, classes, memory)
    assert len(items) == t_len  # empty memory: one item per frame
    expected = contrastive_item(emb[1, 2], emb[:, 2], emb[1, [0, 1, 3]])
    assert torch.equal(items[1][0], expected[0])
    # the clip was pushed: 3 embeddings of class 5, detached
    stored = memory.get(5)
    assert stored.shape == (3, 6) and torch.equal(stored, emb[:, 2])
    emb2 = torch.randn(t_len, q, 6)
    items2 = refiner_contrastive_items(emb2, m, classes, memory)
    assert len(items2) == 2 * t_len  # a memory item after each in-clip item
    with_memory = contrastive_item(emb2[0, 2], emb2[:, 2], stored)
    assert torch.equal(items2[1][0], with_memory[0])
    assert memory.get(5).shape == (4, 6)  # 6 pushed, cut to max_len
    assert memory.get(7) is None


def test_segmenter_items_pair_the_same_identity_across_frames():
    q = 4
    base = torch.eye(q) * 5
    # frame 1 holds the same objects in other queries: identity 10 in query 0 then 2, identity 11 in 1 then 3
    emb = torch.stack([base, base[[2, 3, 0, 1]]])
    m0 = Matching(torch.tensor([0, 1]), torch.tensor([0, 1]))
    m1 = Matching(torch.tensor([2, 3]), torch.tensor([0, 1]))
    ids = [torch.tensor([10, 11]), torch.tensor([10, 11])]
    items = segmenter_contrastive_items(emb, [m0, m1], ids)
    assert len(items) == 4  # 2 identities x 2 ordered frame pairs
    assert mean_items(items, emb).reid < 1e-3
    wrong = segmenter_contrastive_items(emb, [m0, Matching(torch.tensor([2, 3]), torch.tensor([1, 0]))], ids)
    assert mean_items(wrong, emb).reid > 1.0
    absent = segmenter_contrastive_items(emb, [m0, m1], [ids[0], torch.tensor([12, 13])])
    assert absent == []
