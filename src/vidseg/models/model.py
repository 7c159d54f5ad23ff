"""The full video segmentation model: a segmenter plus a video model on top, and its checkpoint loader.

    model = build_model(config.model)                 # or: load_model("runs/x/ckpt_0040000").model
    state = model.init_state()
    for images in frames:                             # [B, 3, H, W] float 0-255
        step, state = model.step(images, state)       # step.frame: VideoFrameOutput in slot order

How the segmenter and the video model are combined is the video model's business (`VideoModel.step` is
handed the segmenter, `vidseg.models.video`); the method is chosen from `vidseg.models.methods.METHODS`.
Offline (DVIS++) models collect the steps of a window and call `refine`.

Checkpoints of the `segmenter` stage hold the bare segmenter (the same keys as `vidseg convert-weights`
writes); those of later stages hold this whole module. `load_model` accepts both and picks the method the
stage trained (`METHOD_OF_STAGE`): a segmenter checkpoint is tracked with MinVIS association. A checkpoint
may leave out a frozen backbone whose weights come from an installed package (`packaged_weights_prefix`,
as `vidseg.training.export` writes the bundled model): they are taken from the package again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidseg.config import ExperimentConfig, ModelConfig
from vidseg.errors import CheckpointError, ConfigError
from vidseg.io.checkpoint import load_checkpoint, load_weights
from vidseg.models.backbones import packaged_frozen_prefix
from vidseg.models.methods import METHOD_OF_STAGE, METHODS
from vidseg.models.oma import ObjectMaskedAttention
from vidseg.models.segmenter import Segmenter, build_segmenter
from vidseg.models.video import ClipForward, ClipOutput, ModelStep, VideoModel


class VideoSegmentationModel(nn.Module):
    """Segmenter + video model behind one streaming `step` and one training `forward`.

    Args:
        segmenter: the Mask2Former segmenter.
        video: the method's `VideoModel` (an `nn.Module`; parameter-free ones add nothing to the state dict).
        method: the `ModelConfig.method` this model implements.
    """

    # The state type is the video model's own; this wrapper only hands it back and forth.
    video: VideoModel[Any]

    def __init__(self, segmenter: Segmenter, video: VideoModel[Any], method: str):
        super().__init__()
        self.segmenter = segmenter
        self.video = video
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
    def is_offline(self) -> bool:
        """True when the video model refines windows of steps (DVIS++ offline)."""
        return self.video.window_refiner is not None

    @property
    def is_clip(self) -> bool:
        """True when the video model decodes whole clips (Video Mask2Former)."""
        return self.video.clip_decoder is not None

    def init_state(self) -> object:
        """The video model's state before the first frame (opaque: hand it to `step`)."""
        return self.video.init_state()

    def step(self, images: Tensor, state: object) -> tuple[ModelStep, object]:
        """Segment and track one time step: images [B, 3, H, W] float 0-255 (B videos, one frame each)."""
        return self.video.step(self.segmenter, images, state)

    def forward(
        self,
        pixels: Tensor,
        *,
        oma: ObjectMaskedAttention | None = None,
        generator: torch.Generator | None = None,
    ) -> ClipForward:
        """Training forward over clips: pixels [B, T, 3, H, W] normalised and padded (see `Segmenter.normalize`).

        Frozen parts run without gradients; `oma` (Object Masked Attention) masks the DVIS++ cross-attentions
        its config names (see `VideoModel.forward_clip`).
        """
        return self.video.forward_clip(self.segmenter, pixels, oma=oma, generator=generator)

    def refine(
        self,
        steps: Sequence[ModelStep],
        mask_feature_device: torch.device | str | None = None,
        oma: ObjectMaskedAttention | None = None,
    ) -> ClipOutput:
        """Offline refinement of a window of steps (models with a `window_refiner` only).

        `oma` masks the refiner's cross-attention as in training; in eval mode it drops keys only when its
        config asks for `masked_inference` (the MVC paper's Table 6 variant).
        """
        refiner = self.video.window_refiner
        if refiner is None:
            raise ValueError(f"refine: method {self.method!r} is online; only dvis_offline refines windows")
        return refiner.refine_steps(steps, mask_feature_device=mask_feature_device, oma=oma)


def build_model(config: ModelConfig | ExperimentConfig) -> VideoSegmentationModel:
    """A randomly initialised model for `config.method` (`segmenter` is tracked with MinVIS)."""
    model_cfg = config.model if isinstance(config, ExperimentConfig) else config
    segmenter = build_segmenter(model_cfg)
    return VideoSegmentationModel(segmenter, METHODS[model_cfg.method].build(model_cfg), model_cfg.method)


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


def packaged_weights_prefix(config: ExperimentConfig, stage: str) -> str | None:
    """The key prefix, in a `stage` checkpoint of `config`, of backbone weights that come from an installed
    package and stay frozen (`packaged_frozen_prefix`), or None."""
    inner = packaged_frozen_prefix(config.model.backbone)
    name = METHOD_OF_STAGE.get(stage)
    if inner is None or name is None:
        return None
    return ("backbone." if METHODS[name].bare_segmenter else "segmenter.backbone.") + inner


def load_model(
    path: str | Path, expected_stage: str | tuple[str, ...] | None = None, device: torch.device | str = "cpu"
) -> LoadedModel:
    """Load a checkpoint of any stage as a `VideoSegmentationModel` (see the module docstring).

    Raises:
        CheckpointError: corrupt file, unexpected or unknown stage, or weights that do not fit the saved config.
    """
    ckpt = load_checkpoint(path, expected_stage=expected_stage)
    name = METHOD_OF_STAGE.get(ckpt.stage)
    if name is None:
        raise CheckpointError(f"{ckpt.path}: unknown stage {ckpt.stage!r}; expected one of "
                              f"{', '.join(METHOD_OF_STAGE)}")
    config = replace(ckpt.config, model=replace(ckpt.config.model, method=name))
    try:
        model = build_model(config.model)
    except ConfigError as e:
        raise CheckpointError(f"{ckpt.path}: config.json: {e}") from None
    target: nn.Module = model.segmenter if METHODS[name].bare_segmenter else model
    state = ckpt.state_dict
    prefix = packaged_weights_prefix(config, ckpt.stage)
    if prefix and not any(k.startswith(prefix) for k in state):  # left out by export: the package's weights
        state = {**{k: v for k, v in target.state_dict().items() if k.startswith(prefix)}, **state}
    load_weights(target, state, ckpt.path)
    model.to(device).eval()
    return LoadedModel(model, config, ckpt.stage, ckpt.path)
