"""VIPSeg VPQ and STQ: hand-computed traps, and pixel-level re-derivations of the official procedures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.errors import DataFormatError
from vidseg.evaluation.stq import stq_from_label_maps
from vidseg.evaluation.vipseg import VipsegEvaluator, evaluate_vipseg
from vidseg.structures import FrameResult, PanopticSegment, panoptic_to_rgb
from vidseg.types import Category

# category 0, 1: stuff; 2, 3: things
CATS = [Category(0, "sky", False), Category(1, "road", False), Category(2, "car", True), Category(3, "person", True)]


def segs(ids_cats: list[tuple[int, int]], pan: np.ndarray | None = None, crowd=(), areas=None) -> list[dict]:
    out = []
    for sid, cat in ids_cats:
        area = int((pan == sid).sum()) if pan is not None else 0
        if areas and sid in areas:
            area = areas[sid]
        out.append({"id": sid, "category_id": cat, "iscrowd": int(sid in crowd), "area": area})
    return out


def evaluate_frames(videos, windows_only=False):
    """videos: list of frames (gt_map, gt_info, pred_map, pred_info) -> VipsegMetrics (in memory)."""
    ev = VipsegEvaluator(CATS)
    for i, frames in enumerate(videos):
        v = ev.video(f"vid{i}")
        for gt, gi, pr, pi in frames:
            v.add_frame(gt, gi, pr, pi)
        ev.add(v.finish())
    return ev.summarize()


def test_void_prediction_is_not_a_false_positive_when_mostly_on_void():
    gt = np.zeros((4, 4), np.int64)
    gt[:, :2] = 5  # sky on the left, void on the right
    gi = segs([(5, 0)], gt)
    pr = np.zeros((4, 4), np.int64)
    pr[:, :2] = 7
    pr[:, 2:] = 9  # a car entirely on void
    pi = [{"id": 7, "category_id": 0}, {"id": 9, "category_id": 2}]
    m = evaluate_frames([[(gt, gi, pr, pi)] * 8])
    assert m.vpq.VPQ == 100.0  # the car is ignored
    # half on void is not "more than half": a FP
    pr2 = pr.copy()
    pr2[:2, 1] = 9  # car: 8 void + 2 sky pixels... make it exactly half
    pr2[:, 1] = 9
    pr2[:, 3] = 0
    # car now: 4 sky + 4 void = 0.5 -> FP; sky pred 7: 4 px vs GT 8 -> IoU 0.5, not > 0.5
    m = evaluate_frames([[(gt, gi, pr2, pi)]])
    w = m.vpq.windows[0]
    assert w.per_class[2].fp == 1 and w.per_class[0].tp == 0 and w.per_class[0].fn == 1


def test_crowd_absorbs_predictions_of_its_category_only():
    gt = np.zeros((4, 4), np.int64)
    gt[:2] = 5  # sky
    gt[2:] = 6  # a crowd of cars
    gi = segs([(5, 0), (6, 2)], gt, crowd={6})
    pr = gt.copy()
    pr[2:] = 8
    pi = [{"id": 5, "category_id": 0}, {"id": 8, "category_id": 2}]
    w = evaluate_frames([[(gt, gi, pr, pi)]]).vpq.windows[0]
    assert w.per_class[2].fp == 0 and w.per_class[2].fn == 0  # crowd is not a FN, the car pred is ignored
    pi = [{"id": 5, "category_id": 0}, {"id": 8, "category_id": 3}]  # a person on a car crowd: FP
    w = evaluate_frames([[(gt, gi, pr, pi)]]).vpq.windows[0]
    assert w.per_class[3].fp == 1


def test_gt_area_comes_from_the_json():
    gt = np.full((2, 4), 5, np.int64)
    gi = segs([(5, 0)], areas={5: 10})  # 8 pixels, json says 10
    m = evaluate_frames([[(gt, gi, gt.copy(), [{"id": 5, "category_id": 0}])]])
    assert m.vpq.windows[0].pq_all == 8 / 10


def test_windows_skip_short_videos_and_stack_frames():
    gt = np.full((2, 2), 5, np.int64)
    gi = segs([(5, 0)], gt)
    good = (gt, gi, gt.copy(), [{"id": 5, "category_id": 0}])
    bad_pred = np.full((2, 2), 5, np.int64)
    bad_pred[0] = 6
    bad = (gt, gi, bad_pred, [{"id": 5, "category_id": 0}, {"id": 6, "category_id": 1}])
    m = evaluate_frames([[good, good, bad]])  # windows of 4+ frames: none
    w = {x.nframes: x for x in m.vpq.windows}
    # single frames: the bad frame's sky has IoU 2/4 = 0.5, not > 0.5: a FN (and its road a FP)
    assert (
        (w[1].per_class[0].tp, w[1].per_class[0].fn) == (2, 1)
        and 0 not in w[4].per_class
        or (w[4].per_class[0].tp == 0)
    )
    # the 2-frame window (good, bad) stacks the frames: sky tube IoU 6/8 > .5 is a TP; road tube a FP
    assert w[2].per_class[0].tp == 2 and w[2].per_class[0].fn == 0
    assert w[2].per_class[1].fp == 1 and w[1].per_class[1].fp == 1
    assert math.isnan(m.vpq.VPQ)  # windows 4, 6, 8 have no category: the official code divides by zero


def test_stq_instance_numbering_by_first_appearance():
    gt = np.zeros((2, 4), np.int64)
    gt[:, :2] = 5  # sky
    gt[:, 2:] = 9  # a car
    pred = gt.copy()
    pi = [{"id": 5, "category_id": 0}, {"id": 9, "category_id": 2}]
    stuff_first = segs([(5, 0), (9, 2)], gt)
    thing_first = segs([(9, 2), (5, 0)], gt)
    m = evaluate_frames([[(gt, stuff_first, pred, pi)] * 2])
    assert m.stq.AQ == 1.0 and m.stq.STQ == 1.0
    # the car is listed first: it gets instance 0, i.e. crowd, and the video has no GT tube at all
    m = evaluate_frames([[(gt, thing_first, pred, pi)] * 2])
    assert m.stq.AQ == 0.0 and m.stq.STQ == 0.0 and m.stq.SQ == 1.0


def test_stq_void_column_counts_as_a_class():
    gt = np.full((2, 2), 5, np.int64)
    gi = segs([(5, 0)], gt)
    pred = np.array([[5, 5], [0, 0]])  # half left unlabelled
    m = evaluate_frames([[(gt, gi, pred, [{"id": 5, "category_id": 0}])]])
    assert m.stq.SQ == (0.5 + 0.0) / 2  # sky 2/4, and the ignore column with IoU 0


def test_stq_aq_is_tube_weighted_across_sequences():
    def video(n_cars: int, good: bool):
        gt = np.zeros((2, 2 * n_cars + 2), np.int64)
        gt[:, :2] = 5
        info = [(5, 0)]
        for c in range(n_cars):
            gt[:, 2 + 2 * c : 4 + 2 * c] = 10 + c
            info.append((10 + c, 2))
        pred = gt.copy() if good else np.where(gt >= 10, 10, gt)  # bad: all cars one track
        pi = [{"id": int(i), "category_id": 0 if i == 5 else 2} for i in np.unique(pred)]
        return [(gt, segs(info, gt), pred, pi)]

    m = evaluate_frames([video(3, True), video(1, False), video(1, True)])
    # per-tube AQ: 3 perfect tubes + 1 perfect single-car "bad" video + 1 perfect: all 1
    assert m.stq.AQ == 1.0
    m = evaluate_frames([video(3, False), video(1, True)])
    # 3 cars merged: each tube TPA=4, FPA=8 -> 4 * 4/12 / 4 = 1/3 per tube; + one perfect tube: (1 + 1) / 4
    assert pytest.approx((3 * (1 / 3) + 1) / 4, abs=1e-15) == m.stq.AQ
    assert m.stq.AQ_per_seq[0] == pytest.approx(1 / 3, abs=1e-15)  # not the mean of per-sequence AQ


# --- pixel-level re-derivations of the official procedures ---------------------------------------------


def official_vpq(videos, nframes):
    """eval_vpq_vspw.vpq_compute_single_core per video (dict copies, stacked volume, np.unique), then
    the per-video stats added in order (`vpq_stat += tmp`)."""
    total = {}
    for frames in videos:
        stats = {}
        for idx in range(0, len(frames) - nframes + 1):
            win = frames[idx : idx + nframes]
            vg, vp, gl, pl = [], [], [], []
            for gt, gi, pr, pi in win:
                gs = {}
                for el in gi:
                    if el["id"] in gs:
                        gs[el["id"]]["area"] += el["area"]
                    else:
                        gs[el["id"]] = dict(el)
                ps = {el["id"]: dict(el) for el in pi}
                lab, cnt = np.unique(pr, return_counts=True)
                for la, c in zip(lab, cnt):
                    if la in ps:
                        ps[la]["area"] = c
                vg.append(gt)
                vp.append(pr)
                gl.append(gs)
                pl.append(ps)
            vgs, vps = {}, {}
            for gs, ps in zip(gl, pl):
                for d, vd in ((gs, vgs), (ps, vps)):
                    for k in d:
                        if k not in vd:
                            vd[k] = d[k]
                        else:
                            vd[k]["area"] += d[k]["area"]
            keys = np.stack(vg).astype(np.uint64) * 2**24 + np.stack(vp).astype(np.uint64)
            lab, cnt = np.unique(keys, return_counts=True)
            gpm = {(int(k) // 2**24, int(k) % 2**24): c for k, c in zip(lab, cnt)}
            gm, pm = set(), set()
            for (g, p), inter in gpm.items():
                if g not in vgs or p not in vps or vgs[g]["iscrowd"] == 1:
                    continue
                if vgs[g]["category_id"] != vps[p]["category_id"]:
                    continue
                iou = inter / (vps[p]["area"] + vgs[g]["area"] - inter - gpm.get((0, p), 0))
                if iou > 0.5:
                    s = stats.setdefault(vgs[g]["category_id"], [0.0, 0, 0, 0])
                    s[0] += iou
                    s[1] += 1
                    gm.add(g)
                    pm.add(p)
            crowd = {}
            for g, info in vgs.items():
                if g in gm:
                    continue
                if info["iscrowd"] == 1:
                    crowd[info["category_id"]] = g
                    continue
                stats.setdefault(info["category_id"], [0.0, 0, 0, 0])[3] += 1
            for p, info in vps.items():
                if p in pm:
                    continue
                inter = gpm.get((0, p), 0)
                if info["category_id"] in crowd:
                    inter += gpm.get((crowd[info["category_id"]], p), 0)
                if inter / info["area"] > 0.5:
                    continue
                stats.setdefault(info["category_id"], [0.0, 0, 0, 0])[2] += 1
        for cid, st in stats.items():
            tot = total.setdefault(cid, [0.0, 0, 0, 0])
            for i in range(4):
                tot[i] += st[i]
    return total


def official_stq(videos):
    """eval_stq_vspw.py label construction + deeplab2 STQuality at pixel level."""
    seqs = []
    for frames in videos:
        num = {}
        pnum = {}
        for _, gi, _, pi in frames:
            for el in gi:
                num.setdefault(el["id"], len(num))
            for el in pi:
                pnum.setdefault(el["id"], len(pnum))
        seq = []
        for gt, gi, pr, pi in frames:
            gs, ginst = np.full(gt.shape, 255), np.full(gt.shape, 255)
            for el in gi:
                gs[gt == el["id"]] = el["category_id"]
                ginst[gt == el["id"]] = num[el["id"]]
            ps, pinst = np.full(pr.shape, 255), np.full(pr.shape, 255)
            for el in pi:
                ps[pr == el["id"]] = el["category_id"]
                pinst[pr == el["id"]] = pnum[el["id"]]
            seq.append(((gs << 16) + ginst, (ps << 16) + pinst))
        seqs.append(seq)
    # deeplab2 numpy STQuality, pixel by pixel
    things = [c.id for c in CATS if c.isthing]
    n = 124
    tot = np.zeros((n + 1, n + 1), np.int64)
    outer, tubes = [], []
    for seq in seqs:
        preds, gts, inters = {}, {}, {}
        for yt, yp in seq:
            st, sp = yt >> 16, yp >> 16
            st = np.where(st != 255, st, n)
            sp = np.where(sp != 255, sp, n)
            np.add.at(tot, (st.ravel(), sp.ravel()), 1)
            lm = np.isin(st, things)
            pm = np.isin(sp, things)
            crowd = lm & ((yt & 0xFFFF) == 0)
            lm &= ~crowd
            pm &= ~crowd
            for d, ids in ((preds, yp[pm]), (gts, yt[lm]), (inters, yt[lm & pm] * 2**24 + yp[lm & pm])):
                for i, c in zip(*np.unique(ids, return_counts=True)):
                    d[i] = d.get(i, 0) + c
        o = 0.0
        for g, gsz in gts.items():
            inner = 0.0
            for p, psz in preds.items():
                k = 2**24 * g + p
                if k in inters:
                    tpa = inters[k]
                    inner += tpa * (tpa / (tpa + (psz - tpa) + (gsz - tpa)))
            o += 1.0 / gsz * inner
        outer.append(o)
        tubes.append(len(gts))
    tot[n, :] = 0
    aq = np.sum(outer) / np.maximum(np.sum(tubes), 1e-15)
    inter = tot.diagonal()
    un = inter + (tot.sum(0) - inter) + (tot.sum(1) - inter)
    iou = np.sum(inter / np.maximum(un, 1e-15)) / np.count_nonzero(un)
    return float(np.sqrt(aq * iou)), float(aq), float(iou)


def random_videos(rng, n_videos=3, t=9, h=12, w=14):
    videos = []
    for _ in range(n_videos):
        frames = []
        for _ in range(t):
            gt = np.where(np.arange(h)[:, None] < h // 2, 1, 2) * np.ones((1, w), np.int64)  # two stuff ids
            info = [(1, 0), (2, 1)]
            for car in range(int(rng.integers(1, 4))):
                y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
                gt[y : y + 4, x : x + 4] = 10 + car
                info.append((10 + car, 2 if car < 2 else 3))
            gt[rng.random((h, w)) < 0.05] = 0  # void
            if rng.random() < 0.5:
                info = info[2:] + info[:2]  # a thing listed first sometimes
            gi = segs(info, gt, crowd={12} if rng.random() < 0.3 else ())
            gi = [g for g in gi if g["area"] > 0]
            pr = gt.copy()
            pr[rng.random((h, w)) < 0.15] = 0
            shift = int(rng.integers(-1, 2))
            pr = np.where(pr >= 10, np.roll(pr, shift, axis=1), pr)
            pr[pr == 11] = 20 if rng.random() < 0.5 else 11  # identity switches
            pids = [int(i) for i in np.unique(pr) if i != 0]
            pi = [{"id": i, "category_id": {1: 0, 2: 1}.get(i, 2 if i != 12 else 3)} for i in pids]
            frames.append((gt, gi, pr, pi))
        videos.append(frames)
    return videos


def test_matches_pixel_level_official_procedures():
    rng = np.random.default_rng(5)
    videos = random_videos(rng)
    m = evaluate_frames(videos)
    for w in m.vpq.windows:
        ref = official_vpq(videos, w.nframes)
        for cid, (iou, tp, fp, fn) in ref.items():
            c = w.per_class[cid]
            assert (c.iou, c.tp, c.fp, c.fn) == (iou, tp, fp, fn)
    assert official_stq(videos) == (m.stq.STQ, m.stq.AQ, m.stq.SQ)
    assert 0 < m.stq.AQ < 1 and 0 < m.vpq.VPQ < 100


def test_generic_stq_from_label_maps():
    y = (np.array([[2, 2], [0, 0]]) << 16) + np.array([[1, 1], [0, 0]])
    m = stq_from_label_maps([[(y, y)]], num_classes=3, things=[2])
    assert (m.STQ, m.AQ, m.SQ) == (1.0, 1.0, 1.0)


# --- files ---------------------------------------------------------------------------------------------


def write_vipseg(root: Path, pred_dir: Path, videos) -> None:
    gt_json = {
        "videos": [],
        "annotations": [],
        "categories": [{"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in CATS],
    }
    pred_json = {"annotations": []}
    for v, frames in enumerate(videos):
        name = f"vid{v}"
        images, anns, pans = [], [], []
        for t, (gt, gi, pr, pi) in enumerate(frames):
            fn = f"{t:05d}.png"
            for folder, arr in ((root / "panomasksRGB" / name, gt), (pred_dir / "pan_pred" / name, pr)):
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(panoptic_to_rgb(arr)).save(folder / fn)
            images.append({"id": f"{t:05d}", "file_name": f"{t:05d}.jpg", "height": gt.shape[0], "width": gt.shape[1]})
            anns.append({"image_id": f"{t:05d}", "file_name": fn, "segments_info": gi})
            pans.append({"image_id": f"{t:05d}", "file_name": fn, "segments_info": pi})
        gt_json["videos"].append({"video_id": name, "images": images})
        gt_json["annotations"].append({"video_id": name, "annotations": anns})
        pred_json["annotations"].append({"video_id": name, "annotations": pans})
    (root / "panoptic_gt_VIPSeg_val.json").write_text(json.dumps(gt_json))
    (pred_dir / "pred.json").write_text(json.dumps(pred_json))


def test_files_workers_and_malformed_predictions(tmp_path):
    rng = np.random.default_rng(6)
    videos = random_videos(rng, n_videos=3, t=8)
    write_vipseg(tmp_path / "gt", tmp_path / "pred", videos)
    mem = evaluate_frames(videos).to_json()
    assert evaluate_vipseg(tmp_path / "gt", tmp_path / "pred", workers=0).to_json() == mem
    assert (
        evaluate_vipseg(tmp_path / "gt" / "panoptic_gt_VIPSeg_val.json", tmp_path / "pred", workers=2).to_json() == mem
    )

    pred = json.loads((tmp_path / "pred" / "pred.json").read_text())
    bad = json.loads(json.dumps(pred))
    bad["annotations"][1]["annotations"][2]["segments_info"][0]["category_id"] = 77
    (tmp_path / "pred" / "pred.json").write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match="category_id 77"):
        evaluate_vipseg(tmp_path / "gt", tmp_path / "pred", workers=2)
    bad = json.loads(json.dumps(pred))
    bad["annotations"][1]["annotations"][2]["segments_info"].append({"id": 999, "category_id": 2})
    (tmp_path / "pred" / "pred.json").write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match=r"\[999\] are in the JSON"):
        evaluate_vipseg(tmp_path / "gt", tmp_path / "pred", workers=0)
    bad = json.loads(json.dumps(pred))
    bad["annotations"][1]["annotations"][2]["segments_info"] = []
    (tmp_path / "pred" / "pred.json").write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match="in the PNG but not in the JSON"):
        evaluate_vipseg(tmp_path / "gt", tmp_path / "pred", workers=0)
    bad = json.loads(json.dumps(pred))
    bad["annotations"][0]["video_id"] = "other"
    (tmp_path / "pred" / "pred.json").write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match="no prediction for video 'vid0'"):
        evaluate_vipseg(tmp_path / "gt", tmp_path / "pred", workers=0)
    (tmp_path / "pred" / "pred.json").write_text(json.dumps(pred))
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "pred" / "pan_pred" / "vid2" / "00001.png")
    with pytest.raises(DataFormatError, match="prediction is 5x5"):
        evaluate_vipseg(tmp_path / "gt", tmp_path / "pred", workers=0)


def test_frame_results_stream():
    gt = np.zeros((2, 4), np.int64)
    gt[:, :2] = 5
    gt[:, 2:] = 9
    gi = segs([(5, 0), (9, 2)], gt)
    ev = VipsegEvaluator(CATS)
    v = ev.video("v")
    for t in range(8):
        fr = FrameResult(
            t, 2, 4, panoptic=gt.astype(np.int32), segments=[PanopticSegment(5, 0, False), PanopticSegment(9, 2, True)]
        )
        v.add_frame_result(gt, gi, fr)
    ev.add(v.finish())
    m = ev.summarize()
    assert m.vpq.VPQ == 100.0 and m.stq.STQ == 1.0
