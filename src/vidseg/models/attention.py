"""Multi-head attention and the post-norm blocks shared by the decoder, aligner, tracker and refiner."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Batch-first multi-head attention with separate q/k/v projections, on `scaled_dot_product_attention`."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attend: Tensor | None = None) -> Tensor:
        """query: [B, Nq, C]; key, value: [B, Nk, C] -> [B, Nq, C].

        `attend` is [B, 1 or heads, Nq, Nk], either bool (True = may attend; every row needs a True) or
        an additive float bias (0 keeps a key, -inf blocks it).
        """
        b, nq, c = query.shape
        nk = key.shape[1]
        h = self.num_heads
        q = self.q_proj(query).view(b, nq, h, c // h).transpose(1, 2)
        k = self.k_proj(key).view(b, nk, h, c // h).transpose(1, 2)
        v = self.v_proj(value).view(b, nk, h, c // h).transpose(1, 2)
        if attend is not None and attend.is_floating_point():
            attend = attend.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, c))


class Attention(MultiHeadAttention):
    """`MultiHeadAttention` taking only an *additive* mask shared across heads, the form OMA supplies."""

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """query [N, Lq, C]; key, value [N, Lk, C]; attn_mask additive [N, Lq or 1, Lk] -> [N, Lq, C]."""
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            raise TypeError("attn_mask must be additive (float: 0 keeps a key, -inf blocks it), not bool")
        return super().forward(query, key, value, None if attn_mask is None else attn_mask[:, None])


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention: LayerNorm(x + MHA(x, x, x)), [N, L, C] -> [N, L, C]."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = Attention(dim, num_heads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        return self.norm(x + self.drop(self.attn(x, x, x, attn_mask)))


class FFNLayer(nn.Module):
    """Post-norm feed-forward block: LayerNorm(x + W2 relu(W1 x)), [..., C] -> [..., C]."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.drop(self.linear2(self.drop(torch.relu(self.linear1(x))))))
