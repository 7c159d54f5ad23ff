"""The method and stage registries, and every method behind the one `VideoModel` contract."""

from __future__ import annotations

import typing

import pytest
import torch

from vidseg.cli import build_parser
from vidseg.config import ModelMethod, apply_overrides, load_preset_or_file
from vidseg.models.methods import METHOD_OF_STAGE, METHODS, STAGE_NAMES
from vidseg.models.model import build_model
from vidseg.models.video import run_sequence
from vidseg.training.registry import STAGES

# Per method: the preset it runs with here (Local2Global needs its sigmoid head).
PRESETS = {m: "local2global/synthetic_tiny" if m == "l2g" else "mask2former/synthetic_tiny" for m in METHODS}


def _config(method: str):
    overrides = [f"model.method={method}", f"model.reid_head={str(method.startswith('dvis')).lower()}",
                 "model.tracker.num_layers=1", "model.tracker.ffn_dim=64", "model.refiner.num_layers=1",
                 "model.refiner.ffn_dim=64", "data.val_root=''", "data.train_root=''"]
    return apply_overrides(load_preset_or_file(PRESETS[method]), overrides)


def test_config_methods_are_the_registry():
    assert set(typing.get_args(ModelMethod)) == set(METHODS)


def test_stages_come_from_the_method_registry():
    assert set(STAGES) == set(STAGE_NAMES) == {m.stage for m in METHODS.values()}
    assert all(cls.name == name for name, cls in STAGES.items())
    # Every stage's checkpoints load as exactly one method, one trained by that stage.
    assert set(METHOD_OF_STAGE) == set(STAGE_NAMES)
    assert all(METHODS[method].stage == stage for stage, method in METHOD_OF_STAGE.items())
    assert sum(m.restored for m in METHODS.values()) == len(STAGE_NAMES)
    assert all(cls.requires_init in (None, *STAGE_NAMES) for cls in STAGES.values())


def test_cli_stage_choices_are_the_registry(capsys):
    parser = build_parser()
    for stage in STAGE_NAMES:
        assert parser.parse_args(["train", "cfg", "--out", "o", "--stage", stage]).stage == stage
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "cfg", "--out", "o", "--stage", "bogus"])
    assert ", ".join(map(repr, STAGE_NAMES)) in capsys.readouterr().err


@pytest.mark.parametrize("method", list(METHODS))
def test_streaming_steps_equal_the_training_forward(method):
    """`step` frame by frame and `forward` over the clip are the same computation (up to the batched
    segmenter's float reassociation); the capabilities are what the method is."""
    torch.manual_seed(0)
    model = build_model(_config(method)).eval()
    assert model.is_offline == (method == "dvis_offline") and model.is_clip == (method == "video_mask2former")
    frames = [torch.rand(2, 3, 32, 48) * 255 for _ in range(3)]
    with torch.no_grad():
        steps, _ = run_sequence(model.step, frames, model.init_state())
        clip = model(torch.stack([model.segmenter.normalize(f) for f in frames], dim=1))
        if model.is_clip:  # one decoder pass over the whole clip: its own outputs, no per-frame ones
            assert clip.clip is not None and clip.clip.mask_logits.shape[:3] == (2, 3, steps[0].frame.indices.shape[1])
            return
        assert len(clip.frames) == len(steps) == 3
        for step, frame in zip(steps, clip.frames):
            assert step.frame.frame_index == frame.frame_index
            torch.testing.assert_close(frame.class_logits, step.frame.class_logits, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(frame.mask_logits, step.frame.mask_logits, rtol=1e-4, atol=1e-4)
        if model.is_offline:
            refined = model.refine(steps)
            assert clip.clip is not None
            torch.testing.assert_close(clip.clip.class_logits, refined.class_logits, rtol=1e-4, atol=1e-4)
        else:
            with pytest.raises(ValueError, match="online"):
                model.refine(steps)
