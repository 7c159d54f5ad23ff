"""COCO panoptic PQ from files: matching shared with VPQ, panopticapi layout and checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.errors import DataFormatError
from vidseg.evaluation.pq import evaluate_coco_panoptic
from vidseg.structures import panoptic_to_rgb


def write(root: Path, name: str, images: list[tuple[str, np.ndarray, list[dict]]], categories=None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    anns = []
    for image_id, pan, info in images:
        Image.fromarray(panoptic_to_rgb(pan)).save(folder / f"{image_id}.png")
        anns.append({"image_id": image_id, "file_name": f"{image_id}.png", "segments_info": info})
    data = {"annotations": anns}
    if categories is not None:
        data["categories"] = categories
        data["images"] = [{"id": i, "file_name": f"{i}.jpg"} for i, _, _ in images]
    (root / f"{name}.json").write_text(json.dumps(data))
    return root / f"{name}.json"


CATS = [{"id": 1, "name": "person", "isthing": 1}, {"id": 7, "name": "grass", "isthing": 0}]


def test_pq_things_stuff_and_official_checks(tmp_path):
    gt = np.zeros((4, 6), np.int64)
    gt[:, :3] = 3  # grass
    gt[:2, 3:] = 4  # person A (6 px)
    gt[2:, 3:] = 5  # person B (6 px)
    gi = [
        {"id": 3, "category_id": 7, "iscrowd": 0, "area": 12},
        {"id": 4, "category_id": 1, "iscrowd": 0, "area": 6},
        {"id": 5, "category_id": 1, "iscrowd": 0, "area": 6},
    ]
    pred = gt.copy()
    pred[2:, 3:] = 9
    pred[3, 3:] = 0  # person B predicted on 3 of 6 px: IoU 0.5, not a match
    pi = [{"id": 3, "category_id": 7}, {"id": 4, "category_id": 1}, {"id": 9, "category_id": 1}]
    gt_json = write(tmp_path, "gt", [("a", gt, gi), ("b", gt, gi)], CATS)
    pred_json = write(tmp_path, "pred", [("a", pred, pi), ("b", gt, [dict(x) for x in gi])])
    m = evaluate_coco_panoptic(gt_json, pred_json, workers=0)
    # person: 3 TP (IoU 1), 1 FN, 1 FP -> PQ = 3 / (3 + 1) ; grass: 2 TP -> 1
    assert m.per_class["person"].tp == 3 and m.per_class["person"].fp == 1 and m.per_class["person"].fn == 1
    assert m.things.pq == 3 / 4 and m.stuff.pq == 1.0 and m.PQ == (3 / 4 + 1.0) / 2
    assert evaluate_coco_panoptic(gt_json, pred_json, workers=2).to_json() == m.to_json()
    bad = json.loads(pred_json.read_text())
    bad["annotations"][0]["segments_info"][0]["category_id"] = 99
    pred_json.write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match="category_id 99"):
        evaluate_coco_panoptic(gt_json, pred_json, workers=0)
    bad["annotations"] = bad["annotations"][1:]
    pred_json.write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match="no prediction for the image with id 'a'"):
        evaluate_coco_panoptic(gt_json, pred_json, workers=0)


def test_pair_table_counts_every_pixel_pair_as_np_unique_does():
    from vidseg.evaluation.pq import OFFSET, pair_table

    rng = np.random.default_rng(0)
    for h, w in [(0, 0), (1, 1), (5, 7), (48, 64)]:
        gt = np.repeat(rng.integers(0, 5, (h, w // 4 + 1)), 4, axis=1)[:, :w].astype(np.uint32)  # runs
        pred = rng.integers(0, 3, (h, w)).astype(np.uint32)
        keys = gt.astype(np.uint64).ravel() * np.uint64(OFFSET) + pred.astype(np.uint64).ravel()
        uniq, counts = np.unique(keys, return_counts=True)
        g, p, c = pair_table(gt, pred)
        assert g.tolist() == (uniq // np.uint64(OFFSET)).tolist() and p.tolist() == (uniq % np.uint64(OFFSET)).tolist()
        assert c.tolist() == counts.tolist() and c.dtype == np.int64
