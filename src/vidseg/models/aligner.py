"""The L2G-aligner: a light transformer decoder aligning global (tracked) queries to local (frame) queries.

L2G §3.2, Eq. 3: q_global,t = L2G-aligner(q_global,t-1, q_local,t, g_pos,t, l_pos,t). Global queries are the
decoder's queries (they keep their order: they carry the track identities); local queries are keys and
values only and are never updated. Each layer, in the order of the standard transformer decoder:

1. self-attention among the global queries (q = k = x + g_pos, v = x),
2. cross-attention global -> local (q = x + g_pos, k = local + l_pos, v = local),
3. FFN (hidden 1024 by default; the paper's Table 5 compares 512 / 1024 / 2048),

each followed by dropout, the residual and a LayerNorm (post-norm, as DETR-family decoders). With C = 256,
3 layers and FFN 1024 this is ~3.2 M parameters, the paper's figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from vidseg.models.attention import MultiHeadAttention

__all__ = ["AlignerLayer", "AlignerOutput", "L2GAligner"]


@dataclass
class AlignerOutput:
    """Aligned global queries.

    Attributes:
        queries: [B, Q, C] output of the last layer (the decoder's initial query content).
        intermediate: [B, Q, C] output of every layer, in order (the last one is `queries`).
    """

    queries: Tensor
    intermediate: list[Tensor]


class AlignerLayer(nn.Module):
    """Self-attention (global) -> cross-attention (global -> local) -> FFN, post-norm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout)
        self.self_norm = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, num_heads, dropout)
        self.cross_norm = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, global_pos: Tensor, local: Tensor, local_pos: Tensor, attend: Tensor | None
    ) -> Tensor:
        """x, global_pos: [B, Q, C]; local, local_pos: [B, K, C]; attend: bool [B, 1, 1, K] or None."""
        q = x + global_pos
        x = self.self_norm(x + self.dropout(self.self_attn(q, q, x)))
        x = self.cross_norm(x + self.dropout(self.cross_attn(x + global_pos, local + local_pos, local, attend)))
        return self.ffn_norm(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class L2GAligner(nn.Module):
    """`num_layers` aligner layers; shapes [B, Q, C] (global) and [B, K, C] (local)."""

    def __init__(
        self, dim: int = 256, *, num_layers: int = 3, num_heads: int = 8, ffn_dim: int = 1024, dropout: float = 0.0
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the aligner needs at least one layer, got {num_layers}")
        self.layers = nn.ModuleList(AlignerLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier for the attention and FFN matrices, as the Mask2Former decoder."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        global_queries: Tensor,
        local_queries: Tensor,
        global_pos: Tensor,
        local_pos: Tensor,
        local_valid: Tensor | None = None,
    ) -> AlignerOutput:
        """Align global queries to the current frame.

        Args:
            global_queries: [B, Q, C] previous frame's decoder queries (or learned ones on the first frame).
            local_queries: [B, K, C] selected encoder tokens of the current frame (keys/values only).
            global_pos: [B or 1, Q, C] g_pos (L2G Eq. 2, or learned).
            local_pos: [B or 1, K, C] l_pos (static learnable by default).
            local_valid: bool [B, K], False = that local query is ignored; a sample with none valid
                attends to all (never a NaN row).
        """
        attend = None
        if local_valid is not None:
            keep = local_valid | ~local_valid.any(-1, keepdim=True)
            attend = keep[:, None, None, :]
        x = global_queries
        intermediate = []
        for layer in self.layers:
            x = layer(x, global_pos, local_queries, local_pos, attend)
            intermediate.append(x)
        return AlignerOutput(queries=x, intermediate=intermediate)
