"""The full video segmentation model: a segmenter plus the video model on top, and its checkpoint loader.

    model = build_model(config.model)                 # or: load_model("runs/x/ckpt_0040000").model
    state = model.init_state()
    for images in frames:                             # [B, 3, H, W] float 0-255
        step, state = model.step(images, state)       # step.frame: VideoFrameOutput in slot order

`VideoSegmentationModel.step` hides how the segmenter and the video model are combined: MinVIS and DVIS++
run the segmenter and hand its output to the video model; Local2Global drives the segmenter's decoder
itself. Offline (DVIS++) models collect the steps of a window and call `refine`.

Checkpoints of the `segmenter` stage hold the bare segmenter (the same keys as `vidseg convert-weights`
writes); those of later stages hold this whole module. `load_model` accepts both and picks the video model
the stage trained: a segmenter checkpoint is tracked with MinVIS association.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidseg.config import ExperimentConfig, ModelConfig
from vidseg.errors import CheckpointError, ConfigError
from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.outputs import SegmenterOutput
from vidseg.models.segmenter import Segmenter, build_segmenter
from vidseg.models.video import (
    ClipOutput,
    DVISOffline,
    MinVIS,
    RefinerWindow,
    VideoFrameOutput,
    build_video_model,
)
from vidseg.models.video_mask2former import VideoMask2Former
from vidseg.training.checkpoint import load_checkpoint, load_weights

# The video model each training stage produces (`segmenter` checkpoints are tracked with MinVIS).
METHOD_OF_STAGE = {"segmenter": "minvis", "tracker": "dvis_online", "refiner": "dvis_offline", "l2g": "l2g",
                   "video_mask2former": "video_mask2former"}


@dataclass
class ModelStep:
    """One streamed frame.

    Attributes:
        frame: the video model's output for this frame, slots in track order.
        segmenter: the segmenter's output for this frame (what an offline refiner window is built from).
    """

    frame: VideoFrameOutput
    segmenter: SegmenterOutput


@dataclass
class ClipForward:
    """A training forward pass over B clips of T frames.

    Attributes:
        segmenter: T per-time-step segmenter outputs (batch B), detached when the segmenter is frozen.
        frames: T video-model outputs (batch B), slots in track order; `aux` holds per-layer predictions.
        clip: the refiner's output over the T frames (offline models only).
    """

    segmenter: list[SegmenterOutput]
    frames: list[VideoFrameOutput]
    clip: ClipOutput | None = None


def split_time(seg: SegmenterOutput, num_frames: int) -> list[SegmenterOutput]:
    """A segmenter output over B*T frames (clip-major) -> T outputs over the B clips."""

    def pick(x: Tensor | None, t: int) -> Tensor | None:
        return None if x is None else x.unflatten(0, (-1, num_frames))[:, t]

    out = []
    for t in range(num_frames):
        out.append(
            SegmenterOutput(
                queries=pick(seg.queries, t),
                raw_queries=pick(seg.raw_queries, t),
                class_logits=pick(seg.class_logits, t),
                mask_logits=pick(seg.mask_logits, t),
                mask_features=pick(seg.mask_features, t),
                reid_embeddings=pick(seg.reid_embeddings, t),
            )
        )
    return out


class VideoSegmentationModel(nn.Module):
    """Segmenter + video model behind one streaming `step`.

    Args:
        segmenter: the Mask2Former segmenter.
        video: `MinVIS` (no parameters), `DVISOnline`, `DVISOffline`, `Local2Global` or `VideoMask2Former`
            (no parameters; the segmenter's decoder is then its clip decoder).
        method: the `ModelConfig.method` this model implements.
    """

    def __init__(self, segmenter: Segmenter, video: Any, method: str):
        super().__init__()
        self.segmenter = segmenter
        # MinVIS has no parameters; keeping it outside the module tree keeps the state dict to the segmenter.
        if isinstance(video, nn.Module):
            self.video = video
        else:
            self._association = video
        self.method = method
        self.frozen: tuple[str, ...] = ()

    def freeze(self, *names: str) -> None:
        """Freeze submodules by dotted name (e.g. "segmenter", "video.online"): no gradients, and they stay
        in eval mode (no dropout, no denoising noise) when the model is put in training mode."""
        for name in names:
            self.get_submodule(name).requires_grad_(False)
        self.frozen = tuple(dict.fromkeys(self.frozen + names))
        self.train(self.training)

    def train(self, mode: bool = True) -> VideoSegmentationModel:
        super().train(mode)
        for name in self.frozen:
            self.get_submodule(name).eval()
        return self

    @property
    def video_model(self) -> Any:
        return self.video if "video" in self._modules else self._association

    @property
    def is_offline(self) -> bool:
        return isinstance(self.video_model, DVISOffline)

    @property
    def is_clip(self) -> bool:
        """True for Video Mask2Former: one decoder pass per clip (`vidseg.models.video_mask2former`)."""
        return isinstance(self.video_model, VideoMask2Former)

    @property
    def drives_decoder(self) -> bool:
        """True when the video model runs the segmenter's decoder itself (Local2Global)."""
        return hasattr(self.video_model, "step_images")

    def init_state(self) -> Any:
        return self.video_model.init_state()

    def step(self, images: Tensor, state: Any) -> tuple[ModelStep, Any]:
        """Segment and track one time step: images [B, 3, H, W] float 0-255 (B videos, one frame each)."""
        video = self.video_model
        if self.drives_decoder:
            frame, seg, state = video.step_images(self.segmenter, images, state)
            return ModelStep(frame, seg), state
        seg = self.segmenter(images)
        frame, state = video.step(seg, state)
        return ModelStep(frame, seg), state

    def forward(
        self,
        pixels: Tensor,
        *,
        oma: ObjectMaskedAttention | None = None,
        generator: torch.Generator | None = None,
    ) -> ClipForward:
        """Training forward over clips: pixels [B, T, 3, H, W] normalised and padded (see `Segmenter.normalize`).

        The frozen segmenter runs on all B*T frames at once without gradients; the tracker steps through the
        T frames; an offline model then refines the clip. `oma` (Object Masked Attention) masks the
        refiner's cross-attention and, when its config says so, the tracker's.
        """
        t = pixels.shape[1]
        video = self.video_model
        if self.drives_decoder:
            return video.forward_clip(self.segmenter, pixels, generator=generator)
        frozen_segmenter = "segmenter" in self.frozen
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_segmenter):
            seg_all = self.segmenter.forward_normalized(pixels.flatten(0, 1))
        segs = split_time(seg_all, t)
        if isinstance(video, MinVIS):
            frames, _ = video.run(segs)
            return ClipForward(segs, frames)
        online = video.online if isinstance(video, DVISOffline) else video
        frozen_tracker = isinstance(video, DVISOffline) and "video.online" in self.frozen
        state = online.init_state()
        frames = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_tracker):
            for seg in segs:
                mask = None
                if oma is not None and oma.config.tracker:
                    q = seg.class_logits.shape[1]
                    mask = oma(seg.class_logits, q, training=self.training, generator=generator).additive
                frame, state = online.step(seg, state, attn_mask=mask, generator=generator)
                frames.append(frame)
        if not isinstance(video, DVISOffline):
            return ClipForward(segs, frames)
        return ClipForward(segs, frames, self._refine(video, segs, frames, None, oma, generator))

    def refine(
        self,
        steps: list[ModelStep],
        mask_feature_device: torch.device | str | None = None,
        oma: ObjectMaskedAttention | None = None,
    ) -> ClipOutput:
        """Offline refinement of a window of steps (DVIS++ offline only).

        `oma` masks the refiner's cross-attention as in training; in eval mode it drops keys only when its
        config asks for `masked_inference` (the MVC paper's Table 6 variant).
        """
        video = self.video_model
        if not isinstance(video, DVISOffline):
            raise ValueError(f"refine: method {self.method!r} is online; only dvis_offline refines windows")
        return self._refine(video, [s.segmenter for s in steps], [s.frame for s in steps], mask_feature_device, oma)

    def _refine(
        self,
        video: DVISOffline,
        segs: list[SegmenterOutput],
        frames: list[VideoFrameOutput],
        mask_feature_device: torch.device | str | None,
        oma: ObjectMaskedAttention | None,
        generator: torch.Generator | None = None,
    ) -> ClipOutput:
        """The refiner over T steps, with OMA's mask on its cross-attention when `oma` asks for it."""
        window = RefinerWindow.from_frames(segs, frames, mask_feature_device)
        attn_mask = None
        if oma is not None and oma.config.refiner:
            keys = torch.stack([s.class_logits for s in segs], dim=1)  # [B, T, Qf, K+1]
            q = frames[0].embeddings.shape[1]
            attn_mask = oma(keys.flatten(0, 1), q, training=self.training, generator=generator).additive
            attn_mask = attn_mask.unflatten(0, keys.shape[:2])
        return video.refine(window, attn_mask)


def build_model(config: ModelConfig | ExperimentConfig) -> VideoSegmentationModel:
    """A randomly initialised model for `config.method` (`segmenter` is tracked with MinVIS)."""
    model_cfg = config.model if isinstance(config, ExperimentConfig) else config
    segmenter = build_segmenter(model_cfg)
    if model_cfg.method == "l2g":
        from vidseg.models.local2global import build_local2global

        video: Any = build_local2global(model_cfg)
    elif model_cfg.method == "video_mask2former":
        video = VideoMask2Former()
    elif model_cfg.method == "segmenter":
        video = MinVIS()
    else:
        video = build_video_model(model_cfg)
    return VideoSegmentationModel(segmenter, video, model_cfg.method)


@dataclass
class LoadedModel:
    """A model restored from a checkpoint, in eval mode.

    Attributes:
        model: the model, with the video model of the checkpoint's stage.
        config: the experiment config it was trained with (`model.method` set to the built method).
        stage: the checkpoint's training stage.
        path: the checkpoint directory.
    """

    model: VideoSegmentationModel
    config: ExperimentConfig
    stage: str
    path: Path


def load_model(
    path: str | Path, expected_stage: str | tuple[str, ...] | None = None, device: torch.device | str = "cpu"
) -> LoadedModel:
    """Load a checkpoint of any stage as a `VideoSegmentationModel` (see the module docstring).

    Raises:
        CheckpointError: corrupt file, unexpected stage, or weights that do not fit the saved config.
    """
    ckpt = load_checkpoint(path, expected_stage=expected_stage)
    method = METHOD_OF_STAGE[ckpt.stage]
    config = replace(ckpt.config, model=replace(ckpt.config.model, method=method))
    try:
        model = build_model(config.model)
    except ConfigError as e:
        raise CheckpointError(f"{ckpt.path}: config.json: {e}") from None
    target: nn.Module = model.segmenter if ckpt.stage == "segmenter" else model
    load_weights(target, ckpt.state_dict, ckpt.path)
    model.to(device).eval()
    return LoadedModel(model, config, ckpt.stage, ckpt.path)
