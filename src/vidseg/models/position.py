"""Position embeddings (2-D sine grid, 3-D sine grid of a clip, sine of boxes/points) and the small MLP used
by heads."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["MLP", "box_sine_embedding", "sine_position_embedding_2d", "sine_position_embedding_3d"]


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


def sine_position_embedding_3d(
    num_frames: int,
    height: int,
    width: int,
    num_feats: int,
    *,
    temperature: float = 10000.0,
    scale: float = 2 * math.pi,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Normalised 3-D sine embedding of a clip of T frames of H x W (Video Mask2Former's
    `PositionEmbeddingSine3D(num_feats, normalize=True)`, fixture README section 9.5 item 2).

    pos[t, :, i, j] = `sine_position_embedding_2d`[0, :, i, j] + sine_{2F}(z_t): the time term has
    2 * num_feats features with their own frequencies t_k = temperature ** (2 * (k // 2) / (2 * num_feats)),
    is *added* to every channel, and is normalised by the clip length: z_t = (t + 1) / (T + 1e-6) * scale.
    Computed in float32 and cast to `dtype`.

    Returns:
        [T, 2 * num_feats, H, W].
    """
    eps = 1e-6
    z = torch.arange(1, num_frames + 1, dtype=torch.float32, device=device) / (num_frames + eps) * scale
    pos_z = _sine(z, 2 * num_feats, temperature)  # [T, 2F]
    pos_yx = sine_position_embedding_2d(height, width, num_feats, temperature=temperature, scale=scale,
                                        device=device)  # [1, 2F, H, W]
    return (pos_yx + pos_z[:, :, None, None]).to(dtype)


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
