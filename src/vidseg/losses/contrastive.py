"""DVIS++ contrastive loss on the tracker's references (spec §3.5, `get_cl_loss_ref`).

For frame i >= 1 and every slot s matched to a ground-truth instance present in frame i, the anchor is the
reference the tracker read frame i with, a = R_i[s]. The positives are the same slot's references in the
neighbouring frames (R_{i-1}[s], and R_{i+1}[s] when i+1 exists); for each positive frame the negatives are
the references of the other matched slots in that frame. With unnormalised dot products:

    loss(a) = log(1 + sum_pos sum_neg exp(neg . a - pos . a))

averaged over anchors. It pulls a slot's references together over time and pushes different objects apart,
which is what lets the tracker re-find an object from its reference when the initial association is wrong.
"""

from __future__ import annotations

import torch
from torch import Tensor


def reference_contrastive_loss(references: Tensor, slots: Tensor, present: Tensor) -> Tensor:
    """Contrastive loss of one clip.

    Args:
        references: [T, Q, C] the tracker's references per frame (slot order).
        slots: [M] int64 matched slots (one per ground-truth instance).
        present: [M, T] bool, whether each matched instance is present in each frame.

    Returns:
        0-dim loss (0 with a graph when there is no anchor with a positive and a negative).
    """
    t_len = references.shape[0]
    terms = []
    for i in range(1, t_len):
        for j, s in enumerate(slots.tolist()):
            if not present[j, i]:
                continue
            anchor = references[i, s]
            diffs = []
            for k in (i - 1, i + 1):
                if k >= t_len or not present[j, k]:
                    continue
                others = [int(o) for n, o in enumerate(slots.tolist()) if n != j and present[n, k]]
                if not others:
                    continue
                pos = references[k, s] @ anchor
                neg = references[k, others] @ anchor  # [n_neg]
                diffs.append(neg - pos)
            if diffs:
                # log(1 + sum exp(x)) = logsumexp([0, x...]), stable for large dot products.
                x = torch.cat(diffs)
                terms.append(torch.logsumexp(torch.cat([x.new_zeros(1), x]), dim=0))
    if not terms:
        return references.sum() * 0.0
    return torch.stack(terms).mean()
