"""Every shipped training chain trains end to end on synthetic data, each stage started (`--init`) from the
previous one's checkpoint:

* `mvc_oma/<dataset>_{r50,vitl}_*`: segmenter -> tracker -> refiner, on the preset's own data format (OVIS /
  YouTube-VIS with its COCO joint training (`data.mix`), VIPSeg, VSPW);
* `local2global/<dataset>_r50`: phase 1 `local2global/coco_r50_pretrain` (COCO image pre-training) -> phase 2
  (video, COCO pseudo-videos mixed as the preset says); `local2global/vipseg_r50` has no COCO phase (no
  COCO -> VIPSeg map) and trains its video phase from scratch.

The data: `vidseg data synth` VIPSeg/VSPW sets, and per vocabulary a synthetic YouTube-VIS set with a COCO JSON
of its frames. Each chain trains 2 iterations per stage at 64-96 px:

* default suite: in this process with a tiny backbone (`tiny_cnn`, small heads);
* `-m slow`: the presets' own backbones (R50; ViT-L + adapter, frozen ViT, `pretrained: false` as shipped)
  under `torchrun --nproc_per_node 2` (gloo on the CPU), one `vidseg train` command per stage, batch 2 (one clip
  per rank).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from ddp import torchrun_vidseg
from test_data_mixing import write_vis_and_coco

from vidseg.config import load_preset_or_file, to_dict
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.training.checkpoint import latest_checkpoint
from vidseg.training.run import train

MVC_DATASETS = ["ovis", "ytvis19", "ytvis21", "vipseg", "vspw"]
L2G_DATASETS = ["ovis", "ytvis19", "ytvis21", "ytvis22", "vipseg"]
STAGES = ("segmenter", "tracker", "refiner")
# The synthetic YouTube-VIS set labelled with each VIS dataset's vocabulary (YouTube-VIS 2022 is 2021's).
VOCABULARY = {"ovis": "ovis", "ytvis19": "ytvis19", "ytvis21": "ytvis21", "ytvis22": "ytvis21"}
MAX_FRAMES = 3  # clip length: min(preset, this); the synthetic YouTube-VIS videos have 4 frames
COMMON = ["data.min_size=[64]", "data.max_size=96", "data.num_workers=0", "data.crop_size=null",
          "data.val_root=''", "data.val_annotations=''", "optim.max_iters=2", "optim.amp=none",
          "loss.num_points=64"]
TINY = ["model.backbone.name=tiny_cnn", "model.backbone.frozen_bn=false", "model.pixel_decoder.hidden_dim=32",
        "model.pixel_decoder.mask_dim=32", "model.pixel_decoder.ffn_dim=64", "model.pixel_decoder.num_layers=1",
        "model.decoder.hidden_dim=32", "model.decoder.ffn_dim=64", "model.decoder.num_queries=8",
        "model.decoder.num_layers=2", "model.tracker.num_layers=2", "model.tracker.ffn_dim=64",
        "model.tracker.num_heads=4", "model.refiner.num_layers=2", "model.refiner.ffn_dim=64",
        "model.refiner.num_heads=4", "model.decoder.num_heads=4", "model.pixel_decoder.num_heads=4"]
L2G_TINY = [o for o in TINY if not o.startswith(("model.tracker", "model.refiner"))] + [
    "model.l2g.aligner_ffn_dim=64", "model.l2g.aligner_heads=4"]
SHIPPED = ["model.decoder.num_queries=20"]  # the presets' backbones and heads, fewer queries

# (preset, stage, out dir, overrides, init) -> the warnings the run logged
Runner = Callable[[str, str, Path, list[str], "Path | None"], str]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """format -> root (`vipseg`, `vspw`, `ytvis`); vocabulary -> {root, ytvis, coco} (see `write_vis_and_coco`)."""
    out = tmp_path_factory.mktemp("synth")
    roots = write_synthetic_dataset(out, 2, 6, 64, 96, formats=("vipseg", "vspw", "ytvis"), seed=5)
    vis = {v: write_vis_and_coco(out / v, v, num_videos=2) for v in sorted(set(VOCABULARY.values()))}
    return {**roots, **vis}


def _data(preset: str, dataset: str, data: dict) -> list[str]:
    """Overrides pointing the preset's train set (and its `data.mix` sources) at the synthetic data."""
    cfg = load_preset_or_file(preset).data
    frames = [f"data.num_frames={min(cfg.num_frames, MAX_FRAMES)}"]
    if dataset == "synthetic" and cfg.format == "ytvis":  # `vidseg data synth`'s own YouTube-VIS layout
        train = data["ytvis"] / "train"
        return frames + [f"data.train_root={train / 'JPEGImages'}",
                         f"data.train_annotations={train / 'instances.json'}"]
    if cfg.format in ("vipseg", "vspw"):
        assert not cfg.mix
        return frames + [f"data.train_root={data[cfg.format]}", "data.train_annotations=''"]
    vis = data[VOCABULARY[dataset]]
    if cfg.format == "coco":  # image pre-training on the COCO JSON of the synthetic frames
        return frames + [f"data.train_root={vis['root']}", f"data.train_annotations={vis['coco']}"]
    assert cfg.format in ("ovis", "ytvis"), cfg.format
    mix = ", ".join(f"{{format: coco, root: {vis['root']}, annotations: {vis['coco']}, ratio: {m.ratio}, "
                    f"class_map: {m.class_map}}}" for m in cfg.mix)
    return frames + [f"data.train_root={vis['root']}", f"data.train_annotations={vis['ytvis']}",
                     f"data.mix=[{mix}]"]


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def in_process(preset: str, stage: str, out: Path, overrides: list[str], init: Path | None) -> str:
    """`vidseg.training.run.train` in this process, batch 1."""
    handler, logger = _Warnings(), logging.getLogger("vidseg")
    logger.addHandler(handler)
    try:
        summary = train(preset, stage, out, overrides=COMMON + overrides + ["optim.batch_size=1"], device="cpu",
                        init=init, checkpoint_every=100)
    finally:
        logger.removeHandler(handler)
    assert summary.iteration == 2
    return "\n".join(handler.lines)


def under_torchrun(preset: str, stage: str, out: Path, overrides: list[str], init: Path | None) -> str:
    """`torchrun --nproc_per_node 2 -m vidseg.cli train ...`: two ranks (gloo), batch 2 (a clip per rank)."""
    args = ["train", preset, "--stage", stage, "--out", str(out), "--device", "cpu", "--checkpoint-every", "100"]
    if init is not None:
        args += ["--init", str(init)]
    for o in COMMON + overrides + ["optim.batch_size=2"]:
        args += ["--set", o]
    proc = torchrun_vidseg(args)
    # Each rank prints its summary (unbuffered, `python -u`: the two lines may run into each other); only rank 0
    # writes, and names, the checkpoint.
    done = re.findall(r"(?:finished|interrupted) iteration \d+; checkpoint: (?:None|/\S*?ckpt_\d{7})", proc.stdout)
    assert sorted(done) == sorted([f"finished iteration 2; checkpoint: {latest_checkpoint(out)}",
                                   "finished iteration 2; checkpoint: None"]), proc.stdout
    return proc.stderr


def _mvc_chain(dataset: str, backbone: str, data: dict, out: Path, extra: list[str], run: Runner) -> None:
    init = None
    for stage in STAGES:
        preset = f"mvc_oma/{dataset}_{backbone}_{stage}"
        run(preset, stage, out / stage, _data(preset, dataset, data) + extra, init)
        if init is not None:  # a ViT-L checkpoint is 1.3 GB: keep only the newest
            shutil.rmtree(init.parent)
        init = latest_checkpoint(out / stage)
        assert init is not None and init.name == "ckpt_0000002"


def _l2g_chain(dataset: str, data: dict, out: Path, extra: list[str], run: Runner) -> None:
    init = None
    if dataset == "synthetic":  # the tiny preset's documented chain: its segmenter warm start, then l2g
        preset = "local2global/synthetic_tiny"
        run(preset, "segmenter", out / "segmenter", _data(preset, dataset, data), None)
        run(preset, "l2g", out / "video", _data(preset, dataset, data), latest_checkpoint(out / "segmenter"))
        assert latest_checkpoint(out / "video").name == "ckpt_0000002"
        return
    if dataset != "vipseg":
        run("local2global/coco_r50_pretrain", "l2g", out / "coco",
            _data("local2global/coco_r50_pretrain", dataset, data) + extra, None)
        init = latest_checkpoint(out / "coco")
        assert init is not None and init.name == "ckpt_0000002"
    preset = f"local2global/{dataset}_r50"
    log = run(preset, "l2g", out / "video", _data(preset, dataset, data) + extra, init)
    assert latest_checkpoint(out / "video").name == "ckpt_0000002"
    lines = [line for line in log.splitlines() if "class-head" in line]
    if init is None:
        assert not lines
        return
    k = load_preset_or_file(preset).model.num_classes
    assert len(lines) == (1 if run is in_process else 2), log  # one per rank
    for line in lines:
        assert f"80 classes -> {k}: re-initialised 4 class-head tensors: segmenter.decoder.class_head.bias, " \
               "segmenter.decoder.class_head.weight, video.selector.class_head.bias" in line


# ---------------------------------------------------------------------------------------------------------
# default suite: tiny backbone, one process


@pytest.mark.parametrize("dataset", MVC_DATASETS)
def test_mvc_oma_chain_trains_with_a_tiny_backbone(dataset, data, tmp_path):
    _mvc_chain(dataset, "r50", data, tmp_path, TINY, in_process)


def test_synthetic_tiny_chains_train_as_shipped(data, tmp_path):
    _mvc_chain("synthetic", "tiny", data, tmp_path / "mvc", [], in_process)
    _l2g_chain("synthetic", data, tmp_path / "l2g", [], in_process)


@pytest.mark.parametrize("dataset", L2G_DATASETS)
def test_l2g_chain_trains_with_a_tiny_backbone(dataset, data, tmp_path):
    _l2g_chain(dataset, data, tmp_path, L2G_TINY, in_process)


# ---------------------------------------------------------------------------------------------------------
# -m slow: the presets' backbones under `torchrun --nproc_per_node 2`


@pytest.mark.slow
@pytest.mark.parametrize("dataset", MVC_DATASETS)
def test_mvc_oma_r50_chain_trains_under_torchrun(dataset, data, tmp_path):
    _mvc_chain(dataset, "r50", data, tmp_path, SHIPPED, under_torchrun)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", L2G_DATASETS)
def test_l2g_r50_chain_trains_under_torchrun(dataset, data, tmp_path):
    _l2g_chain(dataset, data, tmp_path, SHIPPED, under_torchrun)


@pytest.mark.slow
def test_synthetic_tiny_chains_train_under_torchrun(data, tmp_path):
    _mvc_chain("synthetic", "tiny", data, tmp_path / "mvc", [], under_torchrun)
    _l2g_chain("synthetic", data, tmp_path / "l2g", [], under_torchrun)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", MVC_DATASETS)
def test_mvc_oma_vitl_chain_trains_under_torchrun(dataset, data, tmp_path):
    _mvc_chain(dataset, "vitl", data, tmp_path, SHIPPED, under_torchrun)


# ---------------------------------------------------------------------------------------------------------
# what the presets say


def test_r50_presets_use_the_documented_dvis_plus_switches():
    for dataset in MVC_DATASETS:
        for stage in STAGES:
            cfg = load_preset_or_file(f"mvc_oma/{dataset}_r50_{stage}")
            assert not cfg.model.backbone.pretrained  # builds without an ImageNet file; weights come from --init
            assert cfg.model.tracker.noise_ratio == (0.8 if dataset in ("ovis", "ytvis19") else 0.5)
            assert cfg.model.refiner.use_cl == (dataset != "vipseg")


def test_vitl_presets_are_the_r50_recipes_with_the_dvis_plus_vitl_settings():
    for dataset in MVC_DATASETS:
        for stage in STAGES:
            vitl = to_dict(load_preset_or_file(f"mvc_oma/{dataset}_vitl_{stage}"))
            r50 = to_dict(load_preset_or_file(f"mvc_oma/{dataset}_r50_{stage}"))
            backbone = vitl["model"].pop("backbone")
            assert (backbone["name"], backbone["pretrained"], backbone["freeze_vit"]) == ("vit_adapter_l", False, True)
            assert vitl["model"]["decoder"].pop("num_queries") == 200
            del r50["model"]["backbone"], r50["model"]["decoder"]["num_queries"]
            assert {**vitl, "name": ""} == {**r50, "name": ""}


def test_l2g_class_heads_reinit_only_after_image_pretraining_or_when_asked(tmp_path, caplog):
    from vidseg.config import apply_overrides
    from vidseg.errors import CheckpointError
    from vidseg.io.checkpoint import load_checkpoint, save_checkpoint
    from vidseg.models.model import build_model
    from vidseg.training.l2g import L2GStage

    base = apply_overrides(load_preset_or_file("local2global/synthetic_tiny"), ["model.decoder.num_queries=4"])

    def checkpoint(name: str, pretraining: bool):
        cfg = apply_overrides(base, ["model.num_classes=9", f"model.l2g.image_pretraining={str(pretraining).lower()}"])
        return save_checkpoint(tmp_path / name, build_model(cfg.model).state_dict(), cfg, "l2g", 1)

    video, pretrained = checkpoint("video", False), checkpoint("pretrained", True)
    with pytest.raises(CheckpointError, match="model.num_classes is 9, the experiment config has 4 .*"
                                              "set optim.init_skip_mismatched=true"):
        L2GStage.from_config(base, video)
    with caplog.at_level(logging.WARNING, logger="vidseg.training.stages"):
        stage = L2GStage.from_config(base, pretrained)
        L2GStage.from_config(apply_overrides(base, ["optim.init_skip_mismatched=true"]), video)
    assert stage.model.segmenter.decoder.class_head.weight.shape[0] == 4
    saved = load_checkpoint(pretrained).state_dict
    own = stage.model.state_dict()
    assert all(own[k].equal(v) for k, v in saved.items() if "class_head" not in k)  # the rest is the checkpoint's
    assert "9 classes -> 4: re-initialised 4 class-head tensors" in caplog.records[0].getMessage()
    assert "re-initialised 4 tensors (shape differs or not in the file)" in caplog.records[1].getMessage()
    # same K: loaded strictly, no log line
    caplog.clear()
    same = apply_overrides(base, ["model.num_classes=9"])
    loaded = L2GStage.from_config(same, video).model.state_dict()
    assert not caplog.records
    assert all(loaded[k].equal(v) for k, v in load_checkpoint(video).state_dict.items())
