"""Image metrics of `vidseg eval`: mIoU (detectron2 SemSegEvaluator rules) and COCO mask AP (pycocotools)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.cli import main
from vidseg.errors import DataFormatError
from vidseg.evaluation.coco_ap import evaluate_coco_ap
from vidseg.evaluation.image_miou import ConfusionMatrix, evaluate_image_miou, miou_from_confusion
from vidseg.structures import encode_rle


def _png(path: Path, labels: list[list[int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(labels, np.uint8)).save(path)


@pytest.fixture
def miou_files(tmp_path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    # image a: GT 0 0 1 / 1 1 255; prediction 0 1 1 / 1 2 0 (the 255 pixel is not scored)
    _png(gt / "a.png", [[0, 0, 1], [1, 1, 255]])
    _png(pred / "a.png", [[0, 1, 1], [1, 2, 0]])
    # image b (in a subfolder): GT 2 2 / 0 0; prediction 2 255 / 0 3 (255: no class; 3: absent from the GT)
    _png(gt / "city" / "b.png", [[2, 2], [0, 0]])
    _png(pred / "city" / "b.png", [[2, 255], [0, 3]])
    return gt, pred


def test_image_miou_by_hand(miou_files):
    """Scored pixels (GT, prediction): a: (0,0) (0,1) (1,1) (1,1) (1,2); b: (2,2) (2,255) (0,0) (0,3).
    Class 0: GT 4, predicted 2, TP 2 -> IoU 2/4. Class 1: GT 3, predicted 3, TP 2 -> 2/4. Class 2: GT 2,
    predicted 2, TP 1 -> 1/3. Class 3 is not in the GT: no IoU of its own, its pixel is a miss of class 0."""
    m = evaluate_image_miou(*miou_files, workers=1)
    assert m.per_class_iou == pytest.approx({0: 2 / 4, 1: 2 / 4, 2: 1 / 3})
    assert m.mIoU == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 3)
    assert m.pACC == pytest.approx(5 / 9)
    assert m.mACC == pytest.approx((2 / 4 + 2 / 3 + 1 / 2) / 3)
    assert m.fwIoU == pytest.approx((4 / 2 + 3 / 2 + 2 / 3) / 9)
    assert m.num_images == 2


def test_confusion_matrix_counts_pred_gt_pairs():
    cm = ConfusionMatrix()
    cm.add(np.array([[0, 1], [255, 1]]), np.array([[0, 0], [1, 1]]))
    cm.add(np.array([[3]]), np.array([[3]]))  # grows the matrix
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0] = expected[0, 1] = expected[1, 1] = expected[3, 3] = 1
    assert np.array_equal(cm.matrix, expected)
    m = miou_from_confusion(cm.matrix)
    assert m.per_class_iou == {0: 0.5, 1: 0.5, 3: 1.0}


def test_image_miou_reduce_zero_label_and_missing_prediction(tmp_path):
    _png(tmp_path / "gt" / "x.png", [[0, 1, 2]])  # ADE20K: 0 other (ignored), 1 -> class 0, 2 -> class 1
    _png(tmp_path / "pred" / "x.png", [[5, 0, 0]])
    m = evaluate_image_miou(tmp_path / "gt", tmp_path / "pred", reduce_zero_label=True, workers=1)
    assert m.per_class_iou == {0: 0.5, 1: 0.0}
    _png(tmp_path / "gt" / "y.png", [[0]])
    with pytest.raises(DataFormatError, match="no prediction"):
        evaluate_image_miou(tmp_path / "gt", tmp_path / "pred", workers=1)


def test_vidseg_eval_miou_writes_the_metrics(miou_files, tmp_path, capsys):
    gt, pred = miou_files
    assert main(["eval", "--task", "miou", "--gt", str(gt), "--pred", str(pred), "--workers", "1",
                 "--out", str(tmp_path / "m.json")]) == 0
    assert "image mIoU" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["mIoU"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 3)


# --- COCO mask AP -----------------------------------------------------------------------------------------


def _box(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[rows, cols] = 1
    return m


def _coco(tmp_path: Path) -> tuple[Path, list[dict]]:
    """Image 1: a 10x10 cat and a 10x10 dog. The cat is found exactly; the dog's prediction covers 72 of its
    100 pixels (IoU 0.72: a match at IoU thresholds 0.50..0.70, 5 of 10)."""
    h, w = 40, 40
    cat, dog = _box(h, w, slice(0, 10), slice(0, 10)), _box(h, w, slice(20, 30), slice(20, 30))
    gt = {
        "images": [{"id": 1, "height": h, "width": w, "file_name": "1.jpg"}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(cat), "area": 100.0,
             "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": encode_rle(dog), "area": 100.0,
             "bbox": [20, 20, 10, 10], "iscrowd": 0},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(gt))
    results = [
        {"image_id": 1, "category_id": 1, "segmentation": encode_rle(cat), "score": 0.9},
        {"image_id": 1, "category_id": 2, "segmentation": encode_rle(_box(h, w, slice(20, 29), slice(20, 28))),
         "score": 0.8},
    ]
    return path, results


def test_coco_mask_ap_by_hand(tmp_path):
    gt, results = _coco(tmp_path)
    m = evaluate_coco_ap(gt, results)
    assert m.per_class_ap == pytest.approx({"cat": 1.0, "dog": 0.5})
    assert pytest.approx(0.75) == m.AP
    assert m.stats["AP50"] == pytest.approx(1.0) and m.stats["AP75"] == pytest.approx(0.5)
    assert m.stats["APs"] == pytest.approx(0.75) and m.stats["APm"] == -1 and m.stats["APl"] == -1


def test_coco_mask_ap_equals_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, results = _coco(tmp_path)
    results.append({"image_id": 1, "category_id": 1, "score": 0.95,  # a confident false positive
                    "segmentation": encode_rle(_box(40, 40, slice(30, 40), slice(0, 12)))})
    (tmp_path / "results.json").write_text(json.dumps(results))
    coco_gt = COCO(str(gt))
    ev = COCOeval(coco_gt, coco_gt.loadRes(str(tmp_path / "results.json")), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    m = evaluate_coco_ap(gt, tmp_path / "results.json")
    assert list(m.stats.values()) == [float(x) for x in ev.stats]
    assert m.per_class_ap["cat"] < 1.0


def test_vidseg_eval_coco_ap(tmp_path, capsys):
    gt, results = _coco(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["eval", "--task", "coco_ap", "--gt", str(gt), "--pred", str(tmp_path / "results.json"),
                 "--out", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "COCO mask AP" in out and "Loading" not in out  # pycocotools' own printing is kept quiet
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == pytest.approx(0.75)
    (tmp_path / "bad.json").write_text(json.dumps([{**results[0], "image_id": 7}]))
    assert main(["eval", "--task", "coco_ap", "--gt", str(gt), "--pred", str(tmp_path / "bad.json")]) == 2
    assert "not in the GT" in capsys.readouterr().err
    assert math.isclose(evaluate_coco_ap(gt, []).AP, 0.0)
