"""Video Mask2Former's clip-level decoder: one set of queries for all frames of a clip.

`MaskedAttentionDecoder` with two things changed (Mask2Former `mask2former_video/`,
`VideoMultiScaleMaskedTransformerDecoder`, fixture README section 9.5); layers, heads and parameter names are
the image decoder's, so a Mask2Former image checkpoint loads into it apart from the class head:

* memory: level l holds the tokens of *all* T frames, [B, T*h_l*w_l, C] in (t, y, x) order (frame slowest),
  plus the level embedding; its keys get the 3-D sine position embedding (`sine_position_embedding_3d`, its
  time term normalised by the clip length T);
* heads: one class vector per query for the clip, [B, Q, K+1], and a mask tube per query,
  [B, Q, T, H/4, W/4] (`einsum("bqc,btchw->bqthw")` with each frame's mask features). The masked attention
  resizes each frame's mask alone and masks a query's row only when the whole clip is masked for it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vidseg.models.decoder import DecoderOutput, MaskedAttentionDecoder, PosCallback
from vidseg.models.position import sine_position_embedding_3d

__all__ = ["ClipMaskedAttentionDecoder"]


class ClipMaskedAttentionDecoder(MaskedAttentionDecoder):
    """Masked-attention decoder over clips (see the module docstring); constructor as `MaskedAttentionDecoder`.

    Every `LayerPrediction` it makes holds class_logits [B, Q, K+1] and mask_logits [B, Q, T, H/4, W/4].
    """

    def memory(self, multi_scale_features: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[tuple[int, int]]]:
        """Per level: the clip's tokens [B, T*h*w, C] (+ level embedding), their 3-D sine position
        [1, T*h*w, C] and (h, w).

        Args:
            multi_scale_features: num_levels maps [B, T, C_in, h_l, w_l], coarsest first.
        """
        memories, memory_pos, sizes = [], [], []
        for level in range(self.num_levels):
            feat = multi_scale_features[level]
            b, t, _, h, w = feat.shape
            sizes.append((h, w))
            pe = sine_position_embedding_3d(t, h, w, self.hidden_dim // 2, device=feat.device, dtype=feat.dtype)
            memory_pos.append(pe.permute(0, 2, 3, 1).reshape(1, t * h * w, -1))
            x = self.input_proj[level](feat.flatten(0, 1))  # [B*T, C, h, w]
            x = x.unflatten(0, (b, t)).permute(0, 1, 3, 4, 2).reshape(b, t * h * w, -1)
            memories.append(x + self.level_embed.weight[level].to(x.dtype))
        return memories, memory_pos, sizes

    def mask_logits(self, mask_embed: Tensor, mask_features: Tensor) -> Tensor:
        """Mask embeddings [B, Q, D] x a clip's features [B, T, D, h, w] -> mask tubes [B, Q, T, h, w]."""
        return torch.einsum("bqc,btchw->bqthw", mask_embed, mask_features)

    def forward(
        self,
        multi_scale_features: list[Tensor],
        mask_features: Tensor,
        *,
        query_content: Tensor | None = None,
        query_pos: Tensor | None = None,
        pos_callback: PosCallback | None = None,
    ) -> DecoderOutput:
        """Decode B clips of T frames.

        Args:
            multi_scale_features: num_levels maps [B, T, C_in, h_l, w_l], coarsest first (strides 32, 16, 8).
            mask_features: [B, T, D, H/4, W/4].
            query_content, query_pos, pos_callback: as `MaskedAttentionDecoder.forward`.
        """
        if mask_features.dim() != 5 or any(f.dim() != 5 for f in multi_scale_features):
            raise ValueError("ClipMaskedAttentionDecoder takes clips: features [B, T, C, h, w], got "
                             f"{[tuple(f.shape) for f in multi_scale_features]} and {tuple(mask_features.shape)}")
        return super().forward(multi_scale_features, mask_features, query_content=query_content,
                               query_pos=query_pos, pos_callback=pos_callback)
