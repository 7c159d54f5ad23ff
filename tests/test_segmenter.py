"""Segmenter: tiny-config forward/backward, input normalisation and padding, frame batching, heads."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vidseg.config import BackboneConfig, DecoderConfig, ModelConfig, PixelDecoderConfig
from vidseg.models.segmenter import Segmenter, build_segmenter

TINY = ModelConfig(
    backbone=BackboneConfig(name="tiny_cnn", frozen_bn=False),
    pixel_decoder=PixelDecoderConfig(hidden_dim=32, mask_dim=16, num_layers=2, num_heads=4, num_points=2, ffn_dim=64),
    decoder=DecoderConfig(hidden_dim=32, num_queries=5, num_layers=3, num_heads=4, ffn_dim=64),
    num_classes=3,
)


def _tiny(**changes) -> Segmenter:
    torch.manual_seed(0)
    return build_segmenter(dataclasses.replace(TINY, **changes))


def test_forward_backward_tiny_config():
    model = _tiny(reid_head=True).train()
    images = torch.rand(2, 3, 70, 90) * 255
    out = model(images)
    # 70x90 is padded to 96x96; masks at stride 4.
    assert out.class_logits.shape == (2, 5, 4)  # K + 1 with softmax
    assert out.mask_logits.shape == (2, 5, 24, 24)
    assert len(out.aux) == 3  # initial queries + all layers but the last
    assert out.queries.shape == out.raw_queries.shape == out.reid_embeddings.shape == (2, 5, 32)
    assert out.mask_features.shape == (2, 16, 24, 24)
    assert [tuple(m.shape[-2:]) for m in out.memory] == [(3, 3), (6, 6), (12, 12)]
    loss = out.class_logits.square().mean() + out.mask_logits.square().mean() + out.reid_embeddings.square().mean()
    loss = loss + sum(a.class_logits.square().mean() + a.mask_logits.square().mean() for a in out.aux)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []


def test_sigmoid_head_and_no_reid():
    out = _tiny(classification="sigmoid")(torch.rand(1, 3, 64, 64) * 255)
    assert out.class_logits.shape == (1, 5, 3)
    assert out.reid_embeddings is None


def test_normalisation_and_padding():
    model = _tiny().eval()
    images = torch.rand(1, 3, 50, 70) * 255
    x = model.normalize(images)
    assert x.shape == (1, 3, 64, 96)
    mean = torch.tensor(model.backbone.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.backbone.pixel_std).view(1, 3, 1, 1)
    assert torch.allclose(x[..., :50, :70], (images - mean) / std, atol=1e-6)
    assert (x[..., 50:, :] == 0).all() and (x[..., :, 70:] == 0).all()
    with torch.no_grad():
        a = model(images)
        b = model.forward_normalized(x)
    assert torch.equal(a.mask_logits, b.mask_logits)
    # uint8 input is accepted as 0-255.
    with torch.no_grad():
        c = model(images.round().to(torch.uint8))
        d = model(images.round())
    assert torch.allclose(c.mask_logits, d.mask_logits)
    assert "pixel_mean" not in model.state_dict()


def test_frames_to_batch_pads_with_the_mean():
    model = _tiny().eval()
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    batch = model.frames_to_batch([big, small])
    assert batch.shape == (2, 3, 70, 90) and batch.dtype == torch.float32
    assert torch.equal(batch[1, :, :40, :50], torch.from_numpy(small).permute(2, 0, 1).float())
    assert torch.allclose(model.normalize(batch)[1, :, 40:], torch.zeros(1))
    with torch.no_grad():
        together = model(batch)
        alone = model(model.frames_to_batch(big))
    assert torch.allclose(together.mask_logits[:1], alone.mask_logits, atol=1e-4)
    assert model.frames_to_batch(np.stack([big, big])).shape == (2, 3, 70, 90)
    with pytest.raises(ValueError):
        model.frames_to_batch([big[..., 0]])


def test_decoder_hooks_pass_through():
    model = _tiny().eval()
    images = torch.rand(1, 3, 64, 64) * 255
    content = torch.randn(1, 7, 32)
    seen = []

    def pos(layer: int, masks: torch.Tensor) -> torch.Tensor:
        seen.append(layer)
        return torch.zeros(1, 7, 32)

    with torch.no_grad():
        out = model(images, query_content=content, query_pos=torch.zeros(1, 7, 32), pos_callback=pos)
    assert out.mask_logits.shape[:2] == (1, 7) and seen == [0, 1, 2]


def test_bfloat16_runs_close_to_float32():
    model = _tiny().eval()
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        ref = model(images).mask_logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(images).mask_logits
        cast = model.to(torch.bfloat16)(images).mask_logits
    for out in (auto, cast):
        assert out.dtype == torch.bfloat16
        assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_build_resnet50_segmenter_shapes():
    model = build_segmenter(ModelConfig(backbone=BackboneConfig(name="resnet50"), num_classes=7)).eval()
    assert model.pixel_decoder.input_proj[0][0].in_channels == 2048
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 96) * 255)
    assert out.class_logits.shape == (1, 100, 8) and out.mask_logits.shape == (1, 100, 16, 24)


_RSS_SCRIPT = """
import resource, torch
from vidseg.config import ModelConfig, BackboneConfig
from vidseg.models.segmenter import build_segmenter
torch.set_num_threads(2)
model = build_segmenter(ModelConfig(backbone=BackboneConfig(name="resnet50"))).eval()
with torch.inference_mode():
    out = model(torch.rand(1, 3, 1080, 1920) * 255)
assert out.mask_logits.shape == (1, 100, 272, 480)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_r50_1080p_frame_fits_in_8gb_on_cpu():
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT], capture_output=True, text=True, env=env, timeout=600, check=True
    )
    peak_kib = int(result.stdout.strip().splitlines()[-1])
    print(f"peak RSS {peak_kib / 2**20:.2f} GiB")
    assert peak_kib < 8 * 2**20
