"""Local2Global: the online model (local/global queries, aligner, trajectory PE) and its `l2g` training stage."""

from __future__ import annotations

import dataclasses
import weakref

import pytest
import torch

from vidseg.config import (
    BackboneConfig,
    DecoderConfig,
    ExperimentConfig,
    L2GConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    PixelDecoderConfig,
    apply_overrides,
    load_preset_or_file,
    preset_names,
)
from vidseg.data.clips import ClipBatch, FrameTarget
from vidseg.errors import CheckpointError, ConfigError
from vidseg.io.checkpoint import save_checkpoint
from vidseg.losses.matcher import Matching
from vidseg.losses.targets import ClipTargets
from vidseg.models.boxes import mask_to_box
from vidseg.models.local2global import L2GFrameOutput, L2GState, Local2Global, build_local2global
from vidseg.models.model import VideoSegmentationModel, build_model
from vidseg.models.outputs import LayerPrediction
from vidseg.models.video import ClipForward, run_sequence
from vidseg.training.l2g import L2GStage, appeared_targets
from vidseg.training.optim import build_optimizer

B, Q, C, K, HW = 2, 5, 32, 3, 64

TINY = ModelConfig(
    backbone=BackboneConfig(name="tiny_cnn", frozen_bn=False),
    pixel_decoder=PixelDecoderConfig(hidden_dim=C, mask_dim=16, num_layers=1, num_heads=4, num_points=2, ffn_dim=64),
    decoder=DecoderConfig(hidden_dim=C, num_queries=Q, num_layers=3, num_heads=4, ffn_dim=64),
    num_classes=K,
    classification="sigmoid",
    method="l2g",
    l2g=L2GConfig(aligner_layers=2, aligner_heads=4, aligner_ffn_dim=64),
)


def tiny_model(seed: int = 0, **l2g_changes) -> VideoSegmentationModel:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(TINY, l2g=dataclasses.replace(TINY.l2g, **l2g_changes))
    return build_model(cfg)


def video(t: int, seed: int = 0, b: int = B) -> list[torch.Tensor]:
    """t frames [b, 3, HW, HW] float 0-255."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, 3, HW, HW, generator=g) * 255 for _ in range(t)]


class Capture:
    """Records the positional (and keyword) inputs of every call of a module."""

    def __init__(self, module: torch.nn.Module):
        self.calls: list[tuple[tuple, dict]] = []
        self.handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.calls.append((args, kwargs))

    def remove(self) -> None:
        self.handle.remove()


def run(l2g: Local2Global, segmenter, frames, state: L2GState | None = None):
    """`step` over [B, 3, H, W] frames: (frame outputs, state after the last)."""
    steps, state = run_sequence(lambda images, st: l2g.step(segmenter, images, st), frames,
                                l2g.init_state() if state is None else state)
    return [s.frame for s in steps], state


# ---------------------------------------------------------------------------------------------------------
# The online model


def test_step_shapes_slot_identity_and_state():
    model = tiny_model().eval()
    l2g = model.video
    assert isinstance(l2g, Local2Global)
    state = model.init_state()
    assert isinstance(state, L2GState) and state.queries is None
    with torch.no_grad():
        for t, images in enumerate(video(3)):
            step, state = model.step(images, state)
            frame = step.frame
            assert isinstance(frame, L2GFrameOutput) and frame.frame_index == t
            assert frame.class_logits.shape == (B, Q, K)  # sigmoid head: no no-object logit
            assert frame.mask_logits.shape == (B, Q, HW // 4, HW // 4)
            assert frame.embeddings.shape == (B, Q, C)
            assert frame.indices.tolist() == [list(range(Q))] * B
            assert frame.aux == [] and frame.local is None  # eval, static local PE
            assert frame.local_indices.shape == (B, Q)
            assert torch.equal(state.queries, step.segmenter.raw_queries)
            assert torch.equal(state.boxes, mask_to_box(frame.mask_logits)) and torch.equal(state.boxes, frame.boxes)
            assert state.frame_index == t + 1


def test_first_frame_uses_the_learned_queries_then_propagates_queries_and_trajectory():
    model = tiny_model().eval()
    l2g, decoder = model.video, model.segmenter.decoder
    aligner = Capture(l2g.aligner)
    frames = video(2)
    with torch.no_grad():
        _, state0 = l2g.step(model.segmenter, frames[0], l2g.init_state())
        l2g.step(model.segmenter, frames[1], state0)
        g0, _, gpos0, lpos0 = aligner.calls[0][0][:4]
        assert torch.equal(g0, decoder.query_feat.weight.expand(B, Q, C))
        assert torch.equal(gpos0, decoder.query_embed.weight.expand(B, Q, C))
        assert torch.equal(lpos0, l2g.selector.query_pos.weight.expand(B, Q, C))  # static, per rank
        g1, _, gpos1, lpos1 = aligner.calls[1][0][:4]
        assert torch.equal(g1, state0.queries)
        # Eq. 2: g_pos = MLP(sine(Mask2Box(previous masks))).
        torch.testing.assert_close(gpos1, l2g.box_pe(state0.boxes))
        assert torch.equal(lpos1, lpos0)


def test_decoder_gets_aligned_queries_trajectory_pe_at_layer_0_then_boxes_of_the_latest_masks():
    model = tiny_model().train()
    l2g, segmenter = model.video, model.segmenter
    frames = video(2)
    _, state = l2g.step(segmenter, frames[0], l2g.init_state())
    aligner = Capture(l2g.aligner)
    decoder = Capture(segmenter.decoder)
    layers = [Capture(layer) for layer in segmenter.decoder.layers]
    outputs: list = []
    l2g.aligner.register_forward_hook(lambda m, a, out: outputs.append(out))
    frame = l2g.step(segmenter, frames[1], state)[0].frame
    assert torch.equal(decoder.calls[0][1]["query_content"], outputs[0].queries)
    gpos = aligner.calls[0][0][2]
    assert torch.equal(layers[0].calls[0][0][1], gpos)
    assert len(frame.aux) == len(layers)  # the initial prediction + every layer but the last
    for i in range(1, len(layers)):
        # Layer i is positioned by the boxes of the prediction made just before it (aux[i]).
        expected = l2g.box_pe(mask_to_box(frame.aux[i].mask_logits))
        torch.testing.assert_close(layers[i].calls[0][0][1], expected)


def test_trajectory_pe_off_uses_each_slots_learned_position():
    model = tiny_model(trajectory_pe=False).eval()
    l2g, decoder = model.video, model.segmenter.decoder
    aligner = Capture(l2g.aligner)
    with torch.no_grad():
        run(l2g, model.segmenter, video(3))
    for args, _ in aligner.calls:
        assert torch.equal(args[2], decoder.query_embed.weight.expand(B, Q, C))


def test_aligner_off_is_plain_query_propagation():
    model = tiny_model(aligner=False, trajectory_pe=False).train()
    l2g, segmenter = model.video, model.segmenter
    assert l2g.selector is None and l2g.aligner is None
    with_aligner = sum(p.numel() for p in tiny_model().video.parameters())
    assert sum(p.numel() for p in l2g.parameters()) < with_aligner
    decoder = Capture(segmenter.decoder)
    learned = segmenter.decoder.query_feat.weight.expand(B, Q, C)
    state = l2g.init_state()
    for images in video(3):
        previous = state.queries
        step, state = l2g.step(segmenter, images, state)
        frame = step.frame
        kwargs = decoder.calls[-1][1]
        # Frame t's decoder starts from frame t-1's final queries, unchanged (the learned ones at t = 0).
        assert torch.equal(kwargs["query_content"], learned if previous is None else previous)
        assert torch.equal(kwargs["query_pos"], segmenter.decoder.query_embed.weight.expand(B, Q, C))
        assert frame.local is None and frame.local_indices is None


def test_dynamic_local_pe_uses_the_local_queries_own_boxes():
    model = tiny_model(local_pe="dynamic").eval()
    l2g = model.video
    aligner = Capture(l2g.aligner)
    with torch.no_grad():
        frame = l2g.step(model.segmenter, video(1)[0], l2g.init_state())[0].frame
    assert frame.local is not None  # needed for the positions even in eval
    lpos = aligner.calls[0][0][3]
    torch.testing.assert_close(lpos, l2g.box_pe(mask_to_box(frame.local.mask_logits)))
    assert not torch.allclose(lpos, l2g.selector.query_pos.weight.expand(B, Q, C))
    assert not l2g.selector.query_pos.weight.requires_grad  # unused, so frozen (DDP waits for no gradient)


def test_local_queries_are_the_top_k_tokens_with_their_predictions():
    model = tiny_model(num_local_queries=7).train()
    l2g, segmenter = model.video, model.segmenter
    images = video(1)[0]
    frame = l2g.step(segmenter, images, l2g.init_state())[0].frame
    assert frame.local.class_logits.shape == (B, 7, K)
    assert frame.local.mask_logits.shape == (B, 7, HW // 4, HW // 4)
    memory = segmenter.encode(segmenter.normalize(images)).memory
    logits = l2g.selector.class_head(l2g.selector.norm(l2g.selector.proj(memory)))  # [B, N, K]
    expected = logits.amax(-1).topk(7, dim=1).indices
    assert torch.equal(frame.local_indices, expected)
    for b in range(B):
        torch.testing.assert_close(frame.local.class_logits[b], logits[b, expected[b]])
    # The local predictions train the selection head and the encoder.
    frame.local.mask_logits.sum().add(frame.local.class_logits.sum()).backward()
    assert l2g.selector.proj.weight.grad is not None and l2g.selector.class_head.weight.grad is not None


def test_build_checks_and_width_switches():
    with pytest.raises(ConfigError, match="sigmoid"):
        build_local2global(dataclasses.replace(TINY, classification="softmax"))
    for width in (512, 1024, 2048):
        cfg = dataclasses.replace(TINY, l2g=dataclasses.replace(TINY.l2g, aligner_ffn_dim=width))
        assert build_local2global(cfg).aligner.layers[0].linear1.out_features == width
    wide_memory = dataclasses.replace(TINY, pixel_decoder=dataclasses.replace(TINY.pixel_decoder, hidden_dim=64))
    model = build_model(wide_memory).eval()
    assert isinstance(model.video.memory_proj, torch.nn.Linear)
    with torch.no_grad():
        step, _ = model.step(video(1)[0], model.init_state())
    assert step.frame.class_logits.shape == (B, Q, K)


def test_streaming_equivalence_step_run_windows_and_clip_forward():
    model = tiny_model().eval()
    l2g, segmenter = model.video, model.segmenter
    frames = video(4, seed=1)
    with torch.no_grad():
        state = model.init_state()
        stepped = []
        for images in frames:
            s, state = model.step(images, state)
            stepped.append(s.frame)
        ran, final = run(l2g, segmenter, frames)
        first, mid = run(l2g, segmenter, frames[:2])
        second, _ = run(l2g, segmenter, frames[2:], mid)
        pixels = torch.stack([segmenter.normalize(f) for f in frames], dim=1)  # [B, T, 3, H, W]
        clip = model(pixels)
    assert isinstance(clip, ClipForward) and len(clip.frames) == 4
    for a, b, c in zip(stepped, ran, first + second):
        for x, y in ((a, b), (a, c)):
            assert x.frame_index == y.frame_index
            assert torch.equal(x.class_logits, y.class_logits) and torch.equal(x.mask_logits, y.mask_logits)
            assert torch.equal(x.embeddings, y.embeddings) and torch.equal(x.boxes, y.boxes)
    assert torch.equal(final.queries, state.queries) and final.frame_index == 4
    # The training path batches the encoder over all frames: equal up to float reassociation.
    for a, d in zip(stepped, clip.frames):
        torch.testing.assert_close(d.class_logits, a.class_logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(d.mask_logits, a.mask_logits, rtol=1e-4, atol=1e-4)


def test_online_memory_is_constant():
    model = tiny_model().eval()
    l2g, segmenter = model.video, model.segmenter
    state = l2g.init_state()
    sizes = []
    previous = None
    for images in video(8, seed=2):  # grad mode on: eval must not chain a graph through the stream
        step, state = l2g.step(segmenter, images, state)
        frame = step.frame
        assert state.queries.grad_fn is None and state.boxes.grad_fn is None
        sizes.append(sum(t.numel() for t in (state.queries, state.boxes)))
        if previous is not None:
            assert previous() is None  # nothing (not even a reference cycle) keeps an earlier frame alive
        previous = weakref.ref(frame.mask_logits)
        del frame
    assert len(set(sizes)) == 1 and sizes[0] == B * Q * (C + 4)


def test_backprop_through_time_and_detach_global():
    for detach, reaches in ((False, True), (True, False)):
        model = tiny_model(detach_global=detach).train()
        l2g, segmenter = model.video, model.segmenter
        frames, _ = run(l2g, segmenter, video(2))
        frames[1].class_logits.sum().backward()
        grad = segmenter.decoder.query_feat.weight.grad  # used by frame 0 only
        assert (grad is not None and grad.abs().sum() > 0) == reaches


def test_state_batch_mismatch_is_an_error():
    model = tiny_model().eval()
    with torch.no_grad():
        _, state = model.step(video(1)[0], model.init_state())
        with pytest.raises(ValueError, match="videos"):
            model.step(video(1, b=1)[0], state)


# ---------------------------------------------------------------------------------------------------------
# Training: matching, reduced supervision, loss


def _clip(present: list[list[bool]], h: int = 8, w: int = 8) -> ClipTargets:
    n, t = len(present), len(present[0])
    masks = torch.zeros(n, t, h, w, dtype=torch.bool)
    for i in range(n):
        for j in range(t):
            if present[i][j]:
                masks[i, j, i : i + 3, j : j + 3] = True
    return ClipTargets(torch.arange(n) % K, masks, torch.tensor(present), torch.arange(n) + 10)


def test_appeared_targets_keep_the_first_appearance_matching():
    # Instance 0 always there, 1 appears at frame 2, 2 leaves after frame 1.
    clip = _clip([[True, True, True, True], [False, False, True, True], [True, True, False, False]])
    matching = Matching(torch.tensor([0, 3, 4]), torch.tensor([1, 0, 2]))  # q0->inst1, q3->inst0, q4->inst2
    for t in range(4):
        targets, m = appeared_targets(clip, matching, t)
        ids = targets.instance_ids.tolist()
        assert ids == ([10, 12] if t < 2 else [10, 11, 12])
        # Each instance keeps its query in every frame.
        pairs = {int(q): ids[int(n)] for q, n in zip(m.query_indices, m.target_indices)}
        assert pairs == ({3: 10, 4: 12} if t < 2 else {0: 11, 3: 10, 4: 12})
        if t >= 2:
            assert not targets.masks[ids.index(12)].any()  # gone, still a target with an empty mask


def _tiny_experiment(**l2g_changes) -> ExperimentConfig:
    model = dataclasses.replace(TINY, l2g=dataclasses.replace(TINY.l2g, **l2g_changes))
    return ExperimentConfig(
        model=model,
        loss=LossConfig(num_points=512, class_weight=4.0),
        optim=OptimConfig(lr=1e-3, backbone_lr_multiplier=1.0, weight_decay=0.0, grad_clip=1.0),
    )


def _fake_frame(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> L2GFrameOutput:
    b, q = class_logits.shape[:2]
    return L2GFrameOutput(
        class_logits=class_logits,
        mask_logits=mask_logits,
        embeddings=torch.zeros(b, q, 4),
        indices=torch.arange(q).expand(b, q),
        frame_index=0,
        aux=[LayerPrediction(class_logits, mask_logits)],
        local=LayerPrediction(class_logits[:, :3], mask_logits[:, :3]),
    )


def test_supervision_matches_once_at_first_appearance_and_keeps_that_query():
    stage = L2GStage.from_config(_tiny_experiment(reduced_supervision=False))
    clip = _clip([[False, True, True]])  # one instance, appearing at frame 1
    target = clip.masks[0].float() * 20 - 10  # a perfect mask logit per frame
    frames = []
    for t in range(3):
        masks = torch.full((1, Q, 8, 8), -10.0)
        cls = torch.full((1, Q, K), -5.0)
        best = 2 if t == 1 else 4  # query 4 would win a per-frame matching at frame 2
        masks[0, best] = target[t]
        cls[0, best, int(clip.class_ids[0])] = 5.0
        frames.append(_fake_frame(cls, masks))
    plan = stage.supervision(frames, [clip])
    assert plan.frames == [(0, 0), (0, 1), (0, 2)]
    assert plan.matchings[0].query_indices.tolist() == [2]
    matched = [m.query_indices.tolist() for m in plan.queries.matching]
    assert matched == [[], [2], [2]]  # nothing before it appears, then query 2 for good
    assert [len(t) for t in plan.queries.targets] == [0, 1, 1]
    assert len(plan.queries.aux) == 1 and plan.queries.final.class_logits.shape == (3, Q, K)
    # Local queries are matched per frame against what is present (the criterion matches them).
    assert plan.local.matching is None and [len(t) for t in plan.local.targets] == [0, 1, 1]


def test_reduced_supervision_is_applied_per_clip_in_the_loss_plan():
    torch.manual_seed(0)
    stage = L2GStage.from_config(_tiny_experiment(reduced_supervision=True))
    clips = [_clip([[True] * 4]) for _ in range(3)]
    frames = [_fake_frame(torch.randn(3, Q, K), torch.randn(3, Q, 8, 8)) for _ in range(4)]
    seen = set()
    for _ in range(20):
        plan = stage.supervision(frames, clips)
        for b in range(3):
            kept = [t for c, t in plan.frames if c == b]
            assert 3 in kept and 2 <= len(kept) < 4
            seen.add(tuple(kept))
        assert len(plan.queries.targets) == len(plan.frames) == plan.queries.final.class_logits.shape[0]
    assert len(seen) > 2  # the skipped frames vary
    full = L2GStage.from_config(_tiny_experiment(reduced_supervision=False)).supervision(frames, clips)
    assert full.frames == [(b, t) for b in range(3) for t in range(4)]


def make_batch(b: int = 2, t: int = 3, size: int = HW, seed: int = 0) -> ClipBatch:
    """Clips with a square moving right (class 1) and a disc-ish block appearing at frame 1 (class 2)."""
    g = torch.Generator().manual_seed(seed)
    frames = (torch.rand(b, t, 3, size, size, generator=g) * 60).to(torch.uint8)
    targets = []
    for i in range(b):
        clip = []
        for j in range(t):
            masks = torch.zeros(2, size, size, dtype=torch.bool)
            x = 6 + 6 * j + 4 * i
            masks[0, 10:30, x : x + 20] = True
            if j >= 1:
                masks[1, 40:56, 36 - 3 * j : 52 - 3 * j] = True
            frames[i, j, 0][masks[0]] = 230
            frames[i, j, 2][masks[1]] = 230
            clip.append(
                FrameTarget(
                    class_ids=torch.tensor([1, 2]),
                    instance_ids=torch.tensor([7, 8]),
                    masks=masks,
                    present=masks.flatten(1).any(1),
                    ignore=torch.zeros(size, size, dtype=torch.bool),
                )
            )
        targets.append(clip)
    return ClipBatch(frames, torch.tensor([[size, size]] * b), torch.zeros(b, size, size, dtype=torch.bool), targets)


def test_l2g_stage_steps_reduce_the_loss_with_finite_gradients():
    torch.manual_seed(0)
    stage = L2GStage.from_config(_tiny_experiment(reduced_supervision=False))
    model = stage.model.train()
    optimizer = build_optimizer(model, stage.config.optim)
    batch = make_batch()
    losses = []
    for i in range(6):
        out = stage.loss(model, batch, i)
        optimizer.zero_grad()
        out.loss.backward()
        if i == 0:
            assert {"loss_class", "loss_mask", "loss_dice", "loss_class_local", "loss_dice_local"} <= set(out.terms)
            assert out.terms["supervised_frames"] == 6
            missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
            assert missing == []
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        losses.append(out.loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0]


def test_image_pretraining_freezes_the_segmenter_and_trains_on_single_frames():
    stage = L2GStage.from_config(_tiny_experiment(), image_pretraining=True)
    model = stage.model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "segmenter.decoder.query_feat.weight" in trainable
    assert {n for n in trainable if n.startswith("segmenter.")} == {"segmenter.decoder.query_feat.weight"}
    assert any(n.startswith("video.aligner.") for n in trainable) and not model.segmenter.training
    calls = Capture(model.video.aligner)
    out = stage.loss(model, make_batch(), 0)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.terms["supervised_frames"] == 6  # every frame, independently
    # Every frame starts from the learnable global queries.
    feat = model.segmenter.decoder.query_feat.weight
    assert len(calls.calls) == 1 and torch.equal(calls.calls[0][0][0], feat.expand(6, Q, C))
    assert feat.grad is not None and model.video.box_pe.mlp.layers[0].weight.grad is not None


def test_from_config_checks_method_and_loads_a_segmenter_checkpoint(tmp_path):
    cfg = _tiny_experiment()
    with pytest.raises(ConfigError, match="method"):
        L2GStage.from_config(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, method="minvis")))
    torch.manual_seed(5)
    donor = build_model(cfg.model).segmenter
    path = save_checkpoint(tmp_path / "seg", donor.state_dict(), cfg, "segmenter", 10)
    stage = L2GStage.from_config(cfg, path)
    for k, v in donor.state_dict().items():
        assert torch.equal(stage.model.segmenter.state_dict()[k], v)
    l2g_ckpt = save_checkpoint(tmp_path / "l2g", stage.model.state_dict(), cfg, "l2g", 20)
    again = L2GStage.from_config(cfg, l2g_ckpt)
    for k, v in stage.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v)
    tracker = save_checkpoint(tmp_path / "trk", stage.model.state_dict(), cfg, "tracker", 1)
    with pytest.raises(CheckpointError, match="stage"):
        L2GStage.from_config(cfg, tracker)


# ---------------------------------------------------------------------------------------------------------
# Presets


def test_presets_follow_the_paper_recipe_and_the_tiny_one_builds():
    names = [n for n in preset_names() if n.startswith("local2global/")]
    assert sorted(names) == [
        f"local2global/{n}"
        for n in ("coco_r50_pretrain", "ovis_r50", "synthetic_tiny", "vipseg_r50", "ytvis19_r50", "ytvis21_r50",
                  "ytvis22_r50")
    ]
    for name in names:
        cfg = load_preset_or_file(name)
        assert cfg.model.method == "l2g" and cfg.model.classification == "sigmoid"
        assert cfg.data.num_frames == 4
        if name.endswith("_r50"):
            assert cfg.model.backbone.name == "resnet50" and cfg.model.l2g == L2GConfig()
            o = cfg.optim
            assert (o.lr, o.batch_size, o.max_iters, o.steps) == (5e-5, 8, 120000, (60000,))
    tiny = apply_overrides(load_preset_or_file("local2global/synthetic_tiny"), ["model.decoder.num_queries=4"])
    model = build_model(tiny).eval()
    with torch.no_grad():
        step, _ = model.step(torch.rand(1, 3, 96, 128) * 255, model.init_state())
    assert step.frame.class_logits.shape == (1, 4, 4)


def test_train_l2g_stage_end_to_end_on_synthetic_ytvis(tmp_path, monkeypatch):
    from vidseg.data.synthetic import write_synthetic_dataset
    from vidseg.models.model import load_model
    from vidseg.training.run import train

    write_synthetic_dataset(tmp_path / "synthetic", num_videos=4, num_frames=5, height=72, width=96, formats=["ytvis"])
    monkeypatch.chdir(tmp_path)  # the preset's data roots are relative: synthetic/ytvis/...
    overrides = ["optim.max_iters=2", "optim.batch_size=2", "data.num_workers=0", "data.min_size=[64]",
                 "data.max_size=96", "loss.num_points=256"]
    summary = train("local2global/synthetic_tiny", "l2g", tmp_path / "run", overrides=overrides, device="cpu")
    assert summary.iteration == 2 and summary.skipped_steps == 0
    loaded = load_model(summary.last_checkpoint, expected_stage="l2g")
    assert isinstance(loaded.model.video, Local2Global)
    with torch.no_grad():
        step, state = loaded.model.step(torch.rand(1, 3, 64, 96) * 255, loaded.model.init_state())
    assert step.frame.class_logits.shape == (1, 20, 4) and state.frame_index == 1
