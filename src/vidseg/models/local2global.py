"""Local2Global: online query propagation with the L2G-aligner between the pixel decoder and the decoder.

Per frame t (L2G §3.2), for B videos at once:

1. **Encoder**: backbone + pixel decoder of the (shared) segmenter -> multi-scale tokens `memory`.
2. **Local queries**: a class head scores every token; the top-K become q_local (content detached, as Mask
   DINO), with a static learnable position embedding l_pos per rank (`TwoStageQuerySelector`). The
   undetached selected tokens also get class logits (the selector's head) and masks (the decoder's mask
   head), returned as `L2GFrameOutput.local` for their own per-frame Hungarian loss (Mask DINO's interm loss).
3. **Global queries**: the previous frame's final decoder queries (pre-norm, `raw_queries`), with
   g_pos = MLP(sine(Mask2Box(previous final masks))) (Eq. 2): the trajectory is propagated explicitly.
   On the first frame (and in image pre-training) they are the decoder's learned initial queries
   `query_feat` with their learned positions `query_embed` (the paper's "learnable embeddings ... and
   positions from initial queries").
4. **L2G-aligner** (Eq. 3): global queries attend to the local queries (keys/values only).
5. **Decoder**: the aligned global queries are the decoder's initial content; layer 0 uses g_pos as query
   position, every later layer uses MLP(sine(Mask2Box(latest predicted masks))) (anchor-box PE refreshed per
   layer, L2G §3.1 / DAB-DETR). One `BoxPositionEmbedding` serves g_pos, the per-layer refresh and (ablation)
   dynamic local positions, so all box embeddings live in one space.

The final queries and the Mask2Box of the final masks are the state for frame t+1. Slot i is query i in
every frame (query propagation keeps the order), so `indices` is the identity.

Ablations (paper Tables 3, 5, 6), all from `L2GConfig`:

* `aligner=False`: plain query propagation -- no local queries, no aligner; the previous queries go straight
  into the decoder (Table 3 "baseline" together with `trajectory_pe=False`).
* `trajectory_pe=False`: g_pos = the learned `query_embed` of each slot on every frame (Table 3 row 2).
* `local_pe="dynamic"`: l_pos = MLP(sine(Mask2Box(local queries' own masks))) instead of the static one.
* `aligner_ffn_dim`: aligner width (Table 5).

Streaming: `step` per frame, `run_sequence` over a sequence (exactly that loop) and `forward_clip` (training:
every frame's encoder pass batched, then the same per-frame step) agree. In eval mode the state is detached
after every step, so a stream holds O(B·Q·C) memory whatever its length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from vidseg.config import ModelConfig
from vidseg.errors import ConfigError
from vidseg.models.aligner import L2GAligner
from vidseg.models.boxes import BoxPositionEmbedding, mask_to_box
from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.outputs import LayerPrediction
from vidseg.models.pixel_decoder import PixelDecoderOutput
from vidseg.models.query_selection import TwoStageQuerySelector
from vidseg.models.segmenter import Segmenter
from vidseg.models.video import ClipForward, ModelStep, VideoFrameOutput, has_trainable, run_sequence

__all__ = ["L2GFrameOutput", "L2GState", "Local2Global", "build_local2global"]

LocalPE = Literal["static", "dynamic"]


@dataclass
class L2GState:
    """Local2Global stream state.

    Attributes:
        queries: [B, Q, C] previous frame's final decoder queries before the output norm (None before the
            first frame).
        boxes: [B, Q, 4] normalised (cx, cy, w, h) Mask2Box of the previous frame's final masks. Eq. 2 only
            needs the boxes, so they are kept instead of the [B, Q, h, w] masks.
        frame_index: number of frames already processed.
    """

    queries: Tensor | None = None
    boxes: Tensor | None = None
    frame_index: int = 0

    def detach(self) -> L2GState:
        """The same state cut from the autograd graph (ends back-propagation through time here)."""
        return L2GState(
            None if self.queries is None else self.queries.detach(),
            None if self.boxes is None else self.boxes.detach(),
            self.frame_index,
        )


@dataclass
class L2GFrameOutput(VideoFrameOutput):
    """One Local2Global frame (see `VideoFrameOutput`; class logits are sigmoid logits [B, Q, K]).

    Extra attributes:
        local: predictions of the K_loc selected encoder tokens (local queries), class_logits
            [B, K_loc, K] from the selection head and mask_logits [B, K_loc, h, w] from the decoder's mask
            head; computed in training (their loss) or when the local PE is dynamic, else None.
        local_indices: [B, K_loc] positions of the selected tokens in the flattened memory (None when the
            aligner is off).
        boxes: [B, Q, 4] Mask2Box (cx, cy, w, h) of this frame's final masks (the next frame's trajectory).
    """

    local: LayerPrediction | None = None
    local_indices: Tensor | None = None
    boxes: Tensor | None = None


def pixel_output_at(output: PixelDecoderOutput, num_frames: int, t: int) -> PixelDecoderOutput:
    """Frame t of a pixel-decoder output over B*T frames (clip-major) -> an output over the B clips."""

    def pick(x: Tensor) -> Tensor:
        return x.unflatten(0, (-1, num_frames))[:, t]

    return PixelDecoderOutput(
        mask_features=pick(output.mask_features),
        multi_scale_features=[pick(f) for f in output.multi_scale_features],
        memory=pick(output.memory),
        spatial_shapes=list(output.spatial_shapes),
    )


class Local2Global(nn.Module):
    """Local queries, L2G-aligner, trajectory and per-layer box position embeddings around a segmenter.

    The segmenter is not a submodule: it is passed to every call (the full model owns it).

    Args:
        hidden_dim: C, the decoder width.
        num_classes: K (sigmoid head).
        num_queries: Q, the decoder's number of queries (global queries).
        memory_dim: width of the pixel-decoder tokens (a Linear maps them to C when it differs).
        num_local_queries: K_loc (default Q).
        aligner: off = plain query propagation (no local queries).
        aligner_layers, aligner_heads, aligner_ffn_dim, aligner_dropout: the aligner's shape.
        trajectory_pe: g_pos from the previous frame's boxes (Eq. 2); off = learned per-slot `query_embed`.
        local_pe: "static" (learned per rank, paper) or "dynamic" (from the local queries' own boxes).
        detach_local: detach the local query content from the encoder (Mask DINO).
        detach_global: detach the propagated queries (no back-propagation through time).
    """

    window_refiner = None
    clip_decoder = None

    def __init__(
        self,
        hidden_dim: int,
        num_classes: int,
        num_queries: int,
        *,
        memory_dim: int | None = None,
        num_local_queries: int | None = None,
        aligner: bool = True,
        aligner_layers: int = 3,
        aligner_heads: int = 8,
        aligner_ffn_dim: int = 1024,
        aligner_dropout: float = 0.0,
        trajectory_pe: bool = True,
        local_pe: LocalPE = "static",
        detach_local: bool = True,
        detach_global: bool = False,
    ):
        super().__init__()
        if local_pe not in ("static", "dynamic"):
            raise ValueError(f"local_pe must be 'static' or 'dynamic', got {local_pe!r}")
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.num_local_queries = num_queries if num_local_queries is None else num_local_queries
        self.trajectory_pe = trajectory_pe
        self.local_pe = local_pe
        self.detach_global = detach_global
        self.box_pe = BoxPositionEmbedding(hidden_dim)
        self.memory_proj: nn.Module | None = None
        self.selector: TwoStageQuerySelector | None = None
        self.aligner: L2GAligner | None = None
        if aligner:
            memory_dim = hidden_dim if memory_dim is None else memory_dim
            self.memory_proj = nn.Linear(memory_dim, hidden_dim) if memory_dim != hidden_dim else nn.Identity()
            self.selector = TwoStageQuerySelector(
                hidden_dim, num_classes, self.num_local_queries, detach_content=detach_local
            )
            if local_pe == "dynamic":
                # The static embedding is unused then; frozen, DDP does not wait for its gradient.
                self.selector.query_pos.requires_grad_(False)
            self.aligner = L2GAligner(
                hidden_dim,
                num_layers=aligner_layers,
                num_heads=aligner_heads,
                ffn_dim=aligner_ffn_dim,
                dropout=aligner_dropout,
            )

    # --- streaming (`VideoModel`) ----------------------------------------------------------------------------

    def init_state(self) -> L2GState:
        return L2GState()

    def step(self, segmenter: Segmenter, images: Tensor, state: L2GState) -> tuple[ModelStep, L2GState]:
        """One time step for B videos: images [B, 3, H, W] RGB float 0-255 (normalised and padded here)."""
        return self.step_encoded(segmenter, segmenter.encode(segmenter.normalize(images)), state)

    def forward_clip(
        self,
        segmenter: Segmenter,
        pixels: Tensor,
        *,
        oma: ObjectMaskedAttention | None = None,
        generator: torch.Generator | None = None,
    ) -> ClipForward:
        """Training forward over clips: pixels [B, T, 3, H, W] normalised and padded.

        The encoder runs once on all B*T frames (without gradients when the backbone and pixel decoder
        are frozen), then the T frames are stepped in order. Local2Global has no OMA and draws no random
        numbers (`oma`, `generator` unused).
        """
        t = pixels.shape[1]
        encoder_trains = has_trainable(segmenter.backbone) or has_trainable(segmenter.pixel_decoder)
        with torch.set_grad_enabled(torch.is_grad_enabled() and encoder_trains):
            encoded = segmenter.encode(pixels.flatten(0, 1))

        def one(i: int, state: L2GState) -> tuple[ModelStep, L2GState]:
            return self.step_encoded(segmenter, pixel_output_at(encoded, t, i), state)

        steps, _ = run_sequence(one, range(t), self.init_state())
        return ClipForward([s.segmenter for s in steps], [s.frame for s in steps])

    def step_encoded(
        self, segmenter: Segmenter, pixel_output: PixelDecoderOutput, state: L2GState
    ) -> tuple[ModelStep, L2GState]:
        """One time step from the pixel decoder's output for B videos (see the module docstring)."""
        decoder = segmenter.decoder
        if decoder.hidden_dim != self.hidden_dim or decoder.num_queries != self.num_queries:
            raise ValueError(
                f"Local2Global built for C={self.hidden_dim}, Q={self.num_queries}; the decoder has "
                f"C={decoder.hidden_dim}, Q={decoder.num_queries}"
            )
        mask_features = pixel_output.mask_features
        b = mask_features.shape[0]
        learned_pos = decoder.query_embed.weight.unsqueeze(0).expand(b, -1, -1)
        if state.queries is None:
            content = decoder.query_feat.weight.unsqueeze(0).expand(b, -1, -1)
            global_pos = learned_pos
        else:
            if state.queries.shape[0] != b:
                raise ValueError(f"state holds {state.queries.shape[0]} videos, the frame batch has {b}")
            content = state.queries.detach() if self.detach_global else state.queries
            global_pos = self.box_pe(state.boxes) if self.trajectory_pe else learned_pos

        local: LayerPrediction | None = None
        local_indices: Tensor | None = None
        if self.aligner is not None and self.selector is not None and self.memory_proj is not None:
            selection = self.selector(self.memory_proj(pixel_output.memory))
            local_indices = selection.indices
            if self.training or self.local_pe == "dynamic":
                _, heads = decoder.predict(selection.tokens, mask_features)
                local = LayerPrediction(selection.class_logits, heads.mask_logits)
            local_pos = selection.pos
            if self.local_pe == "dynamic" and local is not None:
                local_pos = self.box_pe(mask_to_box(local.mask_logits))
            content = self.aligner(content, selection.content, global_pos, local_pos).queries

        def layer_pos(layer: int, mask_logits: Tensor) -> Tensor:
            # Layer 0 takes the trajectory (or learned) position; later layers the box of the latest masks.
            return global_pos if layer == 0 else self.box_pe(mask_to_box(mask_logits))

        seg = segmenter.decode(pixel_output, query_content=content, query_pos=global_pos, pos_callback=layer_pos)
        boxes = mask_to_box(seg.mask_logits)
        q = seg.queries.shape[1]
        frame = L2GFrameOutput(
            class_logits=seg.class_logits,
            mask_logits=seg.mask_logits,
            embeddings=seg.queries,
            indices=torch.arange(q, device=seg.queries.device).expand(b, q),
            frame_index=state.frame_index,
            aux=list(seg.aux) if self.training else [],
            local=local,
            local_indices=local_indices,
            boxes=boxes,
        )
        new_state = L2GState(seg.raw_queries, boxes, state.frame_index + 1)
        if not self.training:
            # Inference never back-propagates: cutting the graph keeps a stream's memory constant.
            new_state = new_state.detach()
        return ModelStep(frame, seg), new_state


def build_local2global(config: ModelConfig) -> Local2Global:
    """The Local2Global video model for `config` (the segmenter is built separately)."""
    if config.classification != "sigmoid":
        raise ConfigError(
            "model.classification: Local2Global needs the sigmoid (focal) class head; set it to 'sigmoid'"
        )
    l2g = config.l2g
    num_local = config.decoder.num_queries if l2g.num_local_queries is None else l2g.num_local_queries
    if num_local < 1:
        raise ConfigError(f"model.l2g.num_local_queries must be >= 1, got {num_local}")
    return Local2Global(
        config.decoder.hidden_dim,
        config.num_classes,
        config.decoder.num_queries,
        memory_dim=config.pixel_decoder.hidden_dim,
        num_local_queries=num_local,
        aligner=l2g.aligner,
        aligner_layers=l2g.aligner_layers,
        aligner_heads=l2g.aligner_heads,
        aligner_ffn_dim=l2g.aligner_ffn_dim,
        aligner_dropout=l2g.aligner_dropout,
        trajectory_pe=l2g.trajectory_pe,
        local_pe=l2g.local_pe,
        detach_local=l2g.detach_local,
        detach_global=l2g.detach_global,
    )
