"""Every `mvc_oma/*_r50_*` recipe chain trains segmenter -> tracker -> refiner, each stage started (`--init`)
from the previous one's checkpoint, on synthetic VIPSeg-format data (`vidseg data synth`; COCO joint training
off); the Local2Global chain trains phase 1 (`local2global/coco_r50_pretrain`, image pre-training on COCO) ->
phase 2 (`local2global/<dataset>_r50`, video + COCO pseudo-videos mixed as the preset says) on a synthetic
YouTube-VIS set and a COCO JSON of its frames. Each: a tiny-backbone variant in the default suite, the R50
presets as shipped (pretrained: false, tiny inputs) under `-m slow`."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.multiprocessing as mp
from ddp import free_port, set_rank_env
from test_data_mixing import write_vis_and_coco

from vidseg.config import load_preset_or_file
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.training.checkpoint import latest_checkpoint
from vidseg.training.run import train

DATASETS = ["ovis", "ytvis19", "ytvis21", "vipseg", "vspw"]
DATA = ["data.format=vipseg", "data.mix=[]", "inference.task=vps", "data.min_size=[64]", "data.max_size=96",
        "data.num_workers=0", "data.crop_size=null", "data.train_annotations=''", "data.val_annotations=''",
        "optim.batch_size=1",
        "optim.max_iters=2", "optim.amp=none", "loss.num_points=64"]
TINY = ["model.backbone.name=tiny_cnn", "model.backbone.frozen_bn=false", "model.pixel_decoder.hidden_dim=32",
        "model.pixel_decoder.mask_dim=32", "model.pixel_decoder.ffn_dim=64", "model.pixel_decoder.num_layers=1",
        "model.decoder.hidden_dim=32", "model.decoder.ffn_dim=64", "model.decoder.num_queries=8",
        "model.decoder.num_layers=2", "model.tracker.num_layers=2", "model.tracker.ffn_dim=64",
        "model.tracker.num_heads=4", "model.refiner.num_layers=2", "model.refiner.ffn_dim=64",
        "model.refiner.num_heads=4", "model.decoder.num_heads=4", "model.pixel_decoder.num_heads=4"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, 2, 6, 64, 96, formats=("vipseg",), seed=5)
    return out / "vipseg"


def _chain(dataset: str, root, out, extra: list[str], max_frames: int) -> None:
    init = None
    for stage in ("segmenter", "tracker", "refiner"):
        preset = f"mvc_oma/{dataset}_r50_{stage}"
        frames = min(load_preset_or_file(preset).data.num_frames, max_frames)
        overrides = DATA + extra + [f"data.train_root={root}", f"data.val_root={root}", f"data.num_frames={frames}"]
        summary = train(preset, stage, out / stage, overrides=overrides, device="cpu", init=init,
                        checkpoint_every=100)
        assert summary.iteration == 2
        init = latest_checkpoint(out / stage)  # every rank: only rank 0's summary names the file it wrote


@pytest.mark.parametrize("dataset", DATASETS)
def test_mvc_oma_chain_trains_with_a_tiny_backbone(dataset, synth, tmp_path):
    _chain(dataset, synth, tmp_path, TINY, max_frames=3)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
def test_mvc_oma_r50_chain_trains_as_shipped(dataset, synth, tmp_path):
    _chain(dataset, synth, tmp_path, ["model.decoder.num_queries=20"], max_frames=5)


def test_r50_presets_use_the_documented_dvis_plus_switches():
    for dataset in DATASETS:
        for stage in ("segmenter", "tracker", "refiner"):
            cfg = load_preset_or_file(f"mvc_oma/{dataset}_r50_{stage}")
            assert not cfg.model.backbone.pretrained  # builds without an ImageNet file; weights come from --init
            assert cfg.model.tracker.noise_ratio == (0.8 if dataset in ("ovis", "ytvis19") else 0.5)
            assert cfg.model.refiner.use_cl == (dataset != "vipseg")


# ---------------------------------------------------------------------------------------------------------
# Local2Global: COCO image pre-training -> video training

L2G_DATASETS = ["ovis", "ytvis19", "ytvis21", "ytvis22"]
L2G_VOCABULARY = {"ovis": "ovis", "ytvis19": "ytvis19", "ytvis21": "ytvis21", "ytvis22": "ytvis21"}
L2G_DATA = ["data.min_size=[64]", "data.max_size=96", "data.num_workers=0", "data.crop_size=null",
            "data.num_frames=2", "data.val_root=''", "data.val_annotations=''", "optim.batch_size=1",
            "optim.max_iters=2", "optim.amp=none", "loss.num_points=64"]
L2G_TINY = [o for o in TINY if not o.startswith(("model.tracker", "model.refiner"))] + [
    "model.l2g.aligner_ffn_dim=64", "model.l2g.aligner_heads=4"]


@pytest.fixture(scope="module")
def vis_coco(tmp_path_factory):
    """Per vocabulary: a synthetic YouTube-VIS train set labelled with it and a COCO JSON of its frames."""
    out = tmp_path_factory.mktemp("l2g")
    return {v: write_vis_and_coco(out / v, v, num_videos=2) for v in sorted(set(L2G_VOCABULARY.values()))}


def _l2g_chain(dataset: str, data: dict, out, extra: list[str], caplog) -> None:
    root, coco = data["root"], data["coco"]
    phase1 = train("local2global/coco_r50_pretrain", "l2g", out / "coco", device="cpu", checkpoint_every=100,
                   overrides=L2G_DATA + extra + [f"data.train_root={root}", f"data.train_annotations={coco}"])
    assert phase1.iteration == 2
    preset = f"local2global/{dataset}_r50"
    (mix,) = load_preset_or_file(preset).data.mix
    mixing = (f"data.mix=[{{format: coco, root: {root}, annotations: {coco}, ratio: {mix.ratio}, "
              f"class_map: {mix.class_map}}}]")
    video = [f"data.train_root={root}", f"data.train_annotations={data['ytvis']}", mixing]
    if caplog is None:  # a DDP worker: the log line is checked by the single-process chains
        phase2 = train(preset, "l2g", out / "video", overrides=L2G_DATA + extra + video, device="cpu",
                       init=latest_checkpoint(out / "coco"), checkpoint_every=100)
        assert phase2.iteration == 2
        return
    with caplog.at_level(logging.WARNING, logger="vidseg.training.stages"):
        phase2 = train(preset, "l2g", out / "video", overrides=L2G_DATA + extra + video, device="cpu",
                       init=latest_checkpoint(out / "coco"), checkpoint_every=100)
    assert phase2.iteration == 2
    k = load_preset_or_file(preset).model.num_classes
    (line,) = [r.getMessage() for r in caplog.records if "class-head" in r.getMessage()]
    assert f"80 classes -> {k}: re-initialised 4 class-head tensors: segmenter.decoder.class_head.bias, " \
           "segmenter.decoder.class_head.weight, video.selector.class_head.bias" in line


@pytest.mark.parametrize("dataset", L2G_DATASETS)
def test_l2g_coco_pretraining_then_video_chain_trains_with_a_tiny_backbone(dataset, vis_coco, tmp_path, caplog):
    _l2g_chain(dataset, vis_coco[L2G_VOCABULARY[dataset]], tmp_path, L2G_TINY, caplog)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", L2G_DATASETS)
def test_l2g_r50_chain_trains_as_shipped(dataset, vis_coco, tmp_path, caplog):
    _l2g_chain(dataset, vis_coco[L2G_VOCABULARY[dataset]], tmp_path, ["model.decoder.num_queries=20"], caplog)


def test_l2g_class_heads_reinit_only_after_image_pretraining_or_when_asked(tmp_path, caplog):
    from vidseg.config import apply_overrides
    from vidseg.errors import CheckpointError
    from vidseg.models.model import build_model
    from vidseg.training.checkpoint import load_checkpoint, save_checkpoint
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


# ---------------------------------------------------------------------------------------------------------
# Both chain kinds at R50 under two DDP processes (gloo), as `torchrun --nproc_per_node 2` runs them


def _ddp_chain_worker(rank: int, world: int, port: int, kind: str, dataset: str, data, out) -> None:
    set_rank_env(rank, world, port)
    extra = ["model.decoder.num_queries=20", "optim.batch_size=2"]
    if kind == "mvc_oma":
        _chain(dataset, data, out, extra, max_frames=3)
    else:
        _l2g_chain(dataset, data, out, extra, None)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "dataset"), [("mvc_oma", d) for d in DATASETS] + [("l2g", d) for d in L2G_DATASETS])
def test_r50_chains_train_under_two_ddp_processes(kind, dataset, synth, vis_coco, tmp_path):
    data = synth if kind == "mvc_oma" else vis_coco[L2G_VOCABULARY[dataset]]
    mp.spawn(_ddp_chain_worker, args=(2, free_port(), kind, dataset, data, tmp_path), nprocs=2, join=True)
