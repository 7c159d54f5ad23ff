"""MinVIS, DVIS++ online and offline over fake segmenter outputs (the per-frame `track` and the refiner)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from vidseg.config import DecoderConfig, ModelConfig, PixelDecoderConfig, RefinerConfig, TrackerConfig
from vidseg.errors import ConfigError
from vidseg.models.dvis import DVISOffline, DVISOnline, RefinerWindow, tracker_inputs
from vidseg.models.methods import METHODS
from vidseg.models.minvis import MinVIS
from vidseg.models.outputs import SegmenterOutput
from vidseg.models.video import ClipOutput, VideoModel, run_sequence

B, Q, C, K, D, H, W = 2, 6, 8, 3, 8, 4, 5


def fake_output(g: torch.Generator, reid: bool = True) -> SegmenterOutput:
    """Random tensors shaped like one time step of the segmenter for B videos."""
    raw = torch.randn(B, Q, C, generator=g)
    return SegmenterOutput(
        queries=F.layer_norm(raw, (C,)),
        raw_queries=raw,
        class_logits=torch.randn(B, Q, K + 1, generator=g),
        mask_logits=torch.randn(B, Q, H, W, generator=g),
        mask_features=torch.randn(B, D, H, W, generator=g),
        reid_embeddings=torch.randn(B, Q, C, generator=g) if reid else None,
    )


def fake_sequence(t: int, seed: int = 0, reid: bool = True) -> list[SegmenterOutput]:
    g = torch.Generator().manual_seed(seed)
    return [fake_output(g, reid) for _ in range(t)]


def permuted(seg: SegmenterOutput, perm: torch.Tensor) -> SegmenterOutput:
    """The same frame with its queries listed in another order (what a segmenter may well do)."""
    fields = {}
    for f in dataclasses.fields(seg):
        v = getattr(seg, f.name)
        if isinstance(v, torch.Tensor) and f.name != "mask_features":
            v = v[:, perm]
        fields[f.name] = v
    return SegmenterOutput(**fields)


def tiny_config(method: str) -> ModelConfig:
    return ModelConfig(
        pixel_decoder=PixelDecoderConfig(hidden_dim=C, mask_dim=D),
        decoder=DecoderConfig(hidden_dim=C, num_queries=Q),
        num_classes=K,
        reid_head=True,
        method=method,  # type: ignore[arg-type]
        tracker=TrackerConfig(num_layers=2, num_heads=4, ffn_dim=32),
        refiner=RefinerConfig(num_layers=2, num_heads=4, ffn_dim=32, mask_window=2),
    )


def build_video_model(config: ModelConfig) -> VideoModel:
    return METHODS[config.method].build(config)


def run(model, seq, state=None):
    """`track` over a sequence of segmenter outputs (from a fresh state unless one is given)."""
    return run_sequence(model.track, seq, model.init_state() if state is None else state)


def assert_same_frames(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.frame_index == y.frame_index
        assert torch.equal(x.indices, y.indices)
        assert torch.equal(x.class_logits, y.class_logits)
        assert torch.equal(x.mask_logits, y.mask_logits)
        assert torch.equal(x.embeddings, y.embeddings)


# ---------------------------------------------------------------------------------------------------------
# MinVIS


def test_minvis_reorders_predictions_into_stable_slots() -> None:
    g = torch.Generator().manual_seed(1)
    frame0 = fake_output(g)
    perm = torch.randperm(Q, generator=g)
    frame1 = permuted(frame0, perm)
    frames, state = run(MinVIS(), [frame0, frame1])
    assert state.frame_index == 2
    assert [f.frame_index for f in frames] == [0, 1]
    # slot i of frame 1 is frame 0's query i again, with its class and mask
    assert torch.equal(frames[1].class_logits, frame0.class_logits)
    assert torch.equal(frames[1].mask_logits, frame0.mask_logits)
    assert torch.equal(frames[1].indices[0], torch.argsort(perm))


def test_minvis_track_equals_run_and_windows() -> None:
    seq = fake_sequence(7)
    model = MinVIS()
    whole, _ = run(model, seq)
    state = model.init_state()
    steps = []
    for seg in seq:
        out, state = model.track(seg, state)
        steps.append(out)
    first, mid = run(model, seq[:3])
    second, _ = run(model, seq[3:], mid)
    assert_same_frames(whole, steps)
    assert_same_frames(whole, first + second)


# ---------------------------------------------------------------------------------------------------------
# DVIS++ online / offline


def test_tracker_inputs_concatenate_reid() -> None:
    seg = fake_sequence(1)[0]
    raw, normed = tracker_inputs(seg)
    assert raw.shape == normed.shape == (B, Q, 2 * C)
    assert torch.equal(raw[..., :C], seg.raw_queries) and torch.equal(normed[..., :C], seg.queries)
    assert torch.equal(raw[..., C:], seg.reid_embeddings)
    plain = fake_sequence(1, reid=False)[0]
    assert tracker_inputs(plain)[0] is plain.raw_queries


def test_dvis_online_track_equals_run_and_windows() -> None:
    model = build_video_model(tiny_config("dvis_online"))
    assert isinstance(model, DVISOnline)
    model.eval()
    seq = fake_sequence(6, seed=2)
    with torch.no_grad():
        whole, _ = run(model, seq)
        state = model.init_state()
        steps = []
        for seg in seq:
            out, state = model.track(seg, state)
            steps.append(out)
        first, mid = run(model, seq[:2])
        second, end = run(model, seq[2:], mid)
    assert_same_frames(whole, steps)
    assert_same_frames(whole, first + second)
    assert end.frame_index == 6
    assert whole[0].class_logits.shape == (B, Q, K + 1)
    assert whole[0].mask_logits.shape == (B, Q, H, W)
    assert whole[0].embeddings.shape == whole[0].references.shape == (B, Q, 2 * C)


def test_dvis_online_needs_mask_features() -> None:
    model = build_video_model(tiny_config("dvis_online"))
    seg = dataclasses.replace(fake_sequence(1)[0], mask_features=None)
    with pytest.raises(ValueError, match="mask_features"):
        model.track(seg, model.init_state())


def test_dvis_offline_refines_a_window() -> None:
    model = build_video_model(tiny_config("dvis_offline"))
    assert isinstance(model, DVISOffline)
    model.eval()
    seq = fake_sequence(5, seed=3)
    with torch.no_grad():
        frames, _ = run(model.online, seq)
        window = RefinerWindow.from_frames(seq, frames, mask_feature_device="cpu")
        clip = model.refine_window(window)
    assert window.instance_embeds.shape == (B, 5, Q, 2 * C)
    assert window.frame_embeds.shape == (B, 5, Q, 2 * C)
    assert window.mask_features.shape == (B, 5, D, H, W)
    assert clip.frame_indices == [0, 1, 2, 3, 4]
    assert clip.class_logits.shape == (B, Q, K + 1)
    assert clip.mask_logits.shape == (B, 5, Q, H, W)
    assert torch.allclose(clip.online_class_logits, window.online_class_logits.mean(1))
    # Offline probabilities: elementwise max of refiner and tracker probabilities over the K real classes;
    # the no-object column is the refiner's (DVIS++ aux_pred_cls).
    probs = clip.class_probs()
    both = torch.maximum(clip.class_logits.softmax(-1), clip.online_class_logits.softmax(-1))
    assert torch.allclose(probs[..., :-1], both[..., :-1])
    assert torch.allclose(probs[..., -1], clip.class_logits.softmax(-1)[..., -1])


def test_dvis_offline_training_gradients_flow_to_refiner() -> None:
    model = build_video_model(tiny_config("dvis_offline"))
    seq = fake_sequence(3, seed=4)
    model.online.eval()  # the tracker is frozen in the refiner stage
    with torch.no_grad():
        frames, _ = run(model.online, seq)
    window = RefinerWindow.from_frames(seq, frames)
    model.refiner.train()
    clip = model.refine_window(window)
    (clip.class_logits.mean() + clip.mask_logits.mean()).backward()
    assert all(p.grad is not None for p in model.refiner.parameters())
    assert all(p.grad is None for p in model.online.parameters())
    assert len(clip.aux) == 1


def test_class_probs_without_tracker_logits() -> None:
    logits = torch.randn(1, Q, K + 1)
    clip = ClipOutput(logits, None, torch.zeros(1, 1, Q, C), [0])
    assert torch.allclose(clip.class_probs(), logits.softmax(-1))


def test_build_video_model_methods() -> None:
    assert isinstance(build_video_model(tiny_config("minvis")), MinVIS)
    assert isinstance(build_video_model(tiny_config("segmenter")), MinVIS)  # a segmenter is tracked by MinVIS
    online = build_video_model(tiny_config("dvis_online"))
    assert isinstance(online, DVISOnline) and online.tracker.hidden_dim == 2 * C  # re-id doubles the width
    with pytest.raises(ConfigError, match="softmax"):
        build_video_model(dataclasses.replace(tiny_config("dvis_online"), classification="sigmoid"))
