"""Dataset-split evaluation through the predictor: files in the official formats, scored like `vidseg eval`."""

from __future__ import annotations

import pytest
import torch

from vidseg.config import apply_overrides, load_preset_or_file
from vidseg.data.formats.vipseg import read_vipseg
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.errors import DataFormatError
from vidseg.evaluation.report import evaluate_task
from vidseg.inference.dataset_eval import evaluate_vis, evaluate_vps, evaluate_vss
from vidseg.inference.predictor import VideoPredictor
from vidseg.models.model import build_model
from vidseg.types import ClassInfo

TINY = ["model.pixel_decoder.hidden_dim=32", "model.pixel_decoder.mask_dim=32", "model.pixel_decoder.ffn_dim=64",
        "model.pixel_decoder.num_layers=1", "model.decoder.hidden_dim=32", "model.decoder.ffn_dim=64",
        "model.decoder.num_queries=8", "model.decoder.num_layers=2", "model.tracker.num_layers=1",
        "model.tracker.ffn_dim=64", "inference.min_size=64", "inference.max_size=96"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, 4, 6, 64, 96, formats=("vipseg", "ytvis", "vspw"), seed=5)
    return out


@pytest.fixture(scope="module")
def model_and_config():
    cfg = apply_overrides(load_preset_or_file("dvis_plus/synthetic_tiny_tracker"), TINY)
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


@pytest.fixture(scope="module")
def classes(synth):
    return ClassInfo.from_categories(read_vipseg(synth / "vipseg" / "panoptic_gt_VIPSeg_val.json").categories)


def _predictor(model_and_config, task, classes=None):
    model, cfg = model_and_config
    return VideoPredictor(model, cfg, task=task, device="cpu", classes=classes)


def test_vps_split_scores_equal_vidseg_eval_on_the_written_files(synth, model_and_config, tmp_path):
    gt = synth / "vipseg" / "panoptic_gt_VIPSeg_val.json"
    scores = evaluate_vps(_predictor(model_and_config, "vps"), gt, tmp_path / "vps")
    assert (tmp_path / "vps" / "pred.json").exists() and any((tmp_path / "vps" / "pan_pred").iterdir())
    again = evaluate_task("vps", gt, tmp_path / "vps", workers=1)
    assert scores.metrics.vpq.windows[0].pq_all == again.vpq.windows[0].pq_all
    assert scores.metrics.stq.STQ == again.stq.STQ
    sw = scores.id_switches
    assert sw.objects > 0 and 0 <= sw.matched <= sw.objects and sw.switches <= sw.matched


def test_vis_split_maps_classes_by_name_and_drops_stuff(synth, model_and_config, classes, tmp_path):
    gt = synth / "ytvis" / "val" / "instances.json"
    with pytest.raises(DataFormatError, match="categories"):
        evaluate_vis(_predictor(model_and_config, "vis"), gt, tmp_path / "generic.zip")
    scores = evaluate_vis(_predictor(model_and_config, "vis", classes), gt, tmp_path / "vis.zip")
    import json
    import zipfile

    entries = json.loads(zipfile.ZipFile(tmp_path / "vis.zip").read("results.json"))
    assert entries and {e["category_id"] for e in entries} <= {1, 2, 3, 4}
    assert scores.metrics.AP == evaluate_task("vis", gt, tmp_path / "vis.zip", workers=1).AP
    assert scores.id_switches.objects > 0 and scores.id_switches.switches <= scores.id_switches.matched


def test_vss_split_writes_class_pngs(synth, model_and_config, tmp_path):
    scores = evaluate_vss(_predictor(model_and_config, "vss"), synth / "vspw", "val", tmp_path / "vss")
    assert 0.0 <= scores.metrics.mIoU <= 1.0
    assert len(list((tmp_path / "vss").rglob("*.png"))) == 6


def test_task_mismatch_is_an_error(synth, model_and_config, tmp_path):
    with pytest.raises(ValueError, match="vps predictor"):
        evaluate_vps(_predictor(model_and_config, "vis"), synth / "vipseg" / "panoptic_gt_VIPSeg_val.json",
                     tmp_path / "x")
