"""YouTube-VIS / OVIS AP: hand-computed traps of the official ytvoseval/oviseval, and COCOeval parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vidseg.errors import DataFormatError
from vidseg.evaluation.ytvis import YtvisEvaluator, YtvisGroundTruth, evaluate_ytvis, parse_ytvis_gt
from vidseg.structures import FrameResult, VideoResult, encode_rle

H, W = 24, 32
PERFECT = 1.0 / (1.0 + np.spacing(1))  # what tp / (tp + fp + eps) gives for tp = 1, fp = 0


def box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def rle(m: np.ndarray | None) -> dict | None:
    return None if m is None else encode_rle(m)


def gt_json(tracks: list[dict], n_videos: int = 1, length: int = 3, categories=(1, 2), occlusion=False) -> dict:
    """tracks: {id, video_id, category_id, masks: [mask|None], areas?: [...], iscrowd?, occlusion?}"""
    anns = []
    for t in tracks:
        masks = t["masks"]
        ann = {
            "id": t["id"],
            "video_id": t.get("video_id", 1),
            "category_id": t.get("category_id", 1),
            "segmentations": [rle(m) for m in masks],
            "areas": t.get("areas", [None if m is None else int(m.sum()) for m in masks]),
            "bboxes": [None] * len(masks),
            "iscrowd": t.get("iscrowd", 0),
            "height": H,
            "width": W,
            "length": 1,
        }
        if occlusion:
            ann["occlusion"] = t.get("occlusion", ["no_occlusion"] * len(masks))
        anns.append(ann)
    return {
        "videos": [
            {"id": v, "height": H, "width": W, "length": length, "file_names": [f"{v}/{i}.jpg" for i in range(length)]}
            for v in range(1, n_videos + 1)
        ],
        "annotations": anns,
        "categories": [{"id": c, "name": f"c{c}"} for c in categories],
    }


def det(masks, score=0.9, video_id=1, category_id=1) -> dict:
    return {"video_id": video_id, "category_id": category_id, "score": score, "segmentations": [rle(m) for m in masks]}


def run(gt: dict, dets: list[dict], workers: int = 0):
    return evaluate_ytvis(parse_ytvis_gt(gt), dets, workers=workers)


A, B, C = box(0, 0, 10, 10), box(5, 5, 20, 20), box(12, 0, 24, 8)


def test_perfect_is_official_float_not_one():
    gt = gt_json([{"id": 1, "masks": [A, A, None]}, {"id": 2, "masks": [None, B, B], "category_id": 2}])
    m = run(gt, [det([A, A, None]), det([None, B, B], category_id=2)])
    # tp / (tp + fp + np.spacing(1)) with tp=1, fp=0: the official "perfect" AP
    assert m.AP == 0.9999999999999998 and m.AP == PERFECT
    # np.mean's pairwise sum rounds differently over 101 x 2 entries than over 10 x 101 x 2
    assert m.AP50 == m.AP75 == np.mean(np.full(101 * 2, PERFECT)) == 0.9999999999999999
    assert m.AR1 == 1.0 and m.AR10 == 1.0
    assert m.APs == m.AP and m.APm == -1 and m.APl == -1  # no medium/large GT: -1 as printed officially
    assert m.per_class_ap == {"c1": PERFECT, "c2": PERFECT}


@pytest.mark.filterwarnings("ignore:.*segmentations shorter than the video")
def test_truncated_prediction_frames_zip_to_shorter_list():
    gt = gt_json([{"id": 1, "masks": [A, B, C]}])
    m = run(gt, [det([A])])  # 1 of 3 frames: zip() stops after frame 0, IoU = 1
    assert m.AP == PERFECT


def test_none_frame_counts_gt_area_in_union():
    gt = gt_json([{"id": 1, "masks": [A, A, A]}])
    m = run(gt, [det([A, A, None])])  # IoU 2/3: TP for thresholds .5 .55 .6 .65 only
    assert pytest.approx(0.4 * PERFECT, abs=1e-15) == m.AP
    assert np.mean(np.full(101, PERFECT)) == m.AP50 and m.AP75 == 0.0


def test_gt_with_id_zero_never_matches():
    gt = gt_json([{"id": 0, "masks": [A, A, A]}])
    assert run(gt, [det([A, A, A])]).AP == 0.0
    gt["annotations"][0]["id"] = 5
    assert run(gt, [det([A, A, A])]).AP == PERFECT


def test_ties_keep_results_file_order_within_a_video():
    gt = gt_json([{"id": 1, "masks": [A, A, A]}])
    tp, fp = det([A, A, A], 0.5), det([C, C, C], 0.5)
    assert run(gt, [tp, fp]).AP == PERFECT
    assert run(gt, [fp, tp]).AP == 0.5  # FP first: precision 1/2 at every recall


def test_ties_across_videos_follow_sorted_video_ids():
    gt = gt_json([{"id": 1, "masks": [A, A, A], "video_id": 2}], n_videos=2)
    tp = det([A, A, A], 0.5, video_id=2)
    fp = det([C, C, C], 0.5, video_id=1)
    # the file lists the TP first, but video 1 is concatenated before video 2
    assert run(gt, [tp, fp]).AP == 0.5


def test_area_ranges_use_stored_areas_with_inclusive_bounds():
    # the mask has 100 px but the json says 20000: medium, not small
    gt = gt_json([{"id": 1, "masks": [A, A, A], "areas": [20000, None, 0]}])
    m = run(gt, [det([A, A, A])])
    assert m.APs == -1 and m.APm == PERFECT and m.APl == -1
    # exactly 128^2: counted in both small and medium
    gt = gt_json([{"id": 1, "masks": [A, A, A], "areas": [128 * 128, 128 * 128, None]}])
    m = run(gt, [det([A, A, A])])
    assert m.APs == PERFECT and m.APm == PERFECT


def test_more_than_100_detections_are_truncated_per_video_and_category():
    gt = gt_json([{"id": 1, "masks": [A, A, A]}])
    fps = [det([C, C, C], 1.0 - i * 1e-3) for i in range(99)]
    tp = det([A, A, A], 0.01)
    m = run(gt, fps + [tp])  # the TP is the 100th: kept, precision 1/100
    assert pytest.approx(0.01, rel=1e-12) == m.AP and m.AR100 == 1.0 and m.AR10 == 0.0
    m = run(gt, fps + [det([C, C, C], 0.5), tp])  # the TP is the 101st: dropped
    assert m.AP == 0.0 and m.AR100 == 0.0
    # the limit is per category: 100 detections of another category do not push the TP out
    other = [det([C, C, C], 0.99, category_id=2) for _ in range(100)]
    assert run(gt, other + [tp]).AP == PERFECT


def test_ar1_is_top_one_per_video_and_category():
    gt = gt_json([{"id": 1, "masks": [A, A, A]}, {"id": 2, "masks": [B, B, B]}])
    m = run(gt, [det([A, A, A], 0.9), det([B, B, B], 0.8)])
    assert m.AR1 == 0.5 and m.AR10 == 1.0


def test_crowd_gt_is_ignored_and_absorbs_detections():
    gt = gt_json([{"id": 1, "masks": [A, A, A]}, {"id": 2, "masks": [B, B, B], "iscrowd": 1}])
    m = run(gt, [det([A, A, A], 0.5), det([B, B, B], 0.9), det([B, B, B], 0.8)])
    assert m.AP == PERFECT  # both detections on the crowd GT are ignored, not FPs


def test_categories_without_gt_do_not_count():
    gt = gt_json([{"id": 1, "masks": [A, A, A]}])
    m = run(gt, [det([A, A, A]), det([C, C, C], category_id=2)])
    assert m.AP == PERFECT
    assert np.isnan(m.per_class_ap["c2"])


@pytest.mark.filterwarnings("ignore:.*segmentations shorter than the video")
def test_malformed_results():
    gt = gt_json([{"id": 1, "masks": [A, A, A]}])
    with pytest.raises(DataFormatError, match="video_id 7"):
        run(gt, [det([A], video_id=7)])
    unc = det([A])
    unc["segmentations"][0] = {"size": [H, W], "counts": [0, 5, H * W - 5]}
    with pytest.raises(DataFormatError, match="uncompressed RLE"):
        run(gt, [unc])
    wrong = det([A])
    wrong["segmentations"][0] = encode_rle(np.ones((H + 1, W), np.uint8))
    with pytest.raises(DataFormatError, match="mask size"):
        run(gt, [wrong])
    with pytest.raises(DataFormatError, match="no result entries"):
        run(gt, [])
    # a category outside the dataset is dropped silently, as the official code does
    m = run(gt, [det([A, A, A]), det([A, A, A], 0.99, category_id=9)])
    assert m.AP == PERFECT and m.num_dropped_detections == 1


def test_files_and_workers_give_identical_numbers(tmp_path):
    rng = np.random.default_rng(0)
    tracks, dets = [], []
    for v in range(1, 7):
        for _ in range(3):
            y, x = rng.integers(0, 14), rng.integers(0, 20)
            masks = [box(y, x, y + 10, x + 12) if rng.random() > 0.2 else None for _ in range(4)]
            tracks.append(
                {"id": len(tracks) + 1, "video_id": v, "category_id": int(rng.integers(1, 3)), "masks": masks}
            )
            pm = [None if m is None or rng.random() < 0.2 else np.roll(m, int(rng.integers(-3, 4)), 1) for m in masks]
            dets.append(det(pm, float(rng.random()), v, tracks[-1]["category_id"]))
            dets.append(det([box(0, 0, 5, 5)] * 4, float(rng.random()), v, int(rng.integers(1, 3))))
    gt = gt_json(tracks, n_videos=6, length=4)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(dets))
    serial = evaluate_ytvis(tmp_path / "gt.json", tmp_path / "res.json", workers=0)
    parallel = evaluate_ytvis(tmp_path / "gt.json", tmp_path / "res.json", workers=2)
    assert serial.stats == parallel.stats
    assert 0 < serial.AP < 1


def test_single_frame_videos_match_cocoeval():
    """For T = 1 the video AP is COCO segm AP with YouTube-VIS area ranges: compare bit for bit."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(3)
    S = 300  # large enough for all three area ranges
    images, coco_anns, tracks, results, coco_res = [], [], [], [], []
    for v in range(1, 31):
        images.append({"id": v, "height": S, "width": S, "file_name": f"{v}.jpg"})
        for _ in range(int(rng.integers(0, 4))):
            side = int(rng.choice([40, 128, 150, 260]))
            y, x = rng.integers(0, S - side + 1, size=2)
            m = np.zeros((S, S), np.uint8)
            m[y : y + side, x : x + side] = 1
            cat = int(rng.integers(1, 4))
            r = encode_rle(m)
            aid = len(coco_anns) + 1
            coco_anns.append(
                {
                    "id": aid,
                    "image_id": v,
                    "category_id": cat,
                    "segmentation": r,
                    "area": int(m.sum()),
                    "iscrowd": 0,
                    "bbox": [float(x), float(y), side, side],
                }
            )
            tracks.append(
                {
                    "id": aid,
                    "video_id": v,
                    "category_id": cat,
                    "segmentations": [r],
                    "areas": [int(m.sum())],
                    "iscrowd": 0,
                }
            )
            for _ in range(int(rng.integers(0, 3))):
                shift = int(rng.integers(-side // 2, side // 2))
                pm = np.roll(m, shift, axis=int(rng.integers(0, 2)))
                score = round(float(rng.random()), 2)  # coarse scores: ties happen
                pc = cat if rng.random() < 0.8 else int(rng.integers(1, 4))
                coco_res.append({"image_id": v, "category_id": pc, "segmentation": encode_rle(pm), "score": score})
                results.append({"video_id": v, "category_id": pc, "segmentations": [encode_rle(pm)], "score": score})
        for _ in range(int(rng.integers(0, 3))):  # pure false positives
            pm = np.zeros((S, S), np.uint8)
            y, x = rng.integers(0, S - 50, size=2)
            pm[y : y + 50, x : x + 50] = 1
            score = round(float(rng.random()), 2)
            cat = int(rng.integers(1, 4))
            coco_res.append({"image_id": v, "category_id": cat, "segmentation": encode_rle(pm), "score": score})
            results.append({"video_id": v, "category_id": cat, "segmentations": [encode_rle(pm)], "score": score})
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": coco_anns, "categories": cats}
    coco.createIndex()
    coco_dt = coco.loadRes(coco_res)
    ev = COCOeval(coco, coco_dt, "segm")
    ev.params.areaRng = [[0, 1e5**2], [0, 128**2], [128**2, 256**2], [256**2, 1e5**2]]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    gt = {
        "videos": [{"id": i["id"], "height": S, "width": S, "length": 1} for i in images],
        "annotations": tracks,
        "categories": cats,
    }
    ours = evaluate_ytvis(parse_ytvis_gt(gt), results, workers=0)
    assert ours.stats == [float(s) for s in ev.stats]


def test_ovis_occlusion_ranges_filter_gt_only():
    A2 = box(0, 20, 10, 30)
    gt = gt_json(
        [
            {"id": 1, "masks": [A, A], "occlusion": ["slight_occlusion", "slight_occlusion"]},  # 0.25
            {"id": 2, "masks": [B, B], "occlusion": ["severe_occlusion", "no_occlusion"]},  # top half: 0.75
        ],
        length=2,
        occlusion=True,
    )
    m = run(gt, [det([A, A], 0.9), det([B, B], 0.8), det([A2, A2], 0.95)])
    assert m.occlusion is not None and len(m.stats) == 18
    # light and medium both contain the 0.25 object (inclusive bounds); the FP counts in every bucket
    assert m.occlusion["APso"] == m.occlusion["APmo"] == 0.5
    # heavy: only object 2; the detection of object 1 matches an ignored GT and is ignored, but the FP
    # (matching nothing) is never ignored by occlusion: object 2 comes after one FP
    assert m.occlusion["APho"] == 0.5
    assert m.AP == run(gt, [det([A, A], 0.9), det([B, B], 0.8), det([A2, A2], 0.95)]).AP
    plain = YtvisEvaluator(parse_ytvis_gt(gt), ovis=False)
    plain.add_video(1, [det([A, A], 0.9), det([B, B], 0.8), det([A2, A2], 0.95)])
    assert plain.summarize().AP == m.AP  # OVIS AP equals YouTube-VIS AP on the same data


def test_ovis_all_null_occlusion_is_a_clear_error():
    gt = gt_json([{"id": 1, "masks": [A, A], "occlusion": [None, None]}], length=2, occlusion=True)
    with pytest.raises(DataFormatError, match="occlusion is null"):
        YtvisEvaluator(parse_ytvis_gt(gt), ovis=True)
    assert YtvisEvaluator(parse_ytvis_gt(gt), ovis=False).ovis is False  # YouTube-VIS AP does not need it


def test_streaming_from_frame_results(tmp_path):
    gt = gt_json([{"id": 1, "masks": [A, A, A]}, {"id": 2, "masks": [B, B, None], "category_id": 2}])
    ev = YtvisEvaluator(parse_ytvis_gt(gt))
    video = VideoResult(video_id=1)
    for t in range(3):
        masks = np.stack([A, B]) if t < 2 else A[None]
        tids, cids = ([7, 8], [0, 1]) if t < 2 else ([7], [0])
        video.add(FrameResult.from_masks(t, masks, tids, cids, [0.9] * len(tids)))
    ev.add_video_result(video)  # class index 0 -> category 1 (YouTube-VIS ids start at 1)
    assert ev.summarize().AP == PERFECT
    with pytest.raises(DataFormatError, match="twice"):
        ev.add_video_result(video)


def test_gt_loads_polygons_and_uncompressed_rle(tmp_path):
    gt = gt_json([{"id": 1, "masks": [A, A, A]}])
    gt["annotations"][0]["segmentations"][0] = [[0, 0, 10, 0, 10, 10, 0, 10]]  # polygon
    flat = A.flatten(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    gt["annotations"][0]["segmentations"][1] = {"size": [H, W], "counts": runs}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    loaded = YtvisGroundTruth.load(tmp_path / "gt.json")
    seg1 = loaded.tracks[1][0].segmentations[1]
    assert mask_utils.area(seg1) == A.sum()
    m = evaluate_ytvis(loaded, [det([A, A, A])], workers=0)
    assert m.AP == PERFECT


@pytest.mark.filterwarnings("ignore:.*segmentations shorter than the video")
def test_video_iou_exact_from_half_and_zero_below():
    from vidseg.evaluation.ytvis import measure_detections, parse_detections, video_iou

    rng = np.random.default_rng(5)

    def track(n):
        return [
            None if rng.random() < 0.2 else box(*sorted(rng.integers(0, H, 2)), *sorted(rng.integers(0, W, 2)))
            for _ in range(n)
        ]

    g_masks = [track(6) for _ in range(4)]
    d_masks = [g[: rng.integers(1, 7)] for g in g_masks] + [track(int(rng.integers(1, 7))) for _ in range(30)]
    d_masks += [[None if m is None or rng.random() < 0.3 else np.roll(m, 2, axis=1) for m in g] for g in g_masks]
    gt = parse_ytvis_gt(gt_json([{"id": k + 1, "masks": m} for k, m in enumerate(g_masks)], length=6))
    dets = parse_detections([det(m) for m in d_masks], gt, check_masks=False)[1]
    measure_detections(dets, gt.videos[1], "x")
    got = video_iou(dets, gt.tracks[1])
    for i, dm in enumerate(d_masks):
        for j, gm in enumerate(g_masks):
            inter = union = 0
            for a, b in zip(dm, gm):  # the official: zip, a None frame adds the other side's area
                a = np.zeros((H, W), bool) if a is None else a.astype(bool)
                b = np.zeros((H, W), bool) if b is None else b.astype(bool)
                inter, union = inter + (a & b).sum(), union + (a | b).sum()
            iou = inter / union if union else 0.0
            assert got[i, j] == (iou if iou >= 0.5 else 0.0)
    assert (got >= 0.5).sum() >= 4


def test_rle_total_is_area_plus_shifted_area_plus_first_count():
    from vidseg.evaluation.ytvis import _first_counts

    rng = np.random.default_rng(3)
    masks = [np.zeros((H, W), np.uint8), np.ones((H, W), np.uint8), A, rng.random((H, W)) < 0.5]
    masks += [box(int(y), 0, H, int(x)) for y, x in rng.integers(0, 20, (20, 2))]
    strings = [encode_rle(m)["counts"].encode() for m in masks]
    lengths = np.array([len(c) for c in strings])
    blob = np.frombuffer(b"".join(strings) + b"0" * 6, np.uint8) - np.uint8(48)
    n0, c0 = _first_counts(blob, np.cumsum(lengths) - lengths)
    for m, c, k, first in zip(masks, strings, n0.tolist(), c0.tolist()):
        flat = m.flatten(order="F") != 0
        assert first == (flat.argmax() if flat.any() else H * W)  # c0: the zeros before the first one
        shifted = {"size": [H, W], "counts": b"00" + c[k:]}
        assert mask_utils.area({"size": [H, W], "counts": c}) + mask_utils.area(shifted) + first == H * W


@pytest.mark.parametrize(
    ("counts", "reason"),
    [
        ("b'PPYo0'", "not a compressed RLE string"),  # str() of the bytes
        ("abc\u00e9", "not a compressed RLE string"),
        ("0000", "cover"),  # well formed, wrong total: pycocotools would read it silently
        ("", "not a compressed RLE string"),
        ("0000P", "not a compressed RLE string"),  # ends inside a count: pycocotools reads past the string
    ],
)
def test_garbage_rle_counts_name_the_field(counts, reason):
    gt = gt_json([{"id": 1, "masks": [A, A, A]}])
    bad = det([A, A, A])
    bad["segmentations"][2] = {"size": [H, W], "counts": counts}
    with pytest.raises(DataFormatError, match=reason) as e:
        run(gt, [det([A, A, A]), bad])
    assert e.value.field == "[1].segmentations[2].counts"


@pytest.mark.parametrize("score", [float("nan"), float("inf"), "0.9", None, True])
def test_scores_must_be_finite_numbers(score):
    gt = gt_json([{"id": 1, "masks": [A, A, A]}])
    with pytest.raises(DataFormatError, match="score must be a finite number") as e:
        run(gt, [det([A, A, A]), det([A, A, A], score=score)])
    assert e.value.field == "[1].score"


def test_short_segmentations_warn_once_and_keep_the_official_numbers():
    gt = gt_json([{"id": 1, "masks": [A, A, A]}])
    with pytest.warns(UserWarning, match=r"\[0\] \(1 of 3 frames of video 1\) and 1 more") as record:
        m = run(gt, [det([A]), det([A, A])])
    assert len(record) == 1
    assert m.AP == PERFECT  # zip() stops at the shorter list: frame 0 alone is a perfect match
