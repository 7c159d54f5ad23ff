"""DVIS++ contrastive (re-identification) losses: one formula, three users.

The formula (`loss_reid`, DVIS_Plus/dvis_Plus/utils.py:51-93) scores one anchor a [C] against P positives and
N negatives with unnormalised dot products:

    reid(a) = logsumexp([n.a - p.a for every (p, n) pair] + [0]) = log(1 + sum_p sum_n exp(n.a - p.a))
    aux(a)  = mean over the P + N samples of (cos(sample, a) - label)^2,  label 1 for positives, 0 otherwise

and a loss averages both over its anchors ("items"; `mean_items`), pooled over the clips of a batch (upstream
trains one clip per process, so this is its per-process average). Its users:

* the tracker's references (`tracker_contrastive_items`, `DVIS_Plus_online.get_cl_loss_ref`,
  DVIS_Plus/dvis_Plus/meta_architecture.py:981-1065);
* the refiner's normed embeddings with a per-class memory of other clips (`refiner_contrastive_items`,
  `DVIS_Plus_offline.get_cl_loss_with_memory`, meta_architecture.py:1502-1579, memory utils.py:4-49);
* the segmenter's re-id embeddings across the frames of a clip (`segmenter_contrastive_items`, a CTVIS-style
  objective without CTVIS's tracklet memory bank, so the re-id head the tracker reads is trained).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from vidseg.losses.matcher import Matching


@dataclass
class ReidLosses:
    """Unweighted (loss_reid, loss_aux_reid), 0-dim tensors; `num_items` anchors were scored."""

    reid: Tensor
    aux: Tensor
    num_items: int = 0


def contrastive_item(anchor: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
    """(reid, aux) of one anchor, unreduced over nothing (0-dim each).

    Args:
        anchor: [C].
        positives: [P, C].
        negatives: [N, C].
    """
    pos = positives @ anchor  # [P]
    neg = negatives @ anchor  # [N]
    # log(1 + sum exp(x)) as a logsumexp with a 0 column: stable for the large unnormalised dot products.
    diffs = (neg[None, :] - pos[:, None]).flatten()
    reid = torch.logsumexp(torch.cat([diffs, diffs.new_zeros(1)]), dim=0)
    samples = torch.cat([positives, negatives])
    cos = F.normalize(samples, dim=1) @ F.normalize(anchor, dim=0)
    label = torch.cat([cos.new_ones(positives.shape[0]), cos.new_zeros(negatives.shape[0])])
    aux = ((cos - label) ** 2).mean()
    return reid, aux


def mean_items(items: list[tuple[Tensor, Tensor]], like: Tensor) -> ReidLosses:
    """Average of item losses; with no item, zeros that keep `like` in the graph (DDP: every parameter that
    produced `like` still gets a gradient), as utils.py:57-66 does."""
    if not items:
        zero = like.sum() * 0.0
        return ReidLosses(zero, zero, 0)
    reid = torch.stack([r for r, _ in items]).mean()
    aux = torch.stack([a for _, a in items]).mean()
    return ReidLosses(reid, aux, len(items))


def _others(q: int, slot: int) -> list[int]:
    return list(range(slot)) + list(range(slot + 1, q))


def tracker_contrastive_items(references: Tensor, matchings: Sequence[Matching]) -> list[tuple[Tensor, Tensor]]:
    """Items of one clip's tracker references (meta_architecture.py:981-1065).

    For every frame i >= 1 and every (slot s, gt) of frame i's matching: anchor references[i][s]; one item
    with positive references[i-1][s] and negatives the Q-1 other slots of frame i-1, and, when frame i+1
    exists, a separate item against frame i+1 (same slot s, other slots as negatives). No presence filter:
    a matched instance absent from frame i still anchors, as upstream's per-frame targets keep every clip
    instance.

    Args:
        references: [T, Q, C] the tracker's references per frame (slot order; `pred_references`).
        matchings: T per-frame matchings (query = slot). Upstream keys them by gt (`gt2ref`), so a gt
            matched twice in a frame would keep its last slot; a Hungarian matching never does that.
    """
    t_len, q = references.shape[:2]
    if len(matchings) != t_len:
        raise ValueError(f"tracker_contrastive_items: {t_len} frames of references, {len(matchings)} matchings")
    items = []
    for i in range(1, t_len):
        for s in matchings[i].query_indices.tolist():
            anchor = references[i, s]
            for k in (i - 1, i + 1):
                if k >= t_len:
                    continue
                items.append(contrastive_item(anchor, references[k, s : s + 1], references[k, _others(q, s)]))
    return items


@dataclass
class ClassMemory:
    """Per-class memory of detached refiner embeddings of earlier clips (`Outputs_Memory_PerClasses`,
    utils.py:4-49, `max_len=20` in DVIS_Plus_offline). Lives for the whole run on each process.

    `push` appends every frame's embedding of each matched slot under its instance's class; a class holding
    more than `max_len` is shuffled and cut to `max_len` (upstream's `push_refiner`, hence the `random`).
    """

    max_len: int = 20
    entries: dict[int, list[Tensor]] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def get(self, cls: int) -> Tensor | None:
        """[M, C] stored embeddings of class `cls`, or None."""
        stored = self.entries.get(cls)
        return torch.stack(stored) if stored else None

    def push(self, embeddings: Tensor, matching: Matching, class_ids: Tensor) -> None:
        """embeddings [T, Q, C] of one clip; class_ids [N] of its targets."""
        embeddings = embeddings.detach()
        for s, g in zip(matching.query_indices.tolist(), matching.target_indices.tolist()):
            self.entries.setdefault(int(class_ids[g]), []).extend(embeddings[:, s].unbind(0))
        for cls, stored in self.entries.items():
            if len(stored) > self.max_len:
                self.rng.shuffle(stored)
                self.entries[cls] = stored[-self.max_len :]


def refiner_contrastive_items(
    embeddings: Tensor, matching: Matching, class_ids: Tensor, memory: ClassMemory | None = None
) -> list[tuple[Tensor, Tensor]]:
    """Refiner contrastive items of one clip (`get_cl_loss_with_memory`, meta_architecture.py:1502-1579).

    For every frame i and matched (slot s, gt): anchor embeddings[i][s]; positives the slot's embeddings in
    all T frames (the anchor included), negatives the Q-1 other slots of frame i; and, when the memory holds
    embeddings of the gt's class (other clips: other instances), a second item with the same positives and
    those as negatives. The clip is pushed into the memory afterwards.

    Args:
        embeddings: [T, Q, C] decoder_norm(last refiner layer) (`pred_embds`).
        matching: the clip's matching (slot -> target index).
        class_ids: [N] class of each target.
        memory: the per-class memory, or None for no memory term.
    """
    t_len, q = embeddings.shape[:2]
    items = []
    for i in range(t_len):
        for s, g in zip(matching.query_indices.tolist(), matching.target_indices.tolist()):
            anchor = embeddings[i, s]
            positives = embeddings[:, s]
            items.append(contrastive_item(anchor, positives, embeddings[i, _others(q, s)]))
            stored = None if memory is None else memory.get(int(class_ids[g]))
            if stored is not None:
                items.append(contrastive_item(anchor, positives, stored.to(anchor)))
    if memory is not None:
        memory.push(embeddings, matching, class_ids)
    return items


def segmenter_contrastive_items(
    embeddings: Tensor, matchings: Sequence[Matching], instance_ids: Sequence[Tensor]
) -> list[tuple[Tensor, Tensor]]:
    """Re-id items of one clip's segmenter embeddings (CTVIS-style, without its memory bank).

    For every ordered pair of frames (i, k), i != k, and every instance matched in both: anchor the query
    that instance is matched to in frame i; positive its query in frame k; negatives the Q-1 other queries
    of frame k (background queries included, as CTVIS's negatives are).

    Args:
        embeddings: [T, Q, C] re-id embeddings of the T frames of one clip.
        matchings: T per-frame matchings (Hungarian on each frame's own predictions).
        instance_ids: T tensors [N_t] identity of each target of frame t (target index -> identity).
    """
    t_len, q = embeddings.shape[:2]
    slot_of = []
    for m, ids in zip(matchings, instance_ids):
        ids_list = ids.tolist()
        slot_of.append({ids_list[g]: s for s, g in zip(m.query_indices.tolist(), m.target_indices.tolist())})
    items = []
    for i in range(t_len):
        for k in range(t_len):
            if k == i:
                continue
            for identity, s in slot_of[i].items():
                p = slot_of[k].get(identity)
                if p is None:
                    continue
                negatives = embeddings[k, _others(q, p)]
                items.append(contrastive_item(embeddings[i, s], embeddings[k, p : p + 1], negatives))
    return items
