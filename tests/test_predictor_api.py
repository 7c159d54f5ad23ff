"""`VideoPredictor` API edges (issue 19): from_pretrained, score_threshold, step after run, a frame size
that changes mid-video, devices and config ranges named by their full key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_predictor import moving_frames, tiny_config

from vidseg.config import DecoderConfig, ExperimentConfig, apply_overrides, parse_yaml
from vidseg.errors import CheckpointError, ConfigError, DataFormatError
from vidseg.inference.predictor import VideoPredictor
from vidseg.io.checkpoint import save_checkpoint
from vidseg.models.model import build_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    cfg = tiny_config("dvis_online")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "trk", build_model(cfg).state_dict(), cfg, "tracker", 1)


def test_from_pretrained_takes_a_checkpoint_path_and_rejects_unknown_names(ckpt, tmp_path):
    predictor = VideoPredictor.from_pretrained(ckpt, device="cpu")
    assert predictor.checkpoint == ckpt and predictor.stage == "tracker"
    with pytest.raises(CheckpointError, match="neither a bundled model"):
        VideoPredictor.from_pretrained(str(tmp_path / "nope"))


def test_score_threshold_drops_low_scoring_objects(ckpt):
    frames = moving_frames(3)
    every = list(VideoPredictor.from_checkpoint(ckpt, device="cpu").run(frames))
    cut = float(sorted(every[0].scores)[len(every[0].scores) // 2])
    kept = list(VideoPredictor.from_checkpoint(ckpt, device="cpu", score_threshold=cut).run(frames))
    for a, b in zip(every, kept):
        assert (b.scores >= cut).all() and len(b.scores) == int((a.scores >= cut).sum())
    assert sum(map(len, (r.masks for r in kept))) < sum(map(len, (r.masks for r in every)))


def test_step_after_run_needs_reset(ckpt):
    predictor = VideoPredictor.from_checkpoint(ckpt, device="cpu")
    frames = moving_frames(2)
    list(predictor.run(frames))
    with pytest.raises(RuntimeError, match="reset"):
        predictor.step(frames[0])
    predictor.reset()
    assert predictor.step(frames[0]).frame_index == 0


def test_online_step_rejects_a_frame_of_another_size(ckpt):
    predictor = VideoPredictor.from_checkpoint(ckpt, device="cpu")
    predictor.step(moving_frames(1)[0])
    with pytest.raises(DataFormatError, match="frame 1"):
        predictor.step(moving_frames(1, h=64, w=64)[0])


@pytest.mark.parametrize("device", ["tpu", "cuda:7"])
def test_unusable_device_is_a_config_error(ckpt, device):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has the device")
    with pytest.raises(ConfigError, match=f"device '{device}'"):
        VideoPredictor.from_checkpoint(ckpt, device=device)


def test_config_ranges_name_the_full_key():
    with pytest.raises(ConfigError, match="^num_layers: must be >= 1, got -3$"):
        DecoderConfig(num_layers=-3)
    with pytest.raises(ConfigError, match="^model.decoder.num_layers: must be >= 1, got -3$"):
        apply_overrides(ExperimentConfig(), ["model.decoder.num_layers=-3"])
    with pytest.raises(ConfigError, match=r"^run.yaml: optim.lr: must be > 0"):
        parse_yaml("optim: {lr: -1}", source="run.yaml")
    with pytest.raises(ConfigError, match=r"inference.object_mask_threshold: must be within \[0, 1\]"):
        apply_overrides(ExperimentConfig(), ["inference.object_mask_threshold=1.5"])
