"""DVIS++ referring tracker: online, one frame at a time, Q slots that follow objects.

Per frame t the tracker turns the segmenter's Q queries (hidden C; 2x the decoder width with the re-id
branch) into Q *tracked* slots. Per layer: referring cross-attention (RCA) -> self-attention -> FFN,
post-norm, no positional embeddings.

* t = 0: slots start from the frame's queries in their own order; layer j's attention query is
  ref_proj(layer j-1 output) (ref_proj(frame queries) for j = 0); every layer is classified with
  ref_proj(frame queries).
* t >= 1: the reference R = ref_proj(previous frame's final output) is the attention query of every layer;
  the residual ("identity") starts from the current queries reordered by MinVIS matching against the
  previous frame's (slot-ordered) normed embeddings, possibly replaced by denoising noise in training;
  keys/values are the current frame's queries in raw segmenter order (this is where OMA's key mask goes).

No memory bank: the state is just the previous frame's final output and its slot-ordered normed
embeddings, so stepping frame by frame equals running over the clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vidseg.models.association import match_queries, reorder
from vidseg.models.attention import Attention, FFNLayer, SelfAttentionLayer
from vidseg.models.noiser import NoiseMode, Noiser
from vidseg.models.outputs import LayerPrediction, mask_logits_of
from vidseg.models.position import MLP

# ---------------------------------------------------------------------------------------------------------
# The referring cross-attention block (generic attention blocks live in attention.py)


class ReferringCrossAttention(nn.Module):
    """out = LayerNorm(identity + MHA(query, key, value)): the residual is not the attention query."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = Attention(dim, num_heads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, identity: Tensor, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None
    ) -> Tensor:
        """identity, query [N, Lq, C]; key, value [N, Lk, C]; attn_mask [N, Lq or 1, Lk] -> [N, Lq, C]."""
        return self.norm(identity + self.drop(self.attn(query, key, value, attn_mask)))


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform every weight matrix of `module` (biases and norms keep their defaults)."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


# ---------------------------------------------------------------------------------------------------------
# Tracker


@dataclass
class TrackerState:
    """What the tracker carries from one frame to the next (per batch of B videos).

    Attributes:
        last_output: [B, Q, C] previous frame's final-layer output (un-normed), None before the first frame.
        last_embeds: [B, Q, C] previous frame's normed segmenter embeddings in slot order (MinVIS reference).
        frame_index: number of frames already processed.
    """

    last_output: Tensor | None = None
    last_embeds: Tensor | None = None
    frame_index: int = 0



@dataclass
class TrackerFrameOutput:
    """Tracker predictions for one frame, all in slot (track) order.

    Attributes:
        class_logits: [B, Q, K+1] last layer.
        mask_logits: [B, Q, h, w] last layer, read from the projected mask features.
        embeddings: [B, Q, C] last-layer output without the output norm (the refiner's input).
        references: [B, Q, C] the reference the frame was read with (contrastive loss anchor).
        indices: [B, Q] int64 segmenter query assigned to each slot (matching, or noise in training).
        aux: per-layer predictions of layers 0..L-2 (only in training, for deep supervision).
    """

    class_logits: Tensor
    mask_logits: Tensor
    embeddings: Tensor
    references: Tensor
    indices: Tensor
    aux: list[LayerPrediction] = field(default_factory=list)


class ReferringTracker(nn.Module):
    """DVIS++ referring tracker.

    Args:
        hidden_dim: C, the width of the segmenter embeddings it consumes (2x decoder width with re-id).
        num_classes: K; the class head predicts K+1 logits (last = no-object).
        mask_dim: D, channels of the segmenter mask features.
        num_layers, num_heads, ffn_dim, dropout: transformer sizes (DVIS++: 6, 8, 2048, 0).
        noise_mode, noise_ratio: denoising training (§ noiser); only active in `train()` mode.
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
        noise_mode: NoiseMode = "wa",
        noise_ratio: float = 0.5,
    ):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.cross_attn = nn.ModuleList(
            ReferringCrossAttention(hidden_dim, num_heads, dropout) for _ in range(num_layers)
        )
        self.self_attn = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, num_heads, dropout) for _ in range(num_layers)
        )
        self.ffn = nn.ModuleList(FFNLayer(hidden_dim, ffn_dim, dropout) for _ in range(num_layers))
        self.ref_proj = MLP(hidden_dim, hidden_dim, hidden_dim, 3)
        self.mask_feature_proj = nn.Conv2d(mask_dim, mask_dim, kernel_size=1)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        # The class head sees the reference next to the normed output: what the slot was asked to follow.
        self.class_embed = nn.Linear(2 * hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.noiser = Noiser(noise_mode, noise_ratio)
        for blocks in (self.cross_attn, self.self_attn, self.ffn, self.ref_proj):
            xavier_init(blocks)

    def init_state(self) -> TrackerState:
        return TrackerState()

    def predict(self, output: Tensor, reference: Tensor, mask_features: Tensor) -> LayerPrediction:
        """output, reference [B, Q, C]; mask_features [B, D, h, w] (projected) -> class/mask logits."""
        normed = self.decoder_norm(output)
        class_logits = self.class_embed(torch.cat([reference, normed], dim=-1))
        mask_logits = mask_logits_of(self.mask_embed(normed), mask_features)
        return LayerPrediction(class_logits=class_logits, mask_logits=mask_logits)

    def forward_frame(
        self,
        frame_embeds: Tensor,
        frame_embeds_normed: Tensor,
        mask_features: Tensor,
        state: TrackerState,
        attn_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[TrackerFrameOutput, TrackerState]:
        """Track one frame.

        Args:
            frame_embeds: [B, Q, C] segmenter queries without the output norm, segmenter order.
            frame_embeds_normed: [B, Q, C] the normed ones (used only for association).
            mask_features: [B, D, h, w] segmenter mask features.
            state: from `init_state()` or the previous call.
            attn_mask: optional additive mask [B, Q or 1, Q] on the RCA keys (segmenter order), e.g. OMA.
            generator: CPU generator for the denoising noise (training only).

        Returns:
            (frame output in slot order, new state).
        """
        b, q, _ = frame_embeds.shape
        features = self.mask_feature_proj(mask_features)
        reference: Tensor | None = None  # None on the first frame
        if state.last_output is None or state.last_embeds is None:
            indices = torch.arange(q, device=frame_embeds.device).expand(b, q)
            output = frame_embeds
        else:
            matched = match_queries(state.last_embeds, frame_embeds_normed)
            if self.training:
                init = self.noiser(frame_embeds, matched, generator)
                output, indices = init.init, init.indices
            else:
                output, indices = reorder(frame_embeds, matched), matched
            reference = self.ref_proj(state.last_output)

        predictions: list[LayerPrediction] = []
        # The reference a frame is read (and classified) with. Frame 0 has no previous output: each layer is
        # steered by the projection of what it is refining, but every layer's class head reads the
        # projection of the frame's own queries, as the official tracker's `all_frames_references` does
        # (DVIS_Plus/dvis_Plus/tracker.py:276, 331, 375-377).
        frame_reference = self.ref_proj(output) if reference is None else reference
        for j in range(self.num_layers):
            query = (frame_reference if j == 0 else self.ref_proj(output)) if reference is None else reference
            output = self.cross_attn[j](output, query, frame_embeds, frame_embeds, attn_mask)
            output = self.self_attn[j](output)
            output = self.ffn[j](output)
            if self.training or j == self.num_layers - 1:
                predictions.append(self.predict(output, frame_reference, features))

        new_state = TrackerState(
            last_output=output,
            last_embeds=reorder(frame_embeds_normed, indices),
            frame_index=state.frame_index + 1,
        )
        last = predictions[-1]
        frame_out = TrackerFrameOutput(
            class_logits=last.class_logits,
            mask_logits=last.mask_logits,
            embeddings=output,
            references=frame_reference,
            indices=indices,
            aux=predictions[:-1],
        )
        return frame_out, new_state
