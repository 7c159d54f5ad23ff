"""What every backbone promises, plus the frozen-BatchNorm and stage-freezing helpers they share.

Contract: `forward(images)` takes normalised images [B, 3, H, W] of any H, W and returns
`{"res2": [B, C2, ceil(H/4), ceil(W/4)], "res3": [B, C3, ceil(H/8), ceil(W/8)],
"res4": [B, C4, ceil(H/16), ceil(W/16)], "res5": [B, C5, ceil(H/32), ceil(W/32)]}`.
Normalisation is the caller's job: `(rgb_0_255 - pixel_mean) / pixel_std`, with the constants the
backbone's pretrained weights were trained with.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

RES_NAMES = ("res2", "res3", "res4", "res5")
RES_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}

# torchvision / detectron2 ImageNet statistics in 0-255 RGB (ResNet, Swin, tiny_cnn).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class Backbone(nn.Module, abc.ABC):
    """Base class: a module mapping images [B, 3, H, W] to `{res2..res5}` feature maps.

    Attributes:
        out_channels: channels C_l of each output, e.g. `{"res2": 256, ..., "res5": 2048}`.
        out_strides: `{"res2": 4, "res3": 8, "res4": 16, "res5": 32}`.
        pixel_mean, pixel_std: per-channel RGB constants in 0-255 the input must be normalised with.
    """

    out_channels: dict[str, int]
    out_strides: dict[str, int]
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self) -> None:
        super().__init__()
        self.out_strides = dict(RES_STRIDES)  # a copy per instance: callers may treat it as their own

    @abc.abstractmethod
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """[B, 3, H, W] normalised images -> {"res2".."res5": [B, C_l, ceil(H/s), ceil(W/s)]}."""

    def freeze_stages(self, freeze_at: int) -> None:
        """Freeze the stem (1) and stem + the first k-1 stages (k); 0 freezes nothing.

        Frozen stages stop taking gradients and their BatchNorms become `FrozenBatchNorm2d`, so their
        statistics cannot drift in training mode either.
        """
        stages = self.stages()
        if freeze_at < 0 or freeze_at > len(stages):
            raise ValueError(f"freeze_at={freeze_at} outside 0..{len(stages)}")
        for names in stages[:freeze_at]:
            for name in names:
                module = self.get_submodule(name)
                for p in module.parameters():
                    p.requires_grad_(False)
                parent, _, leaf = name.rpartition(".")
                setattr(self.get_submodule(parent) if parent else self, leaf, convert_frozen_batchnorm(module))

    @abc.abstractmethod
    def stages(self) -> list[list[str]]:
        """Dotted submodule names per freezing unit: stem, res2 stage, res3, res4, res5 stage."""


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters, all stored as buffers.

    Equivalent to `nn.BatchNorm2d` in eval mode, in every mode; it has no parameters, so nothing trains.
    Loads BatchNorm2d state dicts directly (`num_batches_tracked` is accepted and dropped).
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        # Fold into one per-channel scale and shift: cheaper than F.batch_norm and works for any dtype.
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.to(x.dtype)[None, :, None, None] + shift.to(x.dtype)[None, :, None, None]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        # A BatchNorm2d checkpoint carries a step counter we have no use for.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def convert_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every `nn.BatchNorm2d` inside `module` (in place) by a `FrozenBatchNorm2d` with its values.

    Returns the module itself, or the new frozen module when `module` is a BatchNorm2d.
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.track_running_stats:
            # Set whenever running stats are tracked; the check narrows the Optional buffers.
            assert module.running_mean is not None and module.running_var is not None
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = convert_frozen_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def norm2d(channels: int, frozen: bool, eps: float = 1e-5) -> nn.Module:
    """BatchNorm2d, or its frozen twin."""
    return FrozenBatchNorm2d(channels, eps) if frozen else nn.BatchNorm2d(channels, eps=eps)


def check_output_sizes(features: dict[str, Tensor], height: int, width: int) -> None:
    """Assert the contract's sizes (used by tests): res_s is [B, C, ceil(H/s), ceil(W/s)]."""
    for name in RES_NAMES:
        s = RES_STRIDES[name]
        got = tuple(features[name].shape[-2:])
        want = (-(-height // s), -(-width // s))
        if got != want:
            raise AssertionError(f"{name}: got {got}, expected {want} for input {height}x{width}")


def read_state_dict(path: str) -> dict[str, Tensor]:
    """Tensors of a local weights file (`.safetensors`, or a torch pickle read with `weights_only`).

    A checkpoint that wraps its weights in `{"state_dict": ...}` or `{"model": ...}` is unwrapped.
    Raises `CheckpointError` naming the file when it cannot be read.
    """
    from vidseg.errors import CheckpointError

    data: object
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            data = load_file(path)
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read backbone weights ({e})") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(data).__name__}")
    return data


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability `rate`, rescale the rest."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep
