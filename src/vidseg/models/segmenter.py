"""Mask2Former segmenter: backbone -> pixel decoder -> masked-attention decoder -> heads.

Input convention: `Segmenter.forward` takes RGB images as float (or uint8) tensors in 0-255, [B, 3, H, W].
It normalises them with the backbone's `pixel_mean` / `pixel_std` and zero-pads the normalised batch on the
bottom/right to a multiple of `size_divisibility` (32), as detectron2 does; the mask logits therefore
cover the padded image at stride 4 (crop `[:ceil(H/4), :ceil(W/4)]` to get back to the input).
`forward_normalized` skips both steps for callers that already hold a normalised, padded batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidseg.config import ModelConfig
from vidseg.models.backbones.base import Backbone
from vidseg.models.clip_decoder import ClipMaskedAttentionDecoder
from vidseg.models.decoder import MaskedAttentionDecoder, PosCallback
from vidseg.models.outputs import SegmenterOutput
from vidseg.models.pixel_decoder import PixelDecoder, PixelDecoderOutput
from vidseg.models.position import MLP

__all__ = ["Segmenter", "build_segmenter", "segmenter_from_backbone"]


class Segmenter(nn.Module):
    """Mask2Former for a batch of frames.

    Args:
        backbone: module with `out_channels`, `out_strides`, `pixel_mean`, `pixel_std` (0-255 RGB) and
            `forward(normalised [B, 3, H, W]) -> {"res2".."res5"}`.
        pixel_decoder: multi-scale deformable encoder + FPN.
        decoder: masked-attention decoder with class and mask heads.
        reid_head: optional DVIS++ re-identification MLP applied to the final normed queries.
        size_divisibility: the normalised batch is zero-padded to a multiple of this.
    """

    pixel_mean: Tensor
    pixel_std: Tensor

    def __init__(
        self,
        backbone: Backbone,
        pixel_decoder: PixelDecoder,
        decoder: MaskedAttentionDecoder,
        *,
        reid_head: nn.Module | None = None,
        size_divisibility: int = 32,
    ):
        super().__init__()
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.decoder = decoder
        self.reid_head = reid_head
        self.size_divisibility = size_divisibility
        mean = torch.tensor(backbone.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(backbone.pixel_std, dtype=torch.float32).view(1, 3, 1, 1)
        # Constants of the backbone, not learned: kept out of the state dict.
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    # --- input ------------------------------------------------------------------------------------------

    def normalize(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] RGB 0-255 -> normalised float, zero-padded to [B, 3, H', W'] (multiples of 32)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        x = (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        d = self.size_divisibility
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % d, (-w) % d
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x

    def frames_to_batch(self, frames: Sequence[np.ndarray] | np.ndarray) -> Tensor:
        """uint8 RGB frames [H, W, 3] (a list, or an array [T, H, W, 3]) -> float 0-255 batch [T, 3, H, W].

        Frames of different sizes are padded bottom/right to the largest with the pixel mean, which
        `normalize` maps to 0 -- the same value it pads with -- so every frame sees the same padding.
        The batch is on the model's device; pass it to `forward`.
        """
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        if len(frames) == 0:
            raise ValueError("no frames given")
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3:
                raise ValueError(f"expected RGB frames [H, W, 3], got shape {f.shape}")
        height = max(f.shape[0] for f in frames)
        width = max(f.shape[1] for f in frames)
        device = self.pixel_mean.device
        batch = self.pixel_mean.expand(len(frames), 3, height, width).clone()
        for i, f in enumerate(frames):
            t = torch.from_numpy(np.array(f, copy=True)).to(device)  # frames may be read-only views
            batch[i, :, : f.shape[0], : f.shape[1]] = t.permute(2, 0, 1).float()
        return batch

    # --- model ------------------------------------------------------------------------------------------

    def forward(
        self,
        images: Tensor,
        *,
        query_content: Tensor | None = None,
        query_pos: Tensor | None = None,
        pos_callback: PosCallback | None = None,
    ) -> SegmenterOutput:
        """Segment a batch of RGB images [B, 3, H, W] in 0-255 (see the module docstring).

        `query_content`, `query_pos` and `pos_callback` are passed to the decoder (see
        `MaskedAttentionDecoder.forward`). Mask logits are [B, Q, H'/4, W'/4] of the padded size.
        """
        return self.forward_normalized(
            self.normalize(images), query_content=query_content, query_pos=query_pos, pos_callback=pos_callback
        )

    def forward_normalized(
        self,
        pixels: Tensor,
        *,
        query_content: Tensor | None = None,
        query_pos: Tensor | None = None,
        pos_callback: PosCallback | None = None,
    ) -> SegmenterOutput:
        """Like `forward` for an already normalised (and padded) batch [B, 3, H, W]."""
        return self.decode(
            self.encode(pixels), query_content=query_content, query_pos=query_pos, pos_callback=pos_callback
        )

    def encode(self, pixels: Tensor) -> PixelDecoderOutput:
        """Backbone + pixel decoder on a normalised batch [B, 3, H, W]."""
        return self.pixel_decoder(self.backbone(pixels))

    def decode(
        self,
        pixel_output: PixelDecoderOutput,
        *,
        query_content: Tensor | None = None,
        query_pos: Tensor | None = None,
        pos_callback: PosCallback | None = None,
    ) -> SegmenterOutput:
        """Decoder + heads on the pixel decoder's output."""
        out = self.decoder(
            pixel_output.multi_scale_features,
            pixel_output.mask_features,
            query_content=query_content,
            query_pos=query_pos,
            pos_callback=pos_callback,
        )
        last = out.predictions[-1]
        return SegmenterOutput(
            queries=out.queries,
            raw_queries=out.raw_queries,
            class_logits=last.class_logits,
            mask_logits=last.mask_logits,
            aux=out.predictions[:-1],
            mask_features=pixel_output.mask_features,
            memory=list(pixel_output.multi_scale_features),
            reid_embeddings=None if self.reid_head is None else self.reid_head(out.queries),
        )


def build_segmenter(cfg: ModelConfig) -> Segmenter:
    """A randomly initialised (backbone: as `cfg.backbone` says) segmenter for `cfg`."""
    from vidseg.models.backbones import build_backbone

    backbone = build_backbone(cfg.backbone)
    return segmenter_from_backbone(backbone, cfg)


def segmenter_from_backbone(backbone: Backbone, cfg: ModelConfig) -> Segmenter:
    """Pixel decoder, decoder and heads per `cfg` around an existing backbone module."""
    pd, dc = cfg.pixel_decoder, cfg.decoder
    pixel_decoder = PixelDecoder(
        backbone.out_channels,
        backbone.out_strides,
        hidden_dim=pd.hidden_dim,
        mask_dim=pd.mask_dim,
        num_layers=pd.num_layers,
        num_heads=pd.num_heads,
        num_points=pd.num_points,
        ffn_dim=pd.ffn_dim,
        dropout=pd.dropout,
    )
    num_class_logits = cfg.num_classes + 1 if cfg.classification == "softmax" else cfg.num_classes
    # Video Mask2Former: the same decoder (same parameters) attending over whole clips.
    decoder_class = ClipMaskedAttentionDecoder if cfg.method == "video_mask2former" else MaskedAttentionDecoder
    decoder = decoder_class(
        in_channels=pd.hidden_dim,
        mask_dim=pd.mask_dim,
        num_class_logits=num_class_logits,
        hidden_dim=dc.hidden_dim,
        num_queries=dc.num_queries,
        num_layers=dc.num_layers,
        num_heads=dc.num_heads,
        ffn_dim=dc.ffn_dim,
        dropout=dc.dropout,
        pre_norm=dc.pre_norm,
        mask_threshold=dc.mask_threshold,
    )
    if cfg.classification == "sigmoid":
        # Focal-loss prior (RetinaNet): every class starts at probability 0.01, so the first iterations are
        # not dominated by the loss of Q x K confident false positives.
        nn.init.constant_(decoder.class_head.bias, -math.log((1 - 0.01) / 0.01))
    reid = MLP(dc.hidden_dim, dc.hidden_dim, dc.hidden_dim, 3) if cfg.reid_head else None
    return Segmenter(backbone, pixel_decoder, decoder, reid_head=reid)
