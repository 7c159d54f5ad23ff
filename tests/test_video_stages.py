"""Tracker and refiner training stages (DVIS++), with MVC and OMA switched on and off."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidseg.config import apply_overrides, load_preset_or_file
from vidseg.data.build import build_clip_dataset
from vidseg.data.clips import FrameTarget, collate_clips
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.errors import CheckpointError
from vidseg.losses.contrastive import reference_contrastive_loss
from vidseg.losses.criterion import SetCriterion
from vidseg.losses.targets import FrameTargets
from vidseg.models.model import build_model, load_model
from vidseg.models.outputs import LayerPrediction
from vidseg.training.checkpoint import save_checkpoint
from vidseg.training.stages import (
    FramePredictions,
    RefinerStage,
    SegmenterStage,
    TrackerStage,
    clip_targets,
    criterion_loss,
    mvc_frame_loss,
)

TINY = [
    "model.pixel_decoder.hidden_dim=32", "model.pixel_decoder.mask_dim=32", "model.pixel_decoder.ffn_dim=64",
    "model.pixel_decoder.num_layers=1", "model.decoder.hidden_dim=32", "model.decoder.ffn_dim=64",
    "model.decoder.num_queries=8", "model.decoder.num_layers=2", "model.tracker.num_layers=2",
    "model.tracker.ffn_dim=64", "model.refiner.num_layers=2", "model.refiner.ffn_dim=64",
    "loss.num_points=256", "data.min_size=[64]", "data.max_size=96", "data.num_workers=0",
    "optim.batch_size=2", "optim.max_iters=10",
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, 3, 8, 64, 96, formats=("vipseg",), seed=3)
    return out


def _config(synth, preset: str, *extra: str):
    roots = [f"data.train_root={synth / 'vipseg'}", f"data.val_root={synth / 'vipseg'}"]
    return apply_overrides(load_preset_or_file(preset), TINY + roots + list(extra))


def _batch(cfg, seed=0):
    ds = build_clip_dataset(cfg.data, "panoptic", train=True, seed=seed)
    return collate_clips([ds[0], ds[1]])


def _segmenter_ckpt(cfg, tmp_path):
    torch.manual_seed(0)
    seg = SegmenterStage.from_config(cfg).model
    return save_checkpoint(tmp_path / "seg", seg.state_dict(), cfg, "segmenter", 100)


def _params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _train_steps(stage, batch, steps=2):
    opt = torch.optim.AdamW([p for p in stage.model.parameters() if p.requires_grad], lr=1e-3)
    stage.model.train()
    losses = []
    for _ in range(steps):
        out = stage.loss(stage.model, batch)
        opt.zero_grad()
        out.loss.backward()
        grads = [p.grad for p in stage.model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        opt.step()
        losses.append(out.loss.item())
    return losses


def test_clip_targets_drop_instances_never_present():
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    frames = []
    for t in range(2):
        m = masks.clone() if t == 0 else torch.zeros_like(masks)
        if t == 1:
            m[2, 1:3] = True
        present = m.flatten(1).any(1)
        frames.append(FrameTarget(torch.tensor([1, 2, 3]), torch.tensor([10, 20, 30]), m, present,
                                  torch.zeros(4, 4, dtype=torch.bool)))
    clip = clip_targets(frames)
    assert clip.instance_ids.tolist() == [10, 30]
    assert clip.present.tolist() == [[True, False], [False, True]]
    assert clip.masks.shape == (2, 2, 4, 4)


def test_tracker_stage_trains_tracker_only_and_checkpoint_loads_as_dvis_online(synth, tmp_path):
    cfg = _config(synth, "dvis_plus/synthetic_tiny_tracker")
    stage = TrackerStage.from_config(cfg, _segmenter_ckpt(cfg, tmp_path))
    batch = _batch(cfg)
    before = _params(stage.model)
    stage.model.train()
    assert not stage.model.segmenter.training and stage.model.video.training
    _train_steps(stage, batch)
    after = _params(stage.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("video.tracker.") for k in changed)
    path = save_checkpoint(tmp_path / "trk", stage.model.state_dict(), cfg, "tracker", 2)
    loaded = load_model(path)
    assert loaded.model.method == "dvis_online" and not loaded.model.training
    with pytest.raises(CheckpointError, match="stage 'tracker', expected 'segmenter'"):
        TrackerStage.from_config(cfg, path)


def test_refiner_stage_freezes_segmenter_and_tracker(synth, tmp_path):
    tcfg = _config(synth, "dvis_plus/synthetic_tiny_tracker")
    torch.manual_seed(1)
    tracker_model = build_model(tcfg)
    trk = save_checkpoint(tmp_path / "trk", tracker_model.state_dict(), tcfg, "tracker", 5)
    cfg = _config(synth, "dvis_plus/synthetic_tiny_refiner", "data.num_frames=6", "oma.enabled=true")
    stage = RefinerStage.from_config(cfg, trk)
    for k, v in stage.model.video.online.state_dict().items():
        assert torch.equal(v, tracker_model.video.state_dict()[k])
    before = _params(stage.model)
    _train_steps(stage, _batch(cfg))
    after = _params(stage.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("video.refiner.") for k in changed)
    with pytest.raises(CheckpointError, match="expected 'tracker'"):
        RefinerStage.from_config(cfg, _segmenter_ckpt(tcfg, tmp_path))


def test_init_with_another_architecture_is_a_clear_error(synth, tmp_path):
    cfg = _config(synth, "dvis_plus/synthetic_tiny_tracker")
    ckpt = _segmenter_ckpt(cfg, tmp_path)
    other = apply_overrides(cfg, ["model.decoder.num_queries=6"])
    with pytest.raises(CheckpointError, match="model.decoder"):
        TrackerStage.from_config(other, ckpt)


def test_guided_matching_switches_at_the_configured_fraction(synth, tmp_path):
    cfg = _config(synth, "dvis_plus/synthetic_tiny_tracker", "loss.guided_matching=0.5")
    stage = TrackerStage.from_config(cfg)
    stage.iteration = 4
    assert stage.guided
    stage.iteration = 5
    assert not stage.guided


@pytest.mark.parametrize("stage_name", ["segmenter", "tracker", "refiner"])
def test_mvc_and_oma_add_no_parameters_and_keep_gradients_finite(synth, stage_name):
    preset = {"segmenter": "mask2former/synthetic_tiny", "tracker": "dvis_plus/synthetic_tiny_tracker",
              "refiner": "dvis_plus/synthetic_tiny_refiner"}[stage_name]
    cls = {"segmenter": SegmenterStage, "tracker": TrackerStage, "refiner": RefinerStage}[stage_name]
    base = _config(synth, preset, "data.num_frames=3")
    mode = "frame" if stage_name == "segmenter" else "tube"
    on = apply_overrides(base, ["mvc.enabled=true", f"mvc.mode={mode}", "mvc.mask_prob=1.0", "mvc.weight=0.5",
                                "oma.enabled=true", "oma.tracker=true"])
    torch.manual_seed(0)
    plain = cls.from_config(base)
    torch.manual_seed(0)
    masked = cls.from_config(on)
    count = [sum(p.numel() for p in s.model.parameters()) for s in (plain, masked)]
    assert count[0] == count[1]
    batch = _batch(on)
    torch.manual_seed(0)
    _train_steps(masked, batch, steps=1)


def test_mvc_frame_loss_weights_clean_and_masked_frames():
    torch.manual_seed(0)
    crit = SetCriterion(num_classes=2, matcher=None, num_points=None, deep_supervision=False,
                        num_masks_reducer=lambda x: x)
    n = 4
    targets = [FrameTargets(torch.tensor([i % 2]), torch.rand(1, 8, 8) > 0.5) for i in range(n)]
    from vidseg.losses.matcher import Matching

    matching = [Matching(torch.tensor([0]), torch.tensor([0])) for _ in range(n)]
    preds = FramePredictions(LayerPrediction(torch.randn(n, 3, 3), torch.randn(n, 3, 8, 8)), [], targets, matching)
    masked = torch.tensor([False, True, True, False])
    total, _ = mvc_frame_loss(crit, preds, masked, weight=0.25)
    clean, _ = criterion_loss(crit, preds.select([0, 3]))
    hidden, _ = criterion_loss(crit, preds.select([1, 2]))
    assert torch.allclose(total, (2 * clean + 0.25 * 2 * hidden) / 4)
    plain, _ = criterion_loss(crit, preds)
    assert torch.allclose(mvc_frame_loss(crit, preds, masked, weight=1.0)[0], plain)
    assert torch.allclose(mvc_frame_loss(crit, preds, None, weight=0.25)[0], plain)


def test_reference_contrastive_loss_prefers_consistent_references():
    torch.manual_seed(0)
    consistent = torch.eye(3)[None].repeat(3, 1, 1) * 4  # slot s has the same reference in every frame
    swapped = consistent.clone()
    swapped[1] = consistent[1][[1, 0, 2]]  # slots 0 and 1 exchange references at frame 1
    slots = torch.tensor([0, 1, 2])
    present = torch.ones(3, 3, dtype=torch.bool)
    good = reference_contrastive_loss(consistent, slots, present)
    bad = reference_contrastive_loss(swapped, slots, present)
    assert good < 1e-3 < bad
    none = reference_contrastive_loss(consistent.requires_grad_(), slots[:1], present[:1])
    assert none.item() == 0.0 and none.requires_grad


def test_segmenter_stage_checkpoint_loads_with_minvis(synth, tmp_path):
    cfg = _config(synth, "mask2former/synthetic_tiny")
    path = _segmenter_ckpt(cfg, tmp_path)
    loaded = load_model(path)
    assert loaded.model.method == "minvis" and loaded.stage == "segmenter"
    bad = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=3))
    wrong = save_checkpoint(tmp_path / "bad", SegmenterStage.from_config(bad).model.state_dict(), cfg,
                            "segmenter", 1)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_model(wrong)


def test_refine_applies_oma_at_inference_only_for_masked_inference(synth):
    from vidseg.config import OMAConfig
    from vidseg.models.oma import ObjectMaskedAttention

    cfg = _config(synth, "dvis_plus/synthetic_tiny_refiner")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    state = model.init_state()
    steps = []
    with torch.no_grad():
        for _ in range(3):
            step, state = model.step(torch.rand(1, 3, 64, 96) * 255, state)
            steps.append(step)
        plain = model.refine(steps)
        # Threshold 0 makes every key background, so dropping is certain to change something.
        off = ObjectMaskedAttention(OMAConfig(enabled=True, background_threshold=0.0))
        on = ObjectMaskedAttention(OMAConfig(enabled=True, background_threshold=0.0, masked_inference=True))
        assert torch.equal(model.refine(steps, oma=off).class_logits, plain.class_logits)
        torch.manual_seed(1)
        assert not torch.allclose(model.refine(steps, oma=on).class_logits, plain.class_logits)
