"""Imported published checkpoints as starting points, and the paper presets' official test settings."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from parity import fixture, official_state_dict

from vidseg.config import load_preset_or_file
from vidseg.data.catalog import vocabulary
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.io.checkpoint import read_classes
from vidseg.published import OFFICIAL_TEST_SETTINGS, convert_weights
from vidseg.training.run import train
from vidseg.types import ClassInfo


@pytest.mark.parametrize("dataset", ["ovis", "vipseg", "vspw", "ytvis19", "ytvis21"])
@pytest.mark.parametrize("stage", ["segmenter", "tracker", "refiner"])
def test_mvc_oma_presets_test_as_the_official_configs(dataset: str, stage: str) -> None:
    inference = load_preset_or_file(f"mvc_oma/{dataset}_r50_{stage}").inference
    assert inference == replace(OFFICIAL_TEST_SETTINGS[dataset], thing_rule="first")


@pytest.mark.slow  # ~85 s on 2 cores (an R50 DVIS++ trains one iteration): keeps the default suite under 10 min
def test_train_refiner_from_a_converted_dvis_plus_tracker(tmp_path) -> None:
    folder = fixture("dvis_plus_r50_vipseg_online")
    pth = tmp_path / "dvis_online.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in official_state_dict(folder).items()}}, pth)
    convert_weights("dvis_plus", pth, tmp_path / "converted", dataset="vipseg")
    vocab = vocabulary("vipseg")  # the classes are stored with the converted checkpoint
    assert read_classes(tmp_path / "converted") == ClassInfo(vocab.names, vocab.is_thing, vocab.category_ids)
    write_synthetic_dataset(tmp_path / "synth", 2, 4, 64, 96, formats=("vipseg",), seed=1)
    root = tmp_path / "synth" / "vipseg"
    overrides = [f"data.train_root={root}", f"data.val_root={root}", "data.num_frames=2", "data.min_size=[64]",
                 "data.max_size=96", "data.num_workers=0", "optim.batch_size=1", "optim.max_iters=1"]
    summary = train("mvc_oma/vipseg_r50_refiner", "refiner", tmp_path / "run", overrides=overrides, device="cpu",
                    init=tmp_path / "converted", checkpoint_every=100)
    assert summary.iteration == 1


@pytest.mark.slow
def test_segmenter_stage_starts_from_a_converted_coco_mask2former(tmp_path) -> None:
    import pickle

    folder = fixture("m2f_r50_coco_panoptic")
    with open(tmp_path / "model_final.pkl", "wb") as f:
        pickle.dump({"model": official_state_dict(folder), "__author__": "test"}, f)
    convert_weights("detectron2", tmp_path / "model_final.pkl", tmp_path / "coco", dataset="coco_panoptic")
    write_synthetic_dataset(tmp_path / "synth", 2, 4, 64, 96, formats=("vipseg",), seed=1)
    root = tmp_path / "synth" / "vipseg"
    overrides = [f"data.train_root={root}", f"data.val_root={root}", "data.min_size=[64]", "data.max_size=96",
                 "data.num_workers=0", "optim.batch_size=2", "optim.max_iters=1", "optim.amp=none",
                 "optim.init_skip_mismatched=true"]  # K 133 -> 124 and the new re-id head: re-initialised
    summary = train("mvc_oma/vipseg_r50_segmenter", "segmenter", tmp_path / "run", overrides=overrides,
                    device="cpu", init=tmp_path / "coco", checkpoint_every=100)
    assert summary.iteration == 1
