"""Every `mvc_oma/*_r50_*` recipe chain trains segmenter -> tracker -> refiner, each stage started (`--init`)
from the previous one's checkpoint, on synthetic VIPSeg-format data (`vidseg data synth`): a tiny-backbone
variant in the default suite, the R50 presets as shipped (pretrained: false, tiny inputs) under `-m slow`."""

from __future__ import annotations

import pytest

from vidseg.config import load_preset_or_file
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.training.run import train

DATASETS = ["ovis", "ytvis19", "ytvis21", "vipseg", "vspw"]
DATA = ["data.format=vipseg", "inference.task=vps", "data.min_size=[64]", "data.max_size=96", "data.num_workers=0",
        "data.crop_size=null", "data.train_annotations=''", "data.val_annotations=''", "optim.batch_size=1",
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
        init = summary.last_checkpoint


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
