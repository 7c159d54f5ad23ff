"""DVIS++ temporal refiner: offline, over a clip of tracked slots.

Input: the tracker's slot embeddings over T frames (track order), the segmenter's raw queries of each frame
(segmenter order) and the segmenter's un-projected mask features. Per layer, post-norm, no positional
embeddings:

1. long temporal self-attention: each object's T tokens attend to each other;
2. short temporal convolution: Conv1d(k=5) -> ReLU -> Conv1d(k=3) along T, replicate padding, residual;
3. object self-attention: the Q objects of one frame attend to each other;
4. cross-attention from the slots of frame t to frame t's segmenter queries; it takes an additive
   `attn_mask` over those keys, which is where OMA (object masked attention) plugs in;
5. FFN.

Heads: one clip-level class per slot from a time-weighted average of the normed embeddings (weights =
softmax over T of a learned scalar per frame), and per-frame masks from the mask features, computed in
windows of frames so the (T, Q, h, w) volume never needs the mask features of all frames on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vidseg.models.attention import Attention, FFNLayer, SelfAttentionLayer
from vidseg.models.position import MLP
from vidseg.models.tracker import xavier_init


@dataclass
class ClipPrediction:
    """Predictions of one refiner layer.

    Attributes:
        class_logits: [B, Q, K+1] clip-level class of each slot.
        mask_logits: [B, T, Q, h, w] per-frame masks (None when mask features were not given).
    """

    class_logits: Tensor
    mask_logits: Tensor | None


@dataclass
class RefinerOutput:
    """Refiner result for a clip, slots in track order.

    Attributes:
        class_logits: [B, Q, K+1] clip-level class logits (last layer).
        mask_logits: [B, T, Q, h, w] last-layer masks, on the mask features' device (None without features).
        embeddings: [B, T, Q, C] last-layer slot embeddings, before the output norm.
        time_weights: [B, T, Q] softmax-over-time pooling weights of the last layer's class head.
        aux: predictions of layers 0..L-2 (training only, for deep supervision).
    """

    class_logits: Tensor
    mask_logits: Tensor | None
    embeddings: Tensor
    time_weights: Tensor
    aux: list[ClipPrediction] = field(default_factory=list)


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention LayerNorm(x + MHA(x, memory, memory)) with an optional additive key mask."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = Attention(dim, num_heads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x [N, Lq, C]; memory [N, Lk, C]; attn_mask additive [N, Lq or 1, Lk] -> [N, Lq, C]."""
        return self.norm(x + self.drop(self.attn(x, memory, memory, attn_mask)))


class TemporalConvLayer(nn.Module):
    """Short-range motion along time: LayerNorm(x + Conv1d_3(relu(Conv1d_5(x)))), [N, T, C] -> [N, T, C]."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        # Replicate padding: a clip border repeats its last frame instead of fading to zero.
        self.conv1 = nn.Conv1d(dim, dim, kernel_size=5, padding=2, padding_mode="replicate")
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, padding=1, padding_mode="replicate")
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(torch.relu(self.conv1(x.transpose(1, 2)))).transpose(1, 2)
        return self.norm(x + self.drop(y))


class TemporalRefiner(nn.Module):
    """DVIS++ temporal refiner.

    Args:
        hidden_dim: C, width of the tracker/segmenter embeddings.
        num_classes: K; class logits are K+1 (last = no-object).
        mask_dim: D, channels of the segmenter mask features.
        num_layers, num_heads, ffn_dim, dropout: transformer sizes (DVIS++: 6, 8, 2048, 0).
        mask_window: frames per chunk when reading masks from the mask features (bounds device memory).
    """

    def __init__(
        self,
        hidden_dim: int,
        num_classes: int,
        mask_dim: int,
        num_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.0,
        mask_window: int = 5,
    ):
        super().__init__()
        if mask_window < 1:
            raise ValueError(f"mask_window must be >= 1, got {mask_window}")
        self.num_layers = num_layers
        self.mask_window = mask_window
        self.temporal_attn = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, num_heads, dropout) for _ in range(num_layers)
        )
        self.temporal_conv = nn.ModuleList(TemporalConvLayer(hidden_dim, dropout) for _ in range(num_layers))
        self.object_attn = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, num_heads, dropout) for _ in range(num_layers)
        )
        self.cross_attn = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, num_heads, dropout) for _ in range(num_layers)
        )
        self.ffn = nn.ModuleList(FFNLayer(hidden_dim, ffn_dim, dropout) for _ in range(num_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.activation_proj = nn.Linear(hidden_dim, 1)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        for blocks in (self.temporal_attn, self.object_attn, self.cross_attn, self.ffn):
            xavier_init(blocks)

    def pool_over_time(self, normed: Tensor) -> tuple[Tensor, Tensor]:
        """Time-weighted average: normed [B, T, Q, C] -> (pooled [B, Q, C], weights [B, T, Q]).

        The weights are a softmax over T of a learned scalar per frame and slot.
        """
        weights = self.activation_proj(normed)[..., 0].softmax(dim=1)
        return torch.einsum("btq,btqc->bqc", weights, normed), weights

    def predict_masks(self, embeddings: Tensor, mask_features: Tensor) -> Tensor:
        """embeddings [B, T, Q, C] (before the norm); mask_features [B, T, D, h, w], on any device.

        Returns [B, T, Q, h, w] on the mask features' device, computed `mask_window` frames at a time.
        """
        device = embeddings.device
        chunks = []
        for start in range(0, embeddings.shape[1], self.mask_window):
            stop = start + self.mask_window
            kernels = self.mask_embed(self.decoder_norm(embeddings[:, start:stop]))
            feats = mask_features[:, start:stop].to(device, kernels.dtype)
            chunks.append(torch.einsum("btqd,btdhw->btqhw", kernels, feats).to(mask_features.device))
        return torch.cat(chunks, dim=1)

    def forward(
        self,
        instance_embeds: Tensor,
        frame_embeds: Tensor,
        mask_features: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> RefinerOutput:
        """Refine a clip.

        Args:
            instance_embeds: [B, T, Q, C] tracker slot embeddings (un-normed), track order.
            frame_embeds: [B, T, Qf, C] segmenter queries (un-normed), segmenter order.
            mask_features: [B, T, D, h, w] segmenter mask features (un-projected), any device;
                None skips the masks.
            attn_mask: additive mask on the cross-attention keys, [B, T, Q or 1, Qf] (0 keep, -inf block).
                A row must keep at least one key. This is the OMA hook.
        """
        b, t, q, c = instance_embeds.shape
        qf = frame_embeds.shape[2]
        memory = frame_embeds.reshape(b * t, qf, c)
        cross_mask = None if attn_mask is None else attn_mask.reshape(b * t, attn_mask.shape[2], qf)
        x = instance_embeds
        predictions: list[ClipPrediction] = []
        weights = instance_embeds.new_zeros(b, t, q)
        for j in range(self.num_layers):
            # Long-range: every frame of an object attends to all of its frames.
            y = x.permute(0, 2, 1, 3).reshape(b * q, t, c)
            y = self.temporal_attn[j](y)
            y = self.temporal_conv[j](y)
            x = y.reshape(b, q, t, c).permute(0, 2, 1, 3)
            # Within a frame: objects attend to each other, then read that frame's segmenter queries.
            y = x.reshape(b * t, q, c)
            y = self.object_attn[j](y)
            y = self.cross_attn[j](y, memory, cross_mask)
            y = self.ffn[j](y)
            x = y.reshape(b, t, q, c)
            if self.training or j == self.num_layers - 1:
                pooled, weights = self.pool_over_time(self.decoder_norm(x))
                masks = None if mask_features is None else self.predict_masks(x, mask_features)
                predictions.append(ClipPrediction(self.class_embed(pooled), masks))
        last = predictions[-1]
        return RefinerOutput(
            class_logits=last.class_logits,
            mask_logits=last.mask_logits,
            embeddings=x,
            time_weights=weights,
            aux=predictions[:-1],
        )
