"""DAVIS J&F: region and boundary measures, statistics, and the real DAVIS-2016 annotations."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from vidseg.errors import DataFormatError
from vidseg.evaluation.davis import boundary_f, db_statistics, evaluate_davis, region_similarity, seg2bmap


def test_region_similarity_and_empty_union():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert region_similarity(a, b) == 1.0
    a[:2, :2] = True
    b[:2, :] = True
    assert region_similarity(a, b) == 0.5


def test_boundary_f_matches_disk_dilation_and_standard_tolerance():
    rng = np.random.default_rng(0)
    for _ in range(10):
        g = ndimage.binary_opening(rng.random((40, 70)) > 0.55)
        p = np.roll(g, int(rng.integers(-5, 6)), 1)
        r = int(rng.integers(1, 6))
        x = np.arange(-r, r + 1)
        disk = x[None] ** 2 + x[:, None] ** 2 <= r * r
        gb, pb = seg2bmap(g), seg2bmap(p)
        prec = (pb & ndimage.binary_dilation(gb, disk)).sum() / max(pb.sum(), 1)
        rec = (gb & ndimage.binary_dilation(pb, disk)).sum() / max(gb.sum(), 1)
        ref = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        assert boundary_f(g, p, bound_th=r) == pytest.approx(ref, abs=1e-15)
    # 480x854: ceil(0.008 * 979.8) = 8 px tolerance; a 8 px shift still matches, 9 px does not
    g = np.zeros((480, 854), bool)
    g[100:300, 100:400] = True
    assert boundary_f(g, np.roll(g, 8, 1)) > boundary_f(g, np.roll(g, 9, 1))
    assert boundary_f(g, np.zeros_like(g)) == 0.0 and boundary_f(np.zeros_like(g), np.zeros_like(g)) == 1.0


def test_statistics_decay_bins():
    values = np.array([1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.0])
    mean, recall, decay = db_statistics(values)
    assert mean == pytest.approx(0.525) and recall == 0.5
    # edges round(linspace(1, 8, 5) + 1e-10) - 1 = [0, 2, 4, 5, 7] (4.5 rounds up thanks to the 1e-10),
    # inclusive ends: first bin [1, 1, .8], last bin [.2, .2, 0]
    assert decay == np.mean([1, 1, 0.8]) - np.mean([0.2, 0.2, 0.0])


def test_real_davis_sequence(shared_data, tmp_path):
    src = shared_data / "davis2016" / "Annotations" / "camel"
    gt = tmp_path / "gt" / "camel"
    shutil.copytree(src, gt)
    for f in sorted(gt.iterdir())[12:]:
        f.unlink()
    pred = tmp_path / "pred" / "camel"
    pred.mkdir(parents=True)
    for f in sorted(gt.iterdir()):
        m = np.array(Image.open(f)) > 0
        Image.fromarray((ndimage.binary_erosion(m, iterations=3) * 1).astype(np.uint8)).save(pred / f.name)
    perfect = evaluate_davis(tmp_path / "gt", tmp_path / "gt", workers=0)
    assert (perfect.J_mean, perfect.F_mean, perfect.JF_mean) == (1.0, 1.0, 1.0)
    m = evaluate_davis(tmp_path / "gt", tmp_path / "pred", workers=2)
    assert 0.8 < m.J_mean < 1 and 0.5 < m.F_mean < 1 and m.JF_mean == (m.J_mean + m.F_mean) / 2
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(pred / sorted(gt.iterdir())[3].name)
    with pytest.raises(DataFormatError, match="prediction is 10x10"):
        evaluate_davis(tmp_path / "gt", tmp_path / "pred", workers=0)


def test_multi_object_void_and_extra_objects(tmp_path):
    gt = np.zeros((20, 20), np.uint8)
    gt[2:8, 2:8] = 1
    gt[10:18, 10:18] = 2
    gt[8, :] = 255  # void: belongs to no object
    for d in ("gt/s", "pred/s"):
        (tmp_path / d).mkdir(parents=True)
    for t in range(5):
        Image.fromarray(gt).save(tmp_path / "gt/s" / f"{t:05d}.png")
        p = gt.copy()
        p[p == 255] = 0
        if t == 2:
            p[p == 2] = 0  # object 2 lost on one evaluated frame
        Image.fromarray(p).save(tmp_path / "pred/s" / f"{t:05d}.png")
    m = evaluate_davis(tmp_path / "gt", tmp_path / "pred", workers=0)
    assert m.per_object["s_1"].J[0] == 1.0
    assert m.per_object["s_2"].J[0] == pytest.approx(2 / 3)  # frames 1..3 evaluated, one of them 0
    Image.fromarray(np.full((20, 20), 3, np.uint8)).save(tmp_path / "pred/s" / "00001.png")
    with pytest.raises(DataFormatError, match="3 objects predicted"):
        evaluate_davis(tmp_path / "gt", tmp_path / "pred", workers=0)
