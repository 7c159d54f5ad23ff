"""Two-stage query selection: the top-K pixel-decoder tokens become Local2Global's local queries.

Adapted from Mask DINO's two-stage selection (spec §5.2) to L2G's local queries (L2G §3.2, spec §6):

1. Every flattened multi-scale encoder token is projected, memory' = LayerNorm(Linear(memory)).
2. A class head (Linear(C -> K), sigmoid / focal, no no-object logit) scores every token.
3. The K_loc tokens with the highest max-over-classes logit are gathered, sorted by that score.
4. Local query content = the gathered memory' rows, *detached* by default, as Mask DINO does: the
   selection is a proposal step, and gradients through the content would let the aligner/decoder losses
   reshape the encoder through a hard top-K. The undetached rows (`tokens`) and their class logits are
   returned so the caller supervises them (Mask DINO's "interm" outputs: class + mask via the decoder's
   heads), which is what trains the class head and the projection.
5. Local position embedding = a static learnable `nn.Embedding(K_loc, C)` indexed by rank (L2G: "static
   learnable position embeddings which do not change with each frame").

Not ported: Mask DINO's per-token anchor boxes and its zeroing of border/padding tokens; instead, tokens
can be excluded with `valid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["QuerySelection", "TwoStageQuerySelector"]


@dataclass
class QuerySelection:
    """Selected local queries for a batch.

    Attributes:
        content: [B, K, C] local query content (memory' rows; detached unless configured otherwise).
        pos: [B, K, C] static learnable position embedding (row k = rank k).
        tokens: [B, K, C] the same rows with gradient, for the supervised intermediate predictions.
        indices: [B, K] long, positions of the selected tokens in the flattened memory [0, N).
        class_logits: [B, K, num_classes] class logits of the selected tokens (with gradient).
        scores: [B, K] max class logit of each selected token, descending.
    """

    content: Tensor
    pos: Tensor
    tokens: Tensor
    indices: Tensor
    class_logits: Tensor
    scores: Tensor


class TwoStageQuerySelector(nn.Module):
    """Class head over encoder tokens + top-K gather + static position embedding."""

    def __init__(
        self,
        hidden_dim: int,
        num_classes: int,
        num_queries: int,
        *,
        detach_content: bool = True,
        class_head: nn.Module | None = None,
        prior_prob: float = 0.01,
    ):
        """
        Args:
            hidden_dim: C, width of the memory tokens.
            num_classes: K real classes (sigmoid head).
            num_queries: K_loc, the number of local queries.
            detach_content: detach the selected content (Mask DINO's behaviour).
            class_head: a module C -> num_classes to share (e.g. the decoder's); default a new Linear whose
                bias starts at the focal-loss prior -log((1 - p) / p).
        """
        super().__init__()
        self.num_queries = num_queries
        self.detach_content = detach_content
        self.proj = nn.Linear(hidden_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)
        if class_head is None:
            class_head = nn.Linear(hidden_dim, num_classes)
            nn.init.constant_(class_head.bias, -math.log((1 - prior_prob) / prior_prob))
        self.class_head = class_head
        self.query_pos = nn.Embedding(num_queries, hidden_dim)

    def forward(self, memory: Tensor, valid: Tensor | None = None) -> QuerySelection:
        """memory: [B, N, C] flattened multi-scale tokens; valid: bool [B, N] (False = never selected)."""
        b, n, c = memory.shape
        if n < self.num_queries:
            raise ValueError(f"cannot select {self.num_queries} queries from {n} tokens")
        projected = self.norm(self.proj(memory))
        logits = self.class_head(projected)  # [B, N, K]
        scores = logits.detach().amax(-1)
        if valid is not None:
            scores = scores.masked_fill(~valid, float("-inf"))
        top_scores, indices = scores.topk(self.num_queries, dim=1)  # sorted, descending
        tokens = projected.gather(1, indices[..., None].expand(b, self.num_queries, c))
        class_logits = logits.gather(1, indices[..., None].expand(b, self.num_queries, logits.shape[-1]))
        content = tokens.detach() if self.detach_content else tokens
        pos = self.query_pos.weight.unsqueeze(0).expand(b, -1, -1)
        return QuerySelection(
            content=content, pos=pos, tokens=tokens, indices=indices, class_logits=class_logits, scores=top_scores
        )
