"""Mask2Box and the box position embedding of Local2Global (L2G Eq. 2: MLP(PE(Mask2Box(M)))).

Boxes are normalised (cx, cy, w, h) in [0, 1] relative to the mask grid (for decoder masks: the padded
image at stride 4). The sine PE is `vidseg.models.position.box_sine_embedding`: each coordinate scaled by
2π, 128 interleaved sin/cos channels at frequencies 10000^(2⌊i/2⌋/128), concatenated in the order
(cy, cx, w, h) -> 512 channels (DAB-DETR / Mask DINO order).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidseg.models.position import MLP, box_sine_embedding

__all__ = ["BoxPositionEmbedding", "mask_to_box"]

FULL_IMAGE_BOX = (0.5, 0.5, 1.0, 1.0)


def mask_to_box(masks: Tensor, *, empty_box: tuple[float, float, float, float] = FULL_IMAGE_BOX) -> Tensor:
    """Tight box around each mask, normalised cxcywh.

    Args:
        masks: [..., H, W]; bool, or logits binarised at > 0 (probability 0.5), as Mask DINO's mask2box.
        empty_box: returned for masks with no foreground pixel. Default: the whole image, i.e. "no
            location prior" (an object lost in the previous frame may be anywhere).

    Returns:
        [..., 4] float (cx, cy, w, h) in [0, 1], no gradient. Pixel (i, j) covers [j, j+1) x [i, i+1), so a
        one-pixel or one-line mask gets a width/height of 1/W or 1/H, never 0.
    """
    if masks.dim() < 2:
        raise ValueError(f"masks must be [..., H, W], got {tuple(masks.shape)}")
    with torch.no_grad():
        fg = masks if masks.dtype == torch.bool else masks > 0
        h, w = fg.shape[-2:]
        rows = fg.any(-1)  # [..., H]
        cols = fg.any(-2)  # [..., W]
        nonempty = rows.any(-1)
        # argmax on 0/1 returns the first maximum: the first occupied row/column (and its mirror the last).
        y0 = rows.to(torch.uint8).argmax(-1)
        y1 = h - rows.flip(-1).to(torch.uint8).argmax(-1)
        x0 = cols.to(torch.uint8).argmax(-1)
        x1 = w - cols.flip(-1).to(torch.uint8).argmax(-1)
        box = torch.stack(
            [(x0 + x1).float() / (2 * w), (y0 + y1).float() / (2 * h), (x1 - x0).float() / w, (y1 - y0).float() / h],
            dim=-1,
        )
        fallback = torch.tensor(empty_box, dtype=box.dtype, device=box.device)
        return torch.where(nonempty[..., None], box, fallback).clamp(0.0, 1.0)


class BoxPositionEmbedding(nn.Module):
    """MLP(sine(box)): normalised cxcywh boxes [..., 4] -> position embeddings [..., dim].

    The MLP has `num_layers` Linear layers (default 2: 512 -> dim -> dim, ReLU between), as DAB-DETR's
    `ref_point_head`.
    """

    def __init__(self, dim: int, *, num_feats: int = 128, num_layers: int = 2, temperature: float = 10000.0):
        super().__init__()
        self.num_feats = num_feats
        self.temperature = temperature
        self.mlp = MLP(4 * num_feats, dim, dim, num_layers)

    def forward(self, boxes: Tensor) -> Tensor:
        """boxes: [..., 4] (cx, cy, w, h) in [0, 1] -> [..., dim]."""
        sine = box_sine_embedding(boxes, self.num_feats, self.temperature)
        return self.mlp(sine.to(next(self.mlp.parameters()).dtype))

    def from_masks(self, masks: Tensor) -> Tensor:
        """L2G Eq. 2: masks [..., H, W] (bool or logits) -> [..., dim]; no gradient flows into the masks."""
        return self(mask_to_box(masks))
