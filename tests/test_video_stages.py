"""Tracker and refiner training stages (DVIS++), with MVC and OMA switched on and off."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vidseg.config import apply_overrides, load_preset_or_file
from vidseg.data.build import build_clip_dataset
from vidseg.data.clips import FrameTarget, collate_clips
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.errors import CheckpointError
from vidseg.io.checkpoint import load_checkpoint, save_checkpoint
from vidseg.losses.criterion import SetCriterion
from vidseg.losses.matcher import Matching
from vidseg.losses.targets import ClipTargets, FrameTargets
from vidseg.models.model import build_model, load_model
from vidseg.models.outputs import LayerPrediction
from vidseg.training.stages import (
    FramePredictions,
    RefinerStage,
    SegmenterStage,
    TrackerStage,
    clip_targets,
    criterion_loss,
    load_previous_stage,
    mvc_frame_loss,
    volume_criterion,
    volume_prediction,
    volume_targets,
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
    for i in range(steps):
        out = stage.loss(stage.model, batch, i)
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
    assert stage.guided(4) and not stage.guided(5)


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


# ---------------------------------------------------------------------------------------------------------
# Issue 17: volume loss, aux re-matching, contrastive switches, re-id training, --init handling


def test_refiner_volume_dice_is_one_dice_over_the_stacked_clip():
    # 1 instance, T=2 frames of 2x2, logits 0 (s = 0.5 everywhere); the target fills frame 0, frame 1 empty.
    logits = torch.zeros(1, 2, 1, 2, 2)  # [B, T, Q, h, w]
    logits[0, 1] = 0.0
    clip = ClipTargets(torch.tensor([0]), torch.stack([torch.ones(2, 2), torch.zeros(2, 2)])[None])
    pred = volume_prediction(torch.zeros(1, 1, 2), logits)
    target = volume_targets(clip)
    assert pred.mask_logits.shape == (1, 1, 4, 2) and target.masks.shape == (1, 4, 2)
    crit = SetCriterion(num_classes=1, matcher=None, num_points=None, num_masks_reducer=lambda x: x)
    bce, dice = crit.mask_losses(pred.mask_logits, [target], [Matching(torch.tensor([0]), torch.tensor([0]))], 1.0)
    # volume: sum(s t) = 2, sum(s) = 4, sum(t) = 4 -> 1 - 5/9 (per-frame dice would give (2/7 + 2/3) / 2)
    assert math.isclose(dice.item(), 4 / 9, rel_tol=1e-6)
    assert math.isclose(bce.item(), math.log(2), rel_tol=1e-6)
    # frames are stacked top to bottom in time order
    ordered = torch.arange(8.0).view(1, 2, 1, 2, 2)
    assert volume_prediction(torch.zeros(1, 1, 2), ordered).mask_logits.flatten().tolist() == list(range(8))
    assert volume_criterion(crit, 3).num_points is None
    crit.num_points = 100
    assert volume_criterion(crit, 3).num_points == 300 and crit.num_points == 100


def test_criterion_aux_matching_overrides_the_shared_matching_per_aux_set():
    torch.manual_seed(0)
    crit = SetCriterion(num_classes=2, matcher=None, num_points=None, num_masks_reducer=lambda x: x)
    targets = [FrameTargets(torch.tensor([1]), torch.rand(1, 8, 8) > 0.5)]
    final = LayerPrediction(torch.randn(1, 3, 3), torch.randn(1, 3, 8, 8))
    aux = [LayerPrediction(torch.randn(1, 3, 3), torch.randn(1, 3, 8, 8))]
    shared = [Matching(torch.tensor([0]), torch.tensor([0]))]
    own = [Matching(torch.tensor([2]), torch.tensor([0]))]
    out = crit(final, targets, shared, aux=aux, aux_matching=[own])
    expected = crit.layer_losses(aux[0], targets, own, 1.0)
    assert torch.equal(out.aux[0].dice_loss, expected.dice_loss)
    assert not torch.equal(out.aux[0].dice_loss, crit.layer_losses(aux[0], targets, shared, 1.0).dice_loss)


@pytest.mark.parametrize("stage_name", ["tracker", "refiner"])
def test_video_stages_rematch_aux_layers_only_after_guided_phase(synth, stage_name, monkeypatch):
    import vidseg.training.stages as stages

    preset = f"dvis_plus/synthetic_tiny_{stage_name}"
    cls = {"tracker": TrackerStage, "refiner": RefinerStage}[stage_name]
    cfg = _config(synth, preset, "data.num_frames=3", "loss.guided_matching=0.5")
    stage = cls.from_config(cfg)
    seen = []
    real = stages.criterion_loss
    monkeypatch.setattr(stages, "criterion_loss", lambda c, p: seen.append(p) or real(c, p))
    batch = _batch(cfg)
    stage.loss(stage.model, batch, 0)
    assert seen[-1].aux_matching is None
    stage.loss(stage.model, batch, 9)
    preds = seen[-1]
    assert preds.aux and len(preds.aux_matching) == len(preds.aux)
    assert all(len(m) == len(preds.targets) for m in preds.aux_matching)


@pytest.mark.parametrize(("tracker_cl", "refiner_cl", "on"), [(True, True, True), (True, False, False),
                                                              (False, True, False)])
def test_tracker_contrastive_loss_needs_both_use_cl_switches(synth, tracker_cl, refiner_cl, on):
    cfg = _config(synth, "dvis_plus/synthetic_tiny_tracker", "data.num_frames=3",
                  f"model.tracker.use_cl={str(tracker_cl).lower()}", f"model.refiner.use_cl={str(refiner_cl).lower()}")
    stage = TrackerStage.from_config(cfg)
    out = stage.loss(stage.model, _batch(cfg), 0)
    assert ("loss_reid" in out.terms) == on


def test_refiner_contrastive_loss_fills_the_class_memory_and_follows_its_switch(synth):
    cfg = _config(synth, "dvis_plus/synthetic_tiny_refiner", "data.num_frames=3", "loss.contrastive_aux_weight=3")
    stage = RefinerStage.from_config(cfg)
    out = stage.loss(stage.model, _batch(cfg), 0)
    assert {"loss_reid", "loss_aux_reid"} <= set(out.terms) and stage.memory.entries
    off = RefinerStage.from_config(apply_overrides(cfg, ["model.refiner.use_cl=false"]))
    assert "loss_reid" not in off.loss(off.model, _batch(cfg), 0).terms and not off.memory.entries


def test_segmenter_stage_trains_the_reid_head(synth):
    cfg = _config(synth, "mask2former/synthetic_tiny", "data.num_frames=2", "model.reid_head=true")
    stage = SegmenterStage.from_config(cfg)
    out = stage.loss(stage.model, _batch(cfg), 0)
    assert "loss_reid" in out.terms
    out.loss.backward()
    grads = [p.grad for p in stage.model.reid_head.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_init_skip_mismatched_reinitialises_other_k_and_missing_reid_head(synth, tmp_path, caplog):
    coco = _config(synth, "mask2former/synthetic_tiny", "model.num_classes=3")
    path = _segmenter_ckpt(coco, tmp_path)
    cfg = _config(synth, "mask2former/synthetic_tiny", "model.reid_head=true")
    with pytest.raises(CheckpointError, match="weights do not fit"):
        SegmenterStage.from_config(cfg, path)
    with caplog.at_level("WARNING"):
        stage = SegmenterStage.from_config(apply_overrides(cfg, ["optim.init_skip_mismatched=true"]), path)
    lines = [r.getMessage() for r in caplog.records if "re-initialised" in r.getMessage()]
    assert len(lines) == 1 and "class_head" in lines[0] and "reid_head" in lines[0]
    saved = load_checkpoint(path).state_dict
    own = stage.model.state_dict()
    same = [k for k in saved if saved[k].shape == own[k].shape]
    assert same and all(torch.equal(saved[k], own[k]) for k in same)
    # fine-tuning: a segmenter checkpoint of the same architecture loads strictly into a segmenter stage
    ft = save_checkpoint(tmp_path / "ft", stage.model.state_dict(), cfg, "segmenter", 1)
    again = SegmenterStage.from_config(cfg, ft)
    assert all(torch.equal(v, own[k]) for k, v in again.model.state_dict().items())


def test_previous_stage_backbone_check_ignores_weights_path(synth, tmp_path):
    cfg = _config(synth, "dvis_plus/synthetic_tiny_tracker")
    seg_cfg = apply_overrides(cfg, ["model.backbone.weights=/somewhere/R-50.pth"])
    TrackerStage.from_config(cfg, _segmenter_ckpt(seg_cfg, tmp_path))
    other = apply_overrides(cfg, ["model.backbone.name=resnet50"])
    with pytest.raises(CheckpointError, match="model.backbone"):
        load_previous_stage(other, tmp_path / "seg", "segmenter")
