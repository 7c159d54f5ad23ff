"""MinVIS association: Hungarian matching of per-frame queries on cosine similarity.

Each frame's queries are matched to the *previous, already reordered* frame (a chain, no memory bank, no
threshold; `vidseg.models.minvis.MinVIS` steps it), so slot i of every frame holds the query that continues
slot i of frame 0. The slot count stays fixed at Q: an object "appears" or "disappears" only through its
class and mask.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def cosine_cost(previous: Tensor, current: Tensor) -> Tensor:
    """Matching cost 1 - cos between L2-normalised embeddings.

    Args:
        previous: [B, Q, C] embeddings of the previous frame, in slot (track) order.
        current: [B, Q', C] embeddings of the current frame, in segmenter order.

    Returns:
        [B, Q, Q'] cost; row = previous slot, column = current query.
    """
    prev = F.normalize(previous.float(), dim=-1)
    cur = F.normalize(current.float(), dim=-1)
    return 1.0 - torch.einsum("bqc,bkc->bqk", prev, cur)


def match_queries(previous: Tensor, current: Tensor) -> Tensor:
    """Hungarian assignment of the current frame's queries to the previous frame's slots.

    Args:
        previous: [B, Q, C] previous frame's embeddings, already in slot order.
        current: [B, Q, C] current frame's embeddings, in segmenter order.

    Returns:
        indices: [B, Q] int64 on `current.device`; slot i of the current frame is `current[b, indices[b, i]]`,
        i.e. `reorder(current, indices)` puts the current frame in slot order.
    """
    if previous.shape != current.shape:
        raise ValueError(f"match_queries: shapes differ, {tuple(previous.shape)} vs {tuple(current.shape)}")
    # The assignment is a discrete choice: no gradient flows through it.
    cost = cosine_cost(previous.detach(), current.detach()).cpu().numpy()
    out = np.empty(cost.shape[:2], dtype=np.int64)
    for b in range(cost.shape[0]):
        rows, cols = linear_sum_assignment(cost[b])
        out[b, rows] = cols
    return torch.from_numpy(out).to(current.device)


def reorder(x: Tensor, indices: Tensor) -> Tensor:
    """Gather along the query axis: x [B, Q, ...], indices [B, Q'] -> [B, Q', ...].

    out[b, i] = x[b, indices[b, i]].
    """
    idx = indices.to(x.device).reshape(*indices.shape, *([1] * (x.dim() - 2)))
    return torch.gather(x, 1, idx.expand(*indices.shape, *x.shape[2:]))
