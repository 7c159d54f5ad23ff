"""A checkpoint stores its model's classes (names, thing flags, dataset ids): written at training and by the
converter, read by the predictor, so a checkpoint moved away from its dataset keeps its class names."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from vidseg.data.classes import dataset_classes
from vidseg.data.formats.vipseg import read_vipseg
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.errors import CheckpointError
from vidseg.inference.predictor import VideoPredictor, class_info_from_config
from vidseg.io.checkpoint import load_checkpoint, read_classes, save_checkpoint
from vidseg.models.model import build_model
from vidseg.training.run import train
from vidseg.types import ClassInfo


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-iteration segmenter run on the synthetic VIPSeg data (its 7 classes), and that data."""
    tmp = tmp_path_factory.mktemp("classes")
    write_synthetic_dataset(tmp / "synth", 2, 3, 64, 96, formats=("vipseg",), seed=1)
    root = tmp / "synth" / "vipseg"
    overrides = [f"data.train_root={root}", f"data.val_root={root}", "data.num_frames=1", "data.min_size=[64]",
                 "data.max_size=96", "data.num_workers=0", "optim.batch_size=1", "optim.max_iters=1",
                 "inference.min_size=64", "inference.max_size=96"]
    torch.manual_seed(0)
    summary = train("mask2former/synthetic_tiny", "segmenter", tmp / "run", overrides=overrides, device="cpu",
                    checkpoint_every=100)
    assert summary.last_checkpoint is not None
    return summary.last_checkpoint, root


def test_training_stores_the_dataset_classes(run):
    ckpt, root = run
    expected = ClassInfo.from_categories(read_vipseg(root / "panoptic_gt_VIPSeg_train.json").categories)
    assert load_checkpoint(ckpt).classes == expected == read_classes(ckpt)
    assert dataset_classes(load_checkpoint(ckpt).config.data, 7) == expected


def test_the_predictor_reads_the_stored_classes_without_the_dataset(run, tmp_path):
    ckpt, root = run
    moved = shutil.copytree(ckpt, tmp_path / "ckpt")
    with_data = VideoPredictor.from_checkpoint(moved, device="cpu").classes
    shutil.move(root, tmp_path / "elsewhere")  # the config's dataset is gone
    try:
        assert VideoPredictor.from_checkpoint(moved, device="cpu").classes == with_data
        assert with_data.names[0] != "class 0"
    finally:
        shutil.move(tmp_path / "elsewhere", root)


def test_a_checkpoint_without_classes_falls_back_to_the_config(run, tmp_path):
    """Checkpoints of older versions: the classes of the dataset the config names, or generic names."""
    ckpt, root = run
    loaded = load_checkpoint(ckpt)
    old = save_checkpoint(tmp_path / "old", loaded.state_dict, loaded.config, loaded.stage, loaded.iteration)
    assert "classes" not in json.loads((old / "manifest.json").read_text()) and read_classes(old) is None
    predictor = VideoPredictor.from_checkpoint(old, device="cpu")
    assert predictor.classes == class_info_from_config(loaded.config) == class_info_from_config(
        loaded.config, loaded.classes)
    moved = loaded.config.data.__class__(format="vipseg", val_root=str(tmp_path / "nowhere"))
    assert dataset_classes(moved, 7) is None
    config = loaded.config.__class__(**{**loaded.config.__dict__, "data": moved})
    assert class_info_from_config(config) == ClassInfo.generic(7)


def test_corrupt_stored_classes_are_a_checkpoint_error(tmp_path):
    from test_predictor import tiny_config

    cfg = tiny_config("minvis")
    path = save_checkpoint(tmp_path / "c", build_model(cfg).segmenter.state_dict(), cfg, "segmenter", 0,
                           classes=ClassInfo.generic(cfg.model.num_classes))
    assert read_classes(path) == ClassInfo.generic(cfg.model.num_classes)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["classes"] = {"names": ["a"]}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="corrupt classes"):
        load_checkpoint(path)
