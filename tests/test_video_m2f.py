"""Video Mask2Former (issue 22): golden fixture (E) `video_m2f_r50_ytvis19` through the converter, the 3-D
position embedding, windowed inference, `vidseg segment`, and the `video_mask2former` training stage."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from ddp import torchrun_vidseg
from parity import fixture, official_state_dict, tensors
from test_official_parity import LOGIT_TOL, MASK_TOL, _check_vis, _close, _predict, _write_pkl

from vidseg.cli import main
from vidseg.config import apply_overrides, load_preset_or_file
from vidseg.data.build import build_clip_dataset
from vidseg.data.clips import collate_clips
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.errors import CheckpointError
from vidseg.inference.predictor import VideoPredictor
from vidseg.models.model import load_model
from vidseg.models.position import sine_position_embedding_2d, sine_position_embedding_3d
from vidseg.models.video_mask2former import window_bounds
from vidseg.published import convert_weights
from vidseg.training.video_mask2former import VideoMask2FormerStage

FOLDER = "video_m2f_r50_ytvis19"
# Float32 mask logits: the fixture README's tolerance (sections 5 and 9.3, |x| <= 70). Measured 9e-5 - 1.4e-4:
# the pixel decoder's float32 noise (mask features 4e-6), already 9e-5 at prediction 0, before any decoder layer.
MASK_F32_TOL, MASK_F16_TOL, PE_TOL = MASK_TOL, 0.05, 1e-6


@pytest.fixture(scope="module")
def model_e(tmp_path_factory):
    """(E) as an official model-zoo `.pkl` (legacy pixel-decoder names), converted by the CLI."""
    folder = fixture(FOLDER)
    tmp = tmp_path_factory.mktemp("e")
    _write_pkl(official_state_dict(folder), tmp / "model_final_34112b.pkl", legacy=True)
    args = ["convert-weights", "--from", "detectron2", str(tmp / "model_final_34112b.pkl"), "--model",
            "video_mask2former", "--dataset", "ytvis19", "--out", str(tmp / "ckpt")]
    assert main(args) == 0
    return tmp / "ckpt", tensors(folder / "inputs.safetensors"), tensors(folder / "outputs.safetensors")


def test_3d_position_embedding_matches_official() -> None:
    out = tensors(fixture(FOLDER) / "outputs.safetensors")["segmenter.pos_embed_3d.level0"]  # [T, 256, 3, 4]
    ours = sine_position_embedding_3d(5, 3, 4, 128)
    _close(ours, out, PE_TOL, "3-D position embedding")
    # The spatial part is the image decoder's 2-D embedding; the time term is added and normalised by T.
    time = ours - sine_position_embedding_2d(3, 4, 128)
    assert torch.allclose(time[:, :, :1, :1].expand_as(time), time, atol=1e-6)
    assert not torch.allclose(sine_position_embedding_3d(2, 3, 4, 128)[0], ours[0])


def test_window_bounds() -> None:
    assert window_bounds(5, 100) == [(0, 5)]
    assert window_bounds(5, 2) == [(0, 2), (2, 3), (3, 5)]
    assert window_bounds(101, 100) == [(0, 50), (50, 101)]
    assert window_bounds(0, 3) == []


def test_e_converted_checkpoint_is_a_clip_model(model_e) -> None:
    ckpt, _, _ = model_e
    loaded = load_model(ckpt)
    assert loaded.stage == "video_mask2former" and loaded.model.method == "video_mask2former"
    assert loaded.model.is_clip and loaded.config.model.num_classes == 40
    inf = loaded.config.inference
    assert (inf.task, inf.test_topk, inf.min_size, inf.max_size) == ("vis", 10, 360, 1333)


def test_e_clip_decoder_matches_official(model_e) -> None:
    ckpt, inputs, out = model_e
    model = load_model(ckpt).model
    seg, video = model.segmenter, model.video
    frames = inputs["frames.rgb_uint8"]
    pixels = seg.normalize(seg.frames_to_batch(frames.numpy()))
    _close(pixels, inputs["frames.pixels"], 1e-6, "normalised pixels")
    with torch.no_grad():
        features = video.encode(seg, pixels[None])
        final = video.decode(seg, features).predictions
        seg.decoder.train()  # training mode (no dropout: the same values) returns every layer's prediction
        decoded = video.decode(seg, features)
    seg.decoder.eval()
    assert len(final) == 1 and torch.equal(final[0].class_logits, decoded.predictions[-1].class_logits)
    _close(final[0].mask_logits, decoded.predictions[-1].mask_logits, 1e-5, "eval-mode mask tubes")
    multi_scale, mask_features = features
    _close(mask_features[0, :, ::32], out["pixel_decoder.mask_features.ch_step32"], 1e-4, "mask features")
    for level in range(3):
        _close(multi_scale[level][0, :, ::32], out[f"pixel_decoder.multi_scale.{level}.ch_step32"], 1e-4,
               f"multi-scale level {level}")
    preds = decoded.predictions
    assert len(preds) == 10
    _close(torch.stack([p.class_logits[0] for p in preds]), out["segmenter.class_logits.layers"], LOGIT_TOL,
           "class logits, all predictions")
    _close(preds[-1].class_logits[0], out["segmenter.class_logits"], LOGIT_TOL, "final class logits")
    _close(torch.stack([p.mask_logits[0, ::50] for p in preds]), out["segmenter.mask_logits.layers.q_step50"],
           MASK_F32_TOL, "mask tubes (float32, queries 0 and 50)")
    _close(torch.stack([p.mask_logits[0] for p in preds]), out["segmenter.mask_logits.layers.f16"],
           MASK_F16_TOL, "mask tubes (float16 copy, all queries)")


def test_e_clip_decoder_matches_official_in_float64(model_e) -> None:
    """The issue's bound, 1e-4 on every prediction's class and mask logits: our run in float64 carries no
    rounding of its own, so what is left is the golden's float32 noise (mask logits 6.9e-5 - 9.5e-5 measured).
    In float32 the two noises add up to 1.4e-4 (the test above, at the fixture README's 5e-4)."""
    ckpt, inputs, out = model_e
    model = load_model(ckpt).model.double()
    seg, video = model.segmenter, model.video
    seg.decoder.train()  # every layer's prediction (no dropout: the same values as eval mode)
    with torch.no_grad():
        preds = video.decode(seg, video.encode(seg, inputs["frames.pixels"].double()[None])).predictions
    _close(torch.stack([p.class_logits[0] for p in preds]), out["segmenter.class_logits.layers"], LOGIT_TOL,
           "class logits, all predictions (float64)")
    _close(torch.stack([p.mask_logits[0, ::50] for p in preds]), out["segmenter.mask_logits.layers.q_step50"],
           LOGIT_TOL, "mask tubes, all predictions (float64, queries 0 and 50)")


def test_e_vis_result_matches_official(model_e) -> None:
    ckpt, inputs, out = model_e
    results = _predict(ckpt, inputs["frames.rgb_uint8"], "vis")
    assert len(results) == 5
    _check_vis(results, out, "post.", 40)


def test_e_windowed_clips_match_queries_between_windows(model_e) -> None:
    """Long videos: clips of at most `clip_max_frames` frames; one window >= the video is the official pass."""
    ckpt, inputs, out = model_e
    frames = inputs["frames.rgb_uint8"]
    whole = _predict(ckpt, frames, "vis", clip_max_frames=5)
    _check_vis(whole, out, "post.", 40)
    windowed = _predict(ckpt, frames, "vis", clip_max_frames=2)
    assert [r.frame_index for r in windowed] == [0, 1, 2, 3, 4]
    ids = [r.track_ids.tolist() for r in windowed]
    assert all(i == ids[0] for i in ids) and len(ids[0]) == 10  # the same top-10 tracks in every frame


def test_e_streaming_and_segment_cli(model_e, tmp_path) -> None:
    from PIL import Image

    ckpt, inputs, _ = model_e
    loaded = load_model(ckpt)
    config = replace(loaded.config, inference=replace(loaded.config.inference, min_size=None, max_size=None))
    predictor = VideoPredictor(loaded.model, config, task="vis", device="cpu")
    assert predictor.mode == "online"
    streamed = list(predictor.run(list(inputs["frames.rgb_uint8"][:3].numpy())))
    assert [r.frame_index for r in streamed] == [0, 1, 2]
    clip = tmp_path / "clip"
    clip.mkdir()
    for t, frame in enumerate(inputs["frames.rgb_uint8"][:3].numpy()):
        Image.fromarray(frame).save(clip / f"{t:05d}.png")
    assert main(["segment", str(clip), "--weights", str(ckpt), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["stage"] == "video_mask2former"
    assert (tmp_path / "out" / "results.json").is_file()


def test_model_option_refuses_dvis_checkpoints(tmp_path) -> None:
    state = official_state_dict(fixture("dvis_plus_r50_ytvis19_offline"), drop_prefixes=("refiner.", "tracker."))
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}}, tmp_path / "seg.pth")
    with pytest.raises(CheckpointError, match="re-id head"):
        convert_weights("dvis_plus", tmp_path / "seg.pth", tmp_path / "out", model="video_mask2former")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------
# Training stage

TINY = [
    "model.pixel_decoder.hidden_dim=32", "model.pixel_decoder.mask_dim=32", "model.pixel_decoder.ffn_dim=64",
    "model.pixel_decoder.num_layers=1", "model.decoder.hidden_dim=32", "model.decoder.ffn_dim=64",
    "model.decoder.num_queries=8", "model.decoder.num_layers=2", "loss.num_points=256", "data.min_size=[64]",
    "data.max_size=96", "data.num_workers=0", "data.num_frames=2", "optim.batch_size=2",
    "model.method=video_mask2former",
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, 3, 8, 64, 96, formats=("vipseg",), seed=3)
    return out / "vipseg"


def test_training_stage_loss_decreases(synth) -> None:
    cfg = apply_overrides(load_preset_or_file("mask2former/synthetic_tiny"),
                          TINY + [f"data.train_root={synth}", f"data.val_root={synth}"])
    torch.manual_seed(0)
    stage = VideoMask2FormerStage.from_config(cfg)
    ds = build_clip_dataset(cfg.data, "panoptic", train=True, seed=0)
    batch = collate_clips([ds[0], ds[1]])
    assert batch.frames.shape[1] == 2
    opt = torch.optim.AdamW(stage.model.parameters(), lr=1e-3)
    stage.model.train()
    losses = []
    for i in range(25):
        out = stage.loss(stage.model, batch, i)
        opt.zero_grad()
        out.loss.backward()
        grads = [p.grad for p in stage.model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)  # every parameter is trained
        opt.step()
        losses.append(out.loss.item())
    assert {"loss_class", "loss_mask", "loss_dice"} <= set(out.terms)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


@pytest.mark.slow
def test_training_stage_under_torchrun(synth, tmp_path) -> None:
    out = tmp_path / "run"
    overrides = TINY + [f"data.train_root={synth}", f"data.val_root={synth}", "optim.max_iters=2"]
    torchrun_vidseg(["train", "mask2former/synthetic_tiny", "--stage", "video_mask2former", "--out", str(out),
                     "--device", "cpu", "--checkpoint-every", "100", *[a for o in overrides for a in ("--set", o)]])
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r for r in logs if "loss" in r]
    assert load_model(sorted(out.glob("ckpt_*"))[-1]).stage == "video_mask2former"
