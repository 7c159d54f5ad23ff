"""Position embeddings (2-D sine grid, sine of boxes/points) and the small MLP used by heads."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["MLP", "box_sine_embedding", "sine_position_embedding_2d"]


def sine_position_embedding_2d(
    height: int,
    width: int,
    num_feats: int,
    *,
    temperature: float = 10000.0,
    scale: float = 2 * math.pi,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Normalised 2-D sine embedding of a full H x W grid (DETR's `normalize=True` variant).

    Row index i (1-based) becomes i / (H + 1e-6) * scale, likewise for columns; each is expanded to
    `num_feats` channels as [sin(v / t_0), cos(v / t_0), sin(v / t_2), cos(v / t_2), ...] with
    t_k = temperature ** (2 * (k // 2) / num_feats). Computed in float32 and cast to `dtype`.

    Returns:
        [1, 2 * num_feats, H, W]: the y channels first, then the x channels.
    """
    eps = 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device) / (height + eps) * scale
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device) / (width + eps) * scale
    pos_y = _sine(y, num_feats, temperature)  # [H, F]
    pos_x = _sine(x, num_feats, temperature)  # [W, F]
    pos = torch.cat(
        [pos_y[:, None, :].expand(height, width, num_feats), pos_x[None, :, :].expand(height, width, num_feats)],
        dim=-1,
    )
    return pos.permute(2, 0, 1).unsqueeze(0).to(dtype)


def box_sine_embedding(boxes: Tensor, num_feats: int = 128, temperature: float = 10000.0) -> Tensor:
    """Sine embedding of normalised points (x, y) or boxes (cx, cy, w, h), as DAB-DETR / Mask DINO.

    Each coordinate v in [0, 1] is scaled by 2*pi and embedded like `sine_position_embedding_2d`.
    The output concatenates the coordinates in the order (y, x) for points, (y, x, w, h) for boxes.

    Args:
        boxes: [..., 2] or [..., 4].

    Returns:
        [..., 2 * num_feats] or [..., 4 * num_feats], in the dtype of `boxes`.
    """
    if boxes.shape[-1] not in (2, 4):
        raise ValueError(f"expected points [..., 2] or boxes [..., 4], got {tuple(boxes.shape)}")
    v = boxes.float() * (2 * math.pi)
    order = [1, 0] if boxes.shape[-1] == 2 else [1, 0, 2, 3]
    parts = [_sine(v[..., i], num_feats, temperature) for i in order]
    return torch.cat(parts, dim=-1).to(boxes.dtype)


def _sine(v: Tensor, num_feats: int, temperature: float) -> Tensor:
    """[...] -> [..., num_feats]: interleaved sin/cos at geometric frequencies (pairs share one)."""
    k = torch.arange(num_feats, dtype=torch.float32, device=v.device)
    dim_t = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / num_feats)
    angles = v[..., None] / dim_t
    return torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1).flatten(-2)


class MLP(nn.Module):
    """`num_layers` Linear layers with ReLU between them (none after the last).

    Shapes: [..., input_dim] -> [..., output_dim].
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"an MLP needs at least one layer, got {num_layers}")
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = torch.relu(x)
        return x
