"""`vidseg eval --task cvps`: Cityscapes-VPS VPQ on a hand-made 6-frame video whose numbers are worked out
by hand (tube matching at nframes = 1, 2, 3, 4; VPQ = their mean)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.cli import main
from vidseg.errors import DataFormatError
from vidseg.evaluation.cityscapes_vps import evaluate_cityscapes_vps, gt_png_name
from vidseg.structures import panoptic_to_rgb

H, W = 8, 8
ROAD, CAR = 0, 13  # Cityscapes train ids: road (stuff), car (thing)
ROAD_ID, CAR_ID = 7, 26 * 1000 + 1  # segment ids in the maps


def _frame() -> np.ndarray:
    pan = np.full((H, W), ROAD_ID, np.int32)
    pan[2:6, 2:6] = CAR_ID  # 16 px car
    pan[0, :] = 0  # a void row
    return pan


def _write_png(path: Path, pan: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(panoptic_to_rgb(pan)).save(path)


@pytest.fixture
def cvps(tmp_path) -> Path:
    """`<root>/panoptic_gt_val_city_vps.json` + `<root>/val/panoptic_video/*_gtFine_color.png`: one video of six
    annotated frames, a road and a car in each."""
    root = tmp_path / "cityscapes_vps"
    images, anns = [], []
    for t in range(6):
        image_id = f"0001_{t * 5:04d}_frankfurt_000000_{t:06d}"
        file_name = f"{image_id}_leftImg8bit.png"
        images.append({"id": image_id, "file_name": file_name, "height": H, "width": W})
        anns.append({"image_id": image_id, "segments_info": [
            {"id": ROAD_ID, "category_id": ROAD, "iscrowd": 0, "area": int((_frame() == ROAD_ID).sum())},
            {"id": CAR_ID, "category_id": CAR, "iscrowd": 0, "area": 16},
        ]})
        _write_png(root / "val" / "panoptic_video" / gt_png_name(file_name), _frame())
    categories = [{"id": ROAD, "name": "road", "isthing": 0}, {"id": CAR, "name": "car", "isthing": 1}]
    (root / "panoptic_gt_val_city_vps.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return root


def _submission(root: Path, out: Path, car_ids: list[int]) -> Path:
    """`pred.json` + `pan_pred/<image_id>.png`: the GT maps with the car as segment `car_ids[t]` in frame t."""
    gt = json.loads((root / "panoptic_gt_val_city_vps.json").read_text())
    anns = []
    for img, car in zip(gt["images"], car_ids):
        pan = _frame()
        pan[pan == CAR_ID] = car
        _write_png(out / "pan_pred" / f"{img['id']}.png", pan)
        anns.append({"image_id": img["id"], "segments_info": [{"id": ROAD_ID, "category_id": ROAD},
                                                              {"id": car, "category_id": CAR}]})
    (out / "pred.json").write_text(json.dumps({"annotations": anns}))
    return out


def test_perfect_prediction_is_vpq_100(cvps, tmp_path):
    m = evaluate_cityscapes_vps(cvps, _submission(cvps, tmp_path / "pred", [5] * 6), workers=1)
    assert [w.nframes for w in m.windows] == [1, 2, 3, 4]
    assert pytest.approx(100.0) == m.VPQ and m.VPQ_thing == pytest.approx(100.0)


def test_an_identity_switch_by_hand(cvps, tmp_path):
    """The car is segment A in frames 0-2 and B in frames 3-5 (the road is always right: PQ 1).
    nframes 1: 6 TP -> car PQ 1. nframes 2 (5 tubes): 4 TP; the tube over frames 2-3 has IoU 1/2 (not > 1/2):
    1 FN + 2 FP -> 4 / (4 + 1 + 0.5) = 8/11. nframes 3 (4 tubes): tubes 1-3 and 2-4 match at IoU 2/3 with one
    FP each -> (1 + 2/3 + 2/3 + 1) / (4 + 1) = 2/3. nframes 4 (3 tubes): 0-3 and 2-5 match at 3/4 with one FP
    each, 1-4 splits 2/2 (1 FN + 2 FP) -> 1.5 / (2 + 2 + 0.5) = 1/3."""
    m = evaluate_cityscapes_vps(cvps, _submission(cvps, tmp_path / "pred", [5, 5, 5, 9, 9, 9]), workers=1)
    car = [1.0, 8 / 11, 2 / 3, 1 / 3]
    assert [w.pq_thing for w in m.windows] == pytest.approx(car)
    assert [w.pq_stuff for w in m.windows] == pytest.approx([1.0] * 4)
    assert [w.pq_all for w in m.windows] == pytest.approx([(c + 1) / 2 for c in car])
    assert m.VPQ_thing == pytest.approx(100 * sum(car) / 4)
    assert pytest.approx(100 * sum((c + 1) / 2 for c in car) / 4) == m.VPQ


def test_vidseg_eval_cvps(cvps, tmp_path, capsys):
    pred = _submission(cvps, tmp_path / "pred", [5, 5, 5, 9, 9, 9])
    assert main(["eval", "--task", "cvps", "--gt", str(cvps), "--pred", str(pred), "--workers", "1",
                 "--out", str(tmp_path / "m.json")]) == 0
    assert "Cityscapes-VPS" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["VPQ"] == pytest.approx(100 * sum((c + 1) / 2 for c in [1.0, 8 / 11, 2 / 3, 1 / 3]) / 4)
    assert sorted(metrics["windows"]) == ["1", "2", "3", "4"] and metrics["windows"]["4"]["k"] == 15
    # the GT JSON path itself works too
    assert main(["eval", "--task", "cvps", "--gt", str(cvps / "panoptic_gt_val_city_vps.json"), "--pred", str(pred),
                 "--workers", "1"]) == 0


def test_missing_prediction_is_an_error(cvps, tmp_path):
    pred = _submission(cvps, tmp_path / "pred", [5] * 6)
    data = json.loads((pred / "pred.json").read_text())
    data["annotations"].pop(3)
    (pred / "pred.json").write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match="no prediction for image"):
        evaluate_cityscapes_vps(cvps, pred, workers=1)
