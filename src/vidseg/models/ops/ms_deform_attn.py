"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

Each query looks at `num_points` sampling locations per head and per feature level, placed around its
reference point by learned offsets, and takes a softmax-weighted (over levels x points) sum of the
bilinearly interpolated values. Sampling uses `grid_sample`, so nothing needs compiling; the naive
per-point version below exists to test it.

Coordinates: sampling locations are normalised (x, y) in [0, 1] of each level's map, where 0 and 1 are
the outer edges of the border pixels (so pixel centres sit at (i + 0.5) / W). Samples outside the map
read zeros, like the original CUDA kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MultiScaleDeformableAttention",
    "ms_deform_attn",
    "ms_deform_attn_naive",
]


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Weighted sum of bilinear samples from every level, via one `grid_sample` per level.

    Args:
        value: [B, N_v, M, D] per-head values of all levels flattened level by level (row-major H x W).
        spatial_shapes: (H_l, W_l) of each of the L levels; sum of H_l * W_l must be N_v.
        sampling_locations: [B, N_q, M, L, P, 2] normalised (x, y) per head, level and point.
        attention_weights: [B, N_q, M, L, P], already normalised (softmax over L x P).

    Returns:
        [B, N_q, M * D] (heads concatenated), in the dtype of `value`.
    """
    out_dtype = value.dtype
    if value.dtype in (torch.float16, torch.bfloat16):
        # Sampling positions in half precision would be off by up to ~1/256 of the map (over half a pixel
        # at stride 8), so sample in float32, as autocast does for grid_sample.
        value, sampling_locations, attention_weights = (
            value.float(), sampling_locations.float(), attention_weights.float()
        )
    batch, _, heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    values = value.split([h * w for h, w in spatial_shapes], dim=1)
    # grid_sample wants [-1, 1] with align_corners=False, which matches the [0, 1] edge convention.
    grids = (2.0 * sampling_locations - 1.0).to(value.dtype)
    attention_weights = attention_weights.to(value.dtype)
    out: Tensor | None = None
    for level, (h, w) in enumerate(spatial_shapes):
        # [B, HW, M, D] -> [B*M, D, H, W]
        v = values[level].permute(0, 2, 3, 1).reshape(batch * heads, head_dim, h, w)
        # [B, N_q, M, P, 2] -> [B*M, 1, N_q*P, 2]: one row of samples, which grid_sample's CPU kernel
        # vectorises along (a [N_q, P] grid gives it rows of only P points); the samples are the same.
        g = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, 1, num_queries * num_points, 2)
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled.view(batch * heads, head_dim, num_queries, num_points)
        # [B, N_q, M, P] -> [B*M, 1, N_q, P]; accumulate level by level instead of stacking all L levels.
        a = attention_weights[:, :, :, level].transpose(1, 2).reshape(batch * heads, 1, num_queries, num_points)
        contrib = (sampled * a).sum(-1)  # [B*M, D, N_q]
        out = contrib if out is None else out + contrib
    assert out is not None
    return out.view(batch, heads * head_dim, num_queries).transpose(1, 2).to(out_dtype)


def ms_deform_attn_naive(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Reference for `ms_deform_attn`: explicit bilinear interpolation of every sampling point.

    Reads the four neighbouring pixels of each point by index, drops the ones outside the map and weights
    them by hand, without `grid_sample`. Same arguments and result as `ms_deform_attn`; slow, for tests.
    """
    batch, _, heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    values = value.split([h * w for h, w in spatial_shapes], dim=1)
    out = value.new_zeros(batch, num_queries, heads, head_dim)
    for level, (h, w) in enumerate(spatial_shapes):
        v = values[level].permute(0, 2, 1, 3)  # [B, M, HW, D]
        loc = sampling_locations[:, :, :, level].permute(0, 2, 1, 3, 4)  # [B, M, N_q, P, 2]
        att = attention_weights[:, :, :, level].permute(0, 2, 1, 3)  # [B, M, N_q, P]
        # Continuous pixel coordinates: pixel (i, j) has its centre at (j + 0.5, i + 0.5) / (W, H).
        x = loc[..., 0] * w - 0.5
        y = loc[..., 1] * h - 0.5
        x0 = torch.floor(x)
        y0 = torch.floor(y)
        acc = value.new_zeros(batch, heads, num_queries, num_points, head_dim)
        for dx in (0, 1):
            for dy in (0, 1):
                xi = x0 + dx
                yi = y0 + dy
                weight = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
                inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
                index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long()  # [B, M, N_q, P]
                gathered = torch.gather(
                    v, 2, index.reshape(batch, heads, -1, 1).expand(-1, -1, -1, head_dim)
                ).view(batch, heads, num_queries, num_points, head_dim)
                acc = acc + gathered * (weight * inside)[..., None]
        out = out + (acc * att[..., None]).sum(3).permute(0, 2, 1, 3)
    return out.reshape(batch, num_queries, heads * head_dim)


class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention of queries over a flattened multi-scale feature map.

    Parameter names follow the Deformable DETR convention (`sampling_offsets`, `attention_weights`,
    `value_proj`, `output_proj`) so published weights map one to one.
    """

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR init: zero offset weights; biases put point k of head h at distance k+1 along
        direction 2*pi*h/M (scaled to the unit square), so heads start looking in different directions."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        grid = directions.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        value: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from each query to points around its reference point on every level.

        Args:
            query: [B, N_q, C] query features (position embedding already added).
            reference_points: [B, N_q, L, 2] normalised (x, y) per level.
            value: [B, N_v, C] flattened multi-scale input, N_v = sum of H_l * W_l.
            spatial_shapes: (H_l, W_l) of each level, coarse or fine first as `value` is laid out.
            padding_mask: [B, N_v] bool, True at padded positions (their values are zeroed).

        Returns:
            [B, N_q, C].
        """
        batch, num_queries, _ = query.shape
        num_values = value.shape[1]
        if sum(h * w for h, w in spatial_shapes) != num_values:
            raise ValueError(f"spatial_shapes {list(spatial_shapes)} do not add up to {num_values} values")
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        v = self.value_proj(value)
        if padding_mask is not None:
            v = v.masked_fill(padding_mask[..., None], 0.0)
        v = v.view(batch, num_values, heads, self.embed_dim // heads)
        offsets = self.sampling_offsets(query).view(batch, num_queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, num_queries, heads, levels * points)
        weights = weights.softmax(-1).view(batch, num_queries, heads, levels, points)
        # Offsets are in pixels of each level; divide by (W, H) to get normalised coordinates.
        normaliser = torch.tensor([[w, h] for h, w in spatial_shapes], device=query.device)
        if offsets.dtype in (torch.float16, torch.bfloat16):
            offsets = offsets.float()  # positions stay float32 even for half-precision features
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        out = ms_deform_attn(v, spatial_shapes, locations, weights)
        return self.output_proj(out)
