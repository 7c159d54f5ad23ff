"""Mask2Former pixel decoder: deformable-attention encoder over res3..res5 plus an FPN step to res2.

Math follows the official `MSDeformAttnPixelDecoder` (and the `transformers` port of it) exactly, so
converted weights reproduce its outputs:

1. res5, res4, res3 -> 1x1 conv + GroupNorm(32) to `hidden_dim`, flattened coarse to fine.
2. `num_layers` post-norm encoder layers: deformable self-attention (queries = tokens + sine PE + level
   embedding, one reference point per token at its pixel centre) -> FFN.
3. FPN: res2 -> 1x1 conv + GN (lateral), plus the bilinearly upsampled stride-8 encoder map, -> 3x3 conv +
   GN + ReLU.
4. Mask features = 1x1 conv of the stride-4 map.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidseg.models.ops.ms_deform_attn import MultiScaleDeformableAttention
from vidseg.models.position import sine_position_embedding_2d

__all__ = ["DeformableEncoderLayer", "PixelDecoder", "PixelDecoderOutput"]

_ENCODER_FEATURES = ("res5", "res4", "res3")  # coarse to fine, the order of levels everywhere below


@dataclass
class PixelDecoderOutput:
    """What the pixel decoder hands on.

    Attributes:
        mask_features: [B, mask_dim, H/4, W/4] per-pixel embeddings the masks are read from.
        multi_scale_features: [B, C, H_l, W_l] encoder maps at strides 32, 16, 8 (coarsest first).
        memory: [B, N, C] the same encoder output flattened level by level, N = sum of H_l * W_l
            (tokens for two-stage query selection).
        spatial_shapes: (H_l, W_l) of the three levels, coarsest first.
    """

    mask_features: Tensor
    multi_scale_features: list[Tensor]
    memory: Tensor
    spatial_shapes: list[tuple[int, int]]


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention -> add & norm -> FFN -> add & norm."""

    def __init__(
        self, dim: int, num_heads: int, num_levels: int, num_points: int, ffn_dim: int, dropout: float = 0.0
    ):
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dim, num_heads, num_levels, num_points)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        spatial_shapes: list[tuple[int, int]],
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """x: [B, N, C]; pos: [B or 1, N, C]; reference_points: [B or 1, N, L, 2] -> [B, N, C]."""
        ref = reference_points.expand(x.shape[0], -1, -1, -1)
        attended = self.self_attn(x + pos, ref, x, spatial_shapes, padding_mask)
        x = self.norm1(x + self.dropout(attended))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout(ffn))


class PixelDecoder(nn.Module):
    """Multi-scale deformable encoder + FPN -> mask features at stride 4 and three scales for the decoder."""

    def __init__(
        self,
        in_channels: Mapping[str, int],
        in_strides: Mapping[str, int],
        *,
        hidden_dim: int = 256,
        mask_dim: int = 256,
        num_layers: int = 6,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.0,
        common_stride: int = 4,
    ):
        """
        Args:
            in_channels: backbone channels per feature name; needs res3..res5 and the finer maps down to
                `common_stride` (res2 for stride 4).
            in_strides: backbone stride per feature name.
            common_stride: stride of the mask features; FPN levels are added from stride 8 down to it.
        """
        super().__init__()
        missing = [k for k in _ENCODER_FEATURES if k not in in_channels]
        if missing:
            raise ValueError(f"pixel decoder needs backbone features {missing}, got {sorted(in_channels)}")
        if hidden_dim % 32:
            raise ValueError(f"hidden_dim {hidden_dim} must be a multiple of 32 (GroupNorm with 32 groups)")
        self.hidden_dim = hidden_dim
        self.mask_dim = mask_dim
        self.num_levels = len(_ENCODER_FEATURES)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[name], hidden_dim, kernel_size=1), nn.GroupNorm(32, hidden_dim))
            for name in _ENCODER_FEATURES
        )
        self.level_embed = nn.Parameter(torch.empty(self.num_levels, hidden_dim))
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(hidden_dim, num_heads, self.num_levels, num_points, ffn_dim, dropout)
            for _ in range(num_layers)
        )
        # FPN over the backbone maps finer than the finest encoder level, coarse to fine.
        finest = min(in_strides[name] for name in _ENCODER_FEATURES)
        num_fpn = int(math.log2(finest) - math.log2(common_stride))
        fpn_names = sorted((n for n in in_channels if in_strides[n] < finest), key=lambda n: -in_strides[n])
        if len(fpn_names) < num_fpn:
            raise ValueError(f"pixel decoder needs {num_fpn} backbone maps finer than stride {finest}")
        self.fpn_features = tuple(fpn_names[:num_fpn])
        self.lateral_convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels[name], hidden_dim, kernel_size=1, bias=False), nn.GroupNorm(32, hidden_dim)
            )
            for name in self.fpn_features
        )
        self.output_convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(hidden_dim, hidden_dim, kernel_size=3, padding=1, bias=False),
                nn.GroupNorm(32, hidden_dim),
                nn.ReLU(),
            )
            for _ in self.fpn_features
        )
        self.mask_proj = nn.Conv2d(hidden_dim, mask_dim, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier for the projections and FPN convs (as upstream), N(0, 1) level embeddings."""
        for seq in [*self.input_proj, *self.lateral_convs, *self.output_convs]:
            conv = seq[0]
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.kaiming_uniform_(self.mask_proj.weight, a=1)
        if self.mask_proj.bias is not None:
            nn.init.zeros_(self.mask_proj.bias)
        nn.init.normal_(self.level_embed)

    def forward(self, features: Mapping[str, Tensor]) -> PixelDecoderOutput:
        """features: backbone maps {"res2": [B, C2, H/4, W/4], ..., "res5": [B, C5, H/32, W/32]}."""
        tokens, pos_embeds, shapes = [], [], []
        for level, name in enumerate(_ENCODER_FEATURES):
            x = self.input_proj[level](features[name])
            _, _, h, w = x.shape
            shapes.append((h, w))
            tokens.append(x.flatten(2).transpose(1, 2))
            pe = sine_position_embedding_2d(h, w, self.hidden_dim // 2, device=x.device, dtype=x.dtype)
            pos_embeds.append(pe.flatten(2).transpose(1, 2) + self.level_embed[level].to(x.dtype))
        src = torch.cat(tokens, 1)
        pos = torch.cat(pos_embeds, 1)
        reference_points = _reference_points(shapes, src.device)
        for layer in self.layers:
            src = layer(src, pos, reference_points, shapes)

        batch = src.shape[0]
        maps = [
            t.transpose(1, 2).reshape(batch, self.hidden_dim, h, w)
            for t, (h, w) in zip(src.split([h * w for h, w in shapes], 1), shapes)
        ]
        out = maps[-1]
        for name, lateral, output in zip(self.fpn_features, self.lateral_convs, self.output_convs):
            lat = lateral(features[name])
            out = output(lat + F.interpolate(out, size=lat.shape[-2:], mode="bilinear", align_corners=False))
        return PixelDecoderOutput(
            mask_features=self.mask_proj(out), multi_scale_features=maps, memory=src, spatial_shapes=shapes
        )


def _reference_points(shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
    """Pixel centres of every token, normalised per level; the same point is used on every level.

    Returns:
        [1, N, L, 2] (x, y), float32 whatever the feature dtype (half precision would misplace samples).
    """
    points = []
    for h, w in shapes:
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
        points.append(grid)
    return torch.cat(points, 0)[None, :, None, :].expand(1, -1, len(shapes), 2)
