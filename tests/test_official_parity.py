"""Published-model parity: official checkpoints -> `vidseg convert-weights` -> public inference API, against
the golden outputs of the official Mask2Former / DVIS++ code (`../shared/parity`, see tests/parity.py).

Every model is rebuilt from the fixture README's weight generator, written as an official checkpoint file
(`.pkl` with detectron2's layout and legacy pixel-decoder names for (A), fvcore `.pth` for (B), (C)),
converted by the CLI's code path, and run through `load_model` / `VideoPredictor`.
"""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from parity import fixture, official_state_dict, tensors, unpack_masks

from vidseg.cli import main
from vidseg.inference.image import ImagePostprocessor
from vidseg.inference.predictor import VideoPredictor
from vidseg.models.minvis import MinVIS
from vidseg.models.model import load_model
from vidseg.models.outputs import SegmenterOutput

LOGIT_TOL, MASK_TOL, SCORE_TOL = 1e-4, 5e-4, 1e-5


def _close(ours: torch.Tensor, theirs: torch.Tensor, tol: float, what: str) -> None:
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    diff = (ours.float() - theirs.float()).abs().max().item()
    assert diff <= tol, f"{what}: max |diff| {diff:.3g} > {tol}"


def _write_pkl(state: dict[str, np.ndarray], path, legacy: bool) -> None:
    if legacy:  # model-zoo files name the pixel decoder `sem_seg_head.X` (MaskFormerHead renames them)
        state = {k.replace("sem_seg_head.pixel_decoder.", "sem_seg_head."): v for k, v in state.items()}
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "vidseg parity test"}, f)


def _write_pth(state: dict[str, np.ndarray], path) -> None:
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}, "iteration": 0}, path)


def _convert(source: str, src, out, dataset: str) -> None:
    assert main(["convert-weights", "--from", source, str(src), "--dataset", dataset, "--out", str(out)]) == 0


# ---------------------------------------------------------------------------------------------------------
# (A) Mask2Former R50 COCO panoptic


@pytest.fixture(scope="module")
def model_a(tmp_path_factory):
    folder = fixture("m2f_r50_coco_panoptic")
    tmp = tmp_path_factory.mktemp("a")
    _write_pkl(official_state_dict(folder), tmp / "model_final.pkl", legacy=True)
    _convert("detectron2", tmp / "model_final.pkl", tmp / "ckpt", "coco_panoptic")
    loaded = load_model(tmp / "ckpt")
    inputs, outputs = tensors(folder / "inputs.safetensors"), tensors(folder / "outputs.safetensors")
    segmenter = loaded.model.segmenter
    batch = segmenter.frames_to_batch([inputs["image0.rgb_uint8"].numpy(), inputs["image1.rgb_uint8"].numpy()])
    with torch.no_grad():
        seg = segmenter(batch)
        # eval mode returns only the last layer; training mode (frozen BN, no dropout: same values) all of them
        layers = [*segmenter.train()(batch).aux]
    segmenter.eval()
    return loaded, inputs, outputs, seg, layers


def test_a_segmenter_matches_official(model_a) -> None:
    loaded, inputs, out, seg, aux = model_a
    assert loaded.stage == "segmenter" and loaded.config.model.num_classes == 133
    pixels = loaded.model.segmenter.normalize(loaded.model.segmenter.frames_to_batch(
        [inputs["image0.rgb_uint8"].numpy(), inputs["image1.rgb_uint8"].numpy()]))
    _close(pixels, inputs["batch.pixels"], 1e-6, "normalised pixels")
    _close(seg.class_logits, out["segmenter.class_logits"], LOGIT_TOL, "class logits")
    _close(seg.mask_logits, out["segmenter.mask_logits"], MASK_TOL, "mask logits")
    assert seg.aux == []
    layers = [*aux, seg]
    for i, layer in enumerate(layers):
        _close(layer.class_logits[:, ::7], out["segmenter.class_logits.layers.q_step7"][i], LOGIT_TOL, f"layer {i}")
        _close(layer.mask_logits[:, ::7], out["segmenter.mask_logits.layers.q_step7"][i], MASK_TOL, f"mask {i}")


@pytest.mark.parametrize("image", [0, 1])
def test_a_image_results_match_official(model_a, image) -> None:
    loaded, inputs, out, seg, _ = model_a
    size = tuple(inputs["batch.image_sizes"][image].tolist())
    output_size = tuple(inputs["batch.output_sizes"][image].tolist())
    things = set(range(80))
    args = (seg.class_logits[image], seg.mask_logits[image], 0, (96, 128), size, output_size)
    prefix = f"post.image{image}."
    semantic = ImagePostprocessor("semantic").frame(*args).semantic
    margin = out[prefix + "sem_seg.margin"].float().numpy() > 1e-4
    assert np.array_equal(semantic[margin], out[prefix + "sem_seg.argmax"].numpy()[margin])
    for name, (obj, overlap) in {"panoptic": (0.8, 0.8), "panoptic_relaxed": (0.4, 0.2)}.items():
        pan = ImagePostprocessor("panoptic", thing_classes=things, object_mask_threshold=obj,
                                 overlap_threshold=overlap).frame(*args)
        segments = out[prefix + name + ".segments"].tolist()
        assert [[s.id, s.category_id, int(s.is_thing)] for s in pan.segments] == segments
        assert np.array_equal(pan.panoptic, out[prefix + name + ".ids"].numpy())
    inst = ImagePostprocessor("instance", thing_classes=things, test_topk=100)
    inst.instance_things_only = True
    result = inst.frame(*args)
    # The same (class, score) pairs; scores to 1e-4 (a rounded-set comparison flips at a rounding boundary).
    ours = sorted(zip(np.asarray(result.class_ids).tolist(), np.asarray(result.scores).tolist()))
    theirs = sorted(zip(out[prefix + "instances.classes"].tolist(), out[prefix + "instances.scores"].tolist()))
    assert [c for c, _ in ours] == [c for c, _ in theirs]
    assert np.allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# (B) DVIS++ online R50 VIPSeg, (C) offline R50 YouTube-VIS 2019 (+ its online variant)


def _video_model(tmp_path_factory, name: str, dataset: str, drop: tuple[str, ...] = ()):
    folder = fixture(name)
    tmp = tmp_path_factory.mktemp(name)
    _write_pth(official_state_dict(folder, drop_prefixes=drop), tmp / "model.pth")
    _convert("dvis_plus", tmp / "model.pth", tmp / "ckpt", dataset)
    return tmp / "ckpt", tensors(folder / "inputs.safetensors")


def _steps(loaded, frames: torch.Tensor):
    model = loaded.model
    state, steps = model.init_state(), []
    with torch.no_grad():
        for t in range(frames.shape[0]):
            step, state = model.step(model.segmenter.frames_to_batch([frames[t].numpy()]), state)
            steps.append(step)
    return steps


def _predict(ckpt, frames, task: str, **inference) -> list:
    loaded = load_model(ckpt)
    config = replace(loaded.config, inference=replace(loaded.config.inference, min_size=None, max_size=None,
                                                      **inference))
    predictor = VideoPredictor(loaded.model, config, task=task, device="cpu")
    for t in range(frames.shape[0]):
        predictor.push(frames[t].numpy(), output_size=(135, 180), provisional=False)
    return list(predictor.finish())


def _check_tracker(steps, out, prefix: str = "") -> None:
    frames = [s.frame for s in steps]
    assert torch.equal(torch.stack([f.indices[0] for f in frames]), out[prefix + "tracker.match_indices"])
    _close(torch.stack([f.class_logits[0] for f in frames]), out[prefix + "tracker.pred_logits"], LOGIT_TOL,
           "tracker class logits")


def _check_vis(results, out, prefix: str, num_classes: int) -> None:
    """VIS results as a set keyed by (query, class) (official top-k is unsorted): scores and masks."""
    queries, labels = out[prefix + "vis.query"].tolist(), out[prefix + "vis.labels"].tolist()
    masks = unpack_masks(out[prefix + "vis.masks_packed"], 180)  # [N, T, H, W]
    track_ids = results[0].track_ids.tolist()
    assert sorted(track_ids) == sorted(q * num_classes + k + 1 for q, k in zip(queries, labels))
    for n, (q, k, score) in enumerate(zip(queries, labels, out[prefix + "vis.scores"].tolist())):
        tid = q * num_classes + k + 1
        assert abs(float(results[0].scores[track_ids.index(tid)]) - score) <= SCORE_TOL
        ours = np.stack([r.dense_masks()[r.track_ids.tolist().index(tid)] for r in results])
        # Pixels whose resized logit is within float32 noise of 0 may flip (README § 5); a handful at most.
        assert (ours != masks[n]).sum() <= 5, f"VIS mask of (query {q}, class {k}): {(ours != masks[n]).sum()}"


def _check_vps(results, out, name: str) -> None:
    expected = out[name + ".panoptic"].numpy()
    ours = np.stack([r.panoptic for r in results])
    # A pixel whose mask probability is within float32 noise (~1e-5) of the 0.5 cut may flip; no more.
    assert (ours != expected).sum() <= 5, f"{name}: {(ours != expected).sum()} pixels differ"
    segments = {(s.id, s.category_id, int(s.is_thing)) for r in results for s in r.segments}
    assert segments == {tuple(s) for s in out[name + ".segments"].tolist()}


def _check_vss(results, out, name: str) -> None:
    ours = np.stack([r.semantic for r in results])
    margin = out[name + ".margin"].float().numpy() > 1e-4
    assert np.array_equal(ours[margin], out[name + ".semantic"].numpy()[margin])


def _check_video_tasks(ckpt, frames: torch.Tensor, out, prefix: str, num_classes: int) -> None:
    """VPS (config and relaxed thresholds), VSS and VIS results of `VideoPredictor.finish` vs `prefix`post.*."""
    _check_vps(_predict(ckpt, frames, "vps"), out, prefix + "post.vps")
    _check_vps(_predict(ckpt, frames, "vps", object_mask_threshold=0.4, overlap_threshold=0.2), out,
               prefix + "post.vps_relaxed")
    _check_vss(_predict(ckpt, frames, "vss"), out, prefix + "post.vss")
    _check_vis(_predict(ckpt, frames, "vis"), out, prefix + "post.", num_classes)


@pytest.fixture(scope="module")
def model_b(tmp_path_factory):
    ckpt, inputs = _video_model(tmp_path_factory, "dvis_plus_r50_vipseg_online", "vipseg")
    return ckpt, inputs, tensors(fixture("dvis_plus_r50_vipseg_online") / "outputs.safetensors")


def test_b_segmenter_and_tracker_match_official(model_b) -> None:
    ckpt, inputs, out = model_b
    loaded = load_model(ckpt)
    assert loaded.stage == "tracker" and loaded.model.method == "dvis_online"
    steps = _steps(loaded, inputs["frames.rgb_uint8"])
    segs = [s.segmenter for s in steps]
    _close(torch.stack([s.class_logits[0] for s in segs]), out["segmenter.class_logits"], LOGIT_TOL, "seg cls")
    _close(torch.stack([s.mask_logits[0] for s in segs], 1), out["segmenter.mask_logits"], MASK_TOL, "seg masks")
    raw = torch.stack([torch.cat([s.raw_queries[0], s.reid_embeddings[0]], -1) for s in segs], 1).permute(2, 1, 0)
    _close(raw, out["segmenter.pred_embds_without_norm"], LOGIT_TOL, "pred_embds_without_norm")
    _check_tracker(steps, out)
    frames = [s.frame for s in steps]
    _close(torch.stack([f.mask_logits[0] for f in frames], 1), out["tracker.pred_masks"], MASK_TOL, "trk masks")
    _close(torch.stack([f.embeddings[0] for f in frames], 1).permute(2, 1, 0), out["tracker.pred_embds"],
           LOGIT_TOL, "tracker embeddings")
    _close(torch.stack([f.references[0] for f in frames], 1).permute(2, 1, 0), out["tracker.pred_references"],
           LOGIT_TOL, "tracker references")


def test_b_video_results_match_official(model_b) -> None:
    ckpt, inputs, out = model_b
    _check_video_tasks(ckpt, inputs["frames.rgb_uint8"], out, "", 124)


@pytest.fixture(scope="module")
def model_c(tmp_path_factory):
    ckpt, inputs = _video_model(tmp_path_factory, "dvis_plus_r50_ytvis19_offline", "ytvis19")
    online, _ = _video_model(tmp_path_factory, "dvis_plus_r50_ytvis19_offline", "ytvis19", drop=("refiner.",))
    return ckpt, online, inputs, tensors(fixture("dvis_plus_r50_ytvis19_offline") / "outputs.safetensors")


def test_c_offline_refiner_matches_official(model_c) -> None:
    ckpt, _, inputs, out = model_c
    loaded = load_model(ckpt)
    assert loaded.stage == "refiner" and loaded.model.is_offline
    steps = _steps(loaded, inputs["frames.rgb_uint8"])
    _check_tracker(steps, out)
    with torch.no_grad():
        clip = loaded.model.refine(steps)
    _close(clip.class_logits[0], out["refiner.pred_logits"], LOGIT_TOL, "refiner class logits")
    _close(clip.mask_logits[0].transpose(0, 1), out["refiner.pred_masks"], MASK_TOL, "refiner masks")
    _check_video_tasks(ckpt, inputs["frames.rgb_uint8"], out, "", 40)


def test_c_online_variant_matches_official(model_c) -> None:
    _, online, inputs, out = model_c
    loaded = load_model(online)
    assert loaded.stage == "tracker"
    steps = _steps(loaded, inputs["frames.rgb_uint8"])
    _close(torch.stack([s.frame.class_logits[0] for s in steps]), out["online.tracker.pred_logits"], LOGIT_TOL,
           "online tracker logits")
    _check_video_tasks(online, inputs["frames.rgb_uint8"], out, "online.", 40)


# ---------------------------------------------------------------------------------------------------------
# small/: tracker and refiner on permuted queries, MinVIS association


def test_small_tracker_and_refiner_on_permuted_queries(model_c) -> None:
    ckpt, _, _, _ = model_c
    video = load_model(ckpt).model.video
    tracker, refiner = video.online.tracker, video.refiner
    data = tensors(fixture("small") / "tracker_refiner_permuted.safetensors")
    raw, normed, feats = data["input.frame_embeds_no_norm"], data["input.frame_embeds"], data["input.mask_features"]
    state, outs = tracker.init_state(), []
    with torch.no_grad():
        for t in range(raw.shape[0]):
            out, state = tracker.forward_frame(raw[t][None], normed[t][None], feats[t][None], state)
            outs.append(out)
        assert torch.equal(torch.stack([o.indices[0] for o in outs]), data["tracker.match_indices"])
        _close(torch.stack([o.class_logits[0] for o in outs]), data["tracker.pred_logits"], LOGIT_TOL, "logits")
        _close(torch.stack([o.mask_logits[0] for o in outs], 1), data["tracker.pred_masks"], MASK_TOL, "masks")
        embeds = torch.stack([o.embeddings[0] for o in outs])
        _close(embeds.permute(2, 0, 1), data["tracker.pred_embds"], LOGIT_TOL, "embeddings")
        _close(torch.stack([o.references[0] for o in outs]).permute(2, 0, 1), data["tracker.pred_references"],
               LOGIT_TOL, "references")
        refined = refiner(embeds[None], raw[None], feats[None])
    _close(refined.class_logits[0], data["refiner.pred_logits"], LOGIT_TOL, "refiner logits")
    _close(refined.mask_logits[0].transpose(0, 1), data["refiner.pred_masks"], MASK_TOL, "refiner masks")


def test_small_minvis_association() -> None:
    data = tensors(fixture("small") / "minvis_association.safetensors")
    embeds, logits, masks = data["input.embeds"], data["input.class_logits"], data["input.mask_logits"]
    minvis, state, frames = MinVIS(), MinVIS().init_state(), []
    for t in range(embeds.shape[0]):
        seg = SegmenterOutput(queries=embeds[t][None], raw_queries=embeds[t][None], class_logits=logits[t][None],
                              mask_logits=masks[:, t][None])
        frame, state = minvis.track(seg, state)
        frames.append(frame)
    assert torch.equal(torch.stack([f.indices[0] for f in frames]), data["match_indices"])
    _close(torch.stack([f.class_logits[0] for f in frames]).mean(0), data["output.class_logits"], LOGIT_TOL, "cls")
    _close(torch.stack([f.mask_logits[0] for f in frames], 1), data["output.mask_logits"], MASK_TOL, "masks")


# ---------------------------------------------------------------------------------------------------------
# The converted checkpoints in the CLI, and bad checkpoints


def test_converted_dvis_checkpoint_segments_a_clip(model_b, tmp_path) -> None:
    from PIL import Image

    ckpt, inputs, _ = model_b
    clip = tmp_path / "clip"
    clip.mkdir()
    for t, frame in enumerate(inputs["frames.rgb_uint8"][:2].numpy()):
        Image.fromarray(frame).save(clip / f"{t:05d}.png")
    assert main(["segment", str(clip), "--weights", str(ckpt), "--out", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out" / "pan_pred" / "clip").glob("*.png"))) == 2


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_bad_checkpoints_are_one_line_errors(model_a, tmp_path, capsys) -> None:
    pkl = tmp_path / "ok.pkl"
    _write_pkl(official_state_dict(fixture("m2f_r50_coco_panoptic")), pkl, legacy=False)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(pkl.read_bytes()[: pkl.stat().st_size // 3])
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"x": _Evil()}}))
    cases = [
        (["--from", "detectron2", str(truncated)], "truncated"),
        (["--from", "detectron2", str(evil)], "refused"),
        (["--from", "hf", str(pkl)], "not a directory"),
        (["--from", "detectron2", str(pkl), "--dataset", "ytvis19"], "133 classes"),
        (["--from", "detectron2", str(pkl), "--dataset", "nope"], "nope"),
    ]
    for args, words in cases:
        out = tmp_path / "never"
        assert main(["convert-weights", *args, "--out", str(out)]) == 2, args
        err = capsys.readouterr()
        assert words in err.err and len(err.err.strip().splitlines()) == 1, (args, err.err)
        assert "this must never run" not in err.out and not out.exists()
