"""Mask2Former masked-attention transformer decoder with its prediction heads.

Queries attend to one pixel-decoder scale per layer, round-robin 1/32 -> 1/16 -> 1/8. Each layer is
masked cross-attention -> self-attention -> FFN (post-norm by default). The cross-attention of a query is
restricted to where its previous mask prediction, resized to that scale, has sigmoid >= threshold; a query
whose mask would block every key attends everywhere instead. Predictions (class logits + mask logits)
are made from the initial queries and after every layer, with shared heads.

Hooks for video models:
* `query_content` / `query_pos` replace the learned initial query features / position embeddings.
* `pos_callback(layer_index, mask_logits)` returns the position embedding for the next layer from the
  latest mask prediction (Local2Global uses this for box-based embeddings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidseg.models.attention import MultiHeadAttention
from vidseg.models.outputs import LayerPrediction, mask_logits_of
from vidseg.models.position import MLP, sine_position_embedding_2d

__all__ = ["DecoderOutput", "MaskedAttentionDecoder", "MaskedDecoderLayer", "MultiHeadAttention", "PosCallback"]

PosCallback = Callable[[int, Tensor], Tensor]
"""(layer_index, mask_logits [B, Q, H/4, W/4]) -> query position embedding [B, Q, C] for that layer."""


@dataclass
class DecoderOutput:
    """Decoder result.

    Attributes:
        predictions: num_layers + 1 predictions (initial queries first, last layer last) in training or
            with a `pos_callback`; in eval mode only the last layer's (nothing reads the others).
        queries: [B, Q, C] final queries after the output LayerNorm.
        raw_queries: [B, Q, C] final queries before it.
    """

    predictions: list[LayerPrediction]
    queries: Tensor
    raw_queries: Tensor


class MaskedDecoderLayer(nn.Module):
    """Masked cross-attention -> self-attention -> FFN, each with residual + LayerNorm (post or pre)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0, pre_norm: bool = False):
        super().__init__()
        self.pre_norm = pre_norm
        self.cross_attn = MultiHeadAttention(dim, num_heads, dropout)
        self.cross_norm = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout)
        self.self_norm = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor, attend: Tensor) -> Tensor:
        """x, query_pos: [B, Q, C]; memory: [B, N, C]; memory_pos: [1 or B, N, C]; attend: [B, 1, Q, N]."""
        if self.pre_norm:
            y = self.cross_norm(x)
            x = x + self.dropout(self.cross_attn(y + query_pos, memory + memory_pos, memory, attend))
            y = self.self_norm(x)
            x = x + self.dropout(self.self_attn(y + query_pos, y + query_pos, y))
            y = self.ffn_norm(x)
            return x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(y)))))
        x = self.cross_norm(x + self.dropout(self.cross_attn(x + query_pos, memory + memory_pos, memory, attend)))
        q = x + query_pos
        x = self.self_norm(x + self.dropout(self.self_attn(q, q, x)))
        return self.ffn_norm(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class MaskedAttentionDecoder(nn.Module):
    """Learned queries refined by `num_layers` masked-attention layers; heads after each layer."""

    def __init__(
        self,
        in_channels: int,
        mask_dim: int,
        num_class_logits: int,
        *,
        hidden_dim: int = 256,
        num_queries: int = 100,
        num_layers: int = 9,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.0,
        pre_norm: bool = False,
        mask_threshold: float = 0.5,
        num_levels: int = 3,
    ):
        """
        Args:
            in_channels: channels of the pixel-decoder maps (a 1x1 conv projects them when != hidden_dim).
            mask_dim: channels of the mask features (output width of the mask-embedding MLP).
            num_class_logits: K + 1 for a softmax head with no-object, K for a sigmoid head.
        """
        super().__init__()
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.mask_threshold = mask_threshold
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        self.input_proj = nn.ModuleList(
            nn.Conv2d(in_channels, hidden_dim, kernel_size=1) if in_channels != hidden_dim else nn.Identity()
            for _ in range(num_levels)
        )
        self.layers = nn.ModuleList(
            MaskedDecoderLayer(hidden_dim, num_heads, ffn_dim, dropout, pre_norm) for _ in range(num_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.class_head = nn.Linear(hidden_dim, num_class_logits)
        self.mask_head = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier for the attention/FFN matrices and input projections (as upstream)."""
        for layer in self.layers:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for proj in self.input_proj:
            if isinstance(proj, nn.Conv2d):
                nn.init.kaiming_uniform_(proj.weight, a=1)
                if proj.bias is not None:
                    nn.init.zeros_(proj.bias)

    def predict(self, queries: Tensor, mask_features: Tensor) -> tuple[Tensor, LayerPrediction]:
        """Heads on raw queries [B, Q, C] and mask features [B, D, H, W] -> (normed queries, prediction)."""
        normed = self.decoder_norm(queries)
        mask_logits = self.mask_logits(self.mask_head(normed), mask_features)
        return normed, LayerPrediction(class_logits=self.class_head(normed), mask_logits=mask_logits)

    def mask_logits(self, mask_embed: Tensor, mask_features: Tensor) -> Tensor:
        """Mask embeddings [B, Q, D] x features [B, D, h, w] -> mask logits [B, Q, h, w]."""
        return mask_logits_of(mask_embed, mask_features)

    def memory(self, multi_scale_features: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[tuple[int, int]]]:
        """Per level: tokens [B, h*w, C] (+ level embedding), their sine position [1, h*w, C] and (h, w).

        Args:
            multi_scale_features: num_levels maps [B, C_in, h_l, w_l], coarsest first.
        """
        memories, memory_pos, sizes = [], [], []
        for level in range(self.num_levels):
            feat = multi_scale_features[level]
            _, _, h, w = feat.shape
            sizes.append((h, w))
            pe = sine_position_embedding_2d(h, w, self.hidden_dim // 2, device=feat.device, dtype=feat.dtype)
            memory_pos.append(pe.flatten(2).transpose(1, 2))
            x = self.input_proj[level](feat).flatten(2).transpose(1, 2)
            memories.append(x + self.level_embed.weight[level].to(x.dtype))
        return memories, memory_pos, sizes

    def attention_mask(self, mask_logits: Tensor, size: tuple[int, int]) -> Tensor:
        """Where each query may attend at a level: mask_logits [B, Q, H/4, W/4] -> bool [B, 1, Q, h*w]
        (a clip's [B, Q, T, H/4, W/4] -> [B, 1, Q, T*h*w], every frame resized alone, tokens in (t, y, x)).

        The prediction is resized (bilinear) to the level and thresholded on its sigmoid; rows that would
        block every key are opened fully. No gradient flows through the mask.
        """
        b, q = mask_logits.shape[:2]
        with torch.no_grad():
            frames = mask_logits.flatten(1, -3)  # [B, Q (x T), H/4, W/4]
            resized = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        return self._attend(resized.reshape(b, q, -1))

    def forward(
        self,
        multi_scale_features: list[Tensor],
        mask_features: Tensor,
        *,
        query_content: Tensor | None = None,
        query_pos: Tensor | None = None,
        pos_callback: PosCallback | None = None,
    ) -> DecoderOutput:
        """Run the decoder.

        Args:
            multi_scale_features: num_levels maps [B, C_in, H_l, W_l], coarsest first (strides 32, 16, 8).
            mask_features: [B, D, H/4, W/4].
            query_content: [B, Q, C] initial query features; default the learned ones (Q = num_queries).
            query_pos: [B, Q, C] query position embeddings; default the learned ones.
            pos_callback: if given, called before layer i as pos_callback(i, latest mask logits) and its
                result replaces the query position embedding for that layer.
        """
        batch = mask_features.shape[0]
        memories, memory_pos, sizes = self.memory(multi_scale_features)
        if query_content is None:
            query_content = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)
        if query_pos is None:
            query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)
        if query_pos.shape[:2] != query_content.shape[:2]:
            raise ValueError(
                f"query_pos {tuple(query_pos.shape)} does not match query_content {tuple(query_content.shape)}"
            )

        if not self.training and pos_callback is None and self.layers:
            return self._forward_final_only(x=query_content, query_pos=query_pos, memories=memories,
                                            memory_pos=memory_pos, sizes=sizes, mask_features=mask_features)
        x = query_content
        normed, prediction = self.predict(x, mask_features)
        predictions = [prediction]
        attend = self.attention_mask(prediction.mask_logits, sizes[0])
        for i, layer in enumerate(self.layers):
            level = i % self.num_levels
            if pos_callback is not None:
                query_pos = pos_callback(i, predictions[-1].mask_logits)
            x = layer(x, query_pos, memories[level], memory_pos[level], attend)
            normed, prediction = self.predict(x, mask_features)
            predictions.append(prediction)
            if i + 1 < len(self.layers):
                attend = self.attention_mask(prediction.mask_logits, sizes[(i + 1) % self.num_levels])
        return DecoderOutput(predictions=predictions, queries=normed, raw_queries=x)

    def _forward_final_only(
        self,
        *,
        x: Tensor,
        query_pos: Tensor,
        memories: list[Tensor],
        memory_pos: list[Tensor],
        sizes: list[tuple[int, int]],
        mask_features: Tensor,
    ) -> DecoderOutput:
        """Inference: only the last prediction is returned (no deep supervision to feed).

        An intermediate mask is then only needed at the next layer's attention scale. Bilinear resizing is
        linear, so `embed @ resize(mask_features)` is the resized mask: the features are resized once per
        level instead of computing Q full-size masks per layer and resizing those (same values up to float
        rounding; ~10 % of a Swin-T segmenter's time at 384x640).
        """
        with torch.no_grad():
            frames = mask_features.flatten(0, -4)  # [B (x T), D, H/4, W/4]
            level_features = [
                F.interpolate(frames, size=size, mode="bilinear", align_corners=False).view(
                    *mask_features.shape[:-2], *size)
                for size in sizes
            ]
        attend = self._level_attend(x, level_features[0])
        for i, layer in enumerate(self.layers):
            level = i % self.num_levels
            x = layer(x, query_pos, memories[level], memory_pos[level], attend)
            if i + 1 < len(self.layers):
                attend = self._level_attend(x, level_features[(i + 1) % self.num_levels])
        normed, prediction = self.predict(x, mask_features)
        return DecoderOutput(predictions=[prediction], queries=normed, raw_queries=x)

    def _level_attend(self, queries: Tensor, level_features: Tensor) -> Tensor:
        """Attention mask of raw queries [B, Q, C] on mask features resized to a level ([B, D, h, w], or a
        clip's [B, T, D, h, w] with tokens in (t, y, x) order)."""
        with torch.no_grad():
            logits = self.mask_logits(self.mask_head(self.decoder_norm(queries)), level_features)
            return self._attend(logits.flatten(2))

    def _attend(self, logits: Tensor) -> Tensor:
        """Mask logits [B, Q, N] at a level -> bool [B, 1, Q, N]: sigmoid >= threshold; rows that would block
        every key are opened fully."""
        attend = logits.sigmoid() >= self.mask_threshold
        attend |= ~attend.any(-1, keepdim=True)
        return attend.unsqueeze(1)
