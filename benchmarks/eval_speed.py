"""Evaluation speed on a generated 720p set; prints JSON.

Generates (in a temp dir) N videos x T frames of moving boxes/ellipses over stuff bands, with predictions
that shift, drop and swap objects, written in the official formats (YouTube-VIS results + GT json, VIPSeg
PNG + json, VSPW PNG). Then times, in frames per second:

* ytvis_ap, vpq_stq (one pass computes both), miou_mvc: our file-based evaluators with `--workers`
  processes and with 1 process;
* naive baselines on a subset of videos, done the way the official scripts do it (per-pair per-frame RLE
  merges for the video IoU; VPQ windows re-stacked and `np.unique`d per window size):
  `naive_*_fps`.

Peak RSS (after generation and our evaluators, before the naive baselines) is reported for the parent
process and for the largest worker.

    python benchmarks/eval_speed.py [--videos 50] [--frames 20] [--size 720x1280] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from vidseg.evaluation.vipseg import evaluate_vipseg
from vidseg.evaluation.vspw import evaluate_vspw
from vidseg.evaluation.ytvis import evaluate_ytvis
from vidseg.structures import encode_rle, panoptic_to_rgb

STUFF = (0, 1, 2)  # VIPSeg-style category ids of the stuff bands; things are 3..6


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, compress_level=1)


def _video(rng: np.random.Generator, t_len: int, h: int, w: int):
    """Per frame: GT id map, GT {id: category}, pred id map, pred {id: category}."""
    yy, xx = np.mgrid[0:h, 0:w]
    bands = np.minimum((yy * 3) // h, 2)
    n_obj = int(rng.integers(3, 7))
    objs = []
    for k in range(n_obj):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.1, 0.9) * w
        objs.append(
            (
                cy,
                cx,
                rng.uniform(-6, 6),
                rng.uniform(-10, 10),
                rng.uniform(0.05, 0.2) * h,
                3 + k % 4,
                bool(rng.random() < 0.5),
            )
        )
    for t in range(t_len):
        gt = (bands + 1).astype(np.int64)  # stuff ids 1..3
        pred = gt.copy()
        gcat = {1: 0, 2: 1, 3: 2}
        pcat = dict(gcat)
        for k, (cy, cx, vy, vx, r, cat, ellipse) in enumerate(objs):
            y, x = cy + vy * t, cx + vx * t
            inside = (
                ((yy - y) / r) ** 2 + ((xx - x) / (1.5 * r)) ** 2 <= 1
                if ellipse
                else ((abs(yy - y) <= r) & (abs(xx - x) <= 1.5 * r))
            )
            if not inside.any():
                continue
            sid = 100 + k
            gt[inside] = sid
            gcat[sid] = cat
            if rng.random() < 0.9:  # the prediction: shifted, sometimes a new identity
                pid = sid if rng.random() < 0.9 else 200 + k
                pred[np.roll(inside, int(rng.integers(-8, 9)), axis=1)] = pid
                pcat[pid] = cat
        gt[:8, :] = 0  # a void strip
        yield (
            gt,
            {i: c for i, c in gcat.items() if (gt == i).any()},
            pred,
            {i: c for i, c in pcat.items() if (pred == i).any()},
        )


def generate(root: Path, n_videos: int, t_len: int, h: int, w: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ytvis_videos, ytvis_anns, results = [], [], []
    vip_gt = {
        "videos": [],
        "annotations": [],
        "categories": [{"id": c, "name": f"c{c}", "isthing": int(c >= 3)} for c in range(7)],
    }
    vip_pred = {"annotations": []}
    names = []
    for v in range(n_videos):
        name = f"v{v:04d}"
        names.append(name)
        tracks: dict[int, dict] = {}
        ptracks: dict[int, dict] = {}
        images, anns, panns = [], [], []
        for t, (gt, gcat, pred, pcat) in enumerate(_video(rng, t_len, h, w)):
            fn = f"{t:05d}.png"
            _save(root / "vipseg/panomasksRGB" / name / fn, panoptic_to_rgb(gt))
            _save(root / "vipseg/pred/pan_pred" / name / fn, panoptic_to_rgb(pred))
            # VSPW: raw labels (category + 1, 0 "others" unused, 255 void); predictions 0..123
            lut_gt, lut_pred = np.full(256, 255, np.uint8), np.zeros(256, np.uint8)
            for i, c in gcat.items():
                lut_gt[i] = c + 1
            for i, c in pcat.items():
                lut_pred[i] = c
            sem_gt, sem_pred = lut_gt[gt], lut_pred[pred]
            _save(root / "vspw/data" / name / "mask" / fn, sem_gt)
            _save(root / "vspw/pred" / name / fn, sem_pred)
            ids, counts = np.unique(gt, return_counts=True)
            area = dict(zip(ids.tolist(), counts.tolist()))
            images.append({"id": f"{t:05d}", "file_name": fn, "height": h, "width": w})
            anns.append(
                {
                    "image_id": f"{t:05d}",
                    "file_name": fn,
                    "segments_info": [
                        {"id": i, "category_id": c, "iscrowd": 0, "area": area[i]} for i, c in sorted(gcat.items())
                    ],
                }
            )
            panns.append(
                {
                    "image_id": f"{t:05d}",
                    "file_name": fn,
                    "segments_info": [{"id": i, "category_id": c} for i, c in sorted(pcat.items())],
                }
            )
            for src, cats, store in ((gt, gcat, tracks), (pred, pcat, ptracks)):
                for i, c in cats.items():
                    if c >= 3:
                        tr = store.setdefault(i, {"cat": c, "segs": [None] * t_len})
                        tr["segs"][t] = encode_rle(src == i)
        vip_gt["videos"].append({"video_id": name, "images": images})
        vip_gt["annotations"].append({"video_id": name, "annotations": anns})
        vip_pred["annotations"].append({"video_id": name, "annotations": panns})
        ytvis_videos.append({"id": v + 1, "height": h, "width": w, "length": t_len})
        for tr in tracks.values():
            areas = [
                None if s is None else int(mask_utils.area({**s, "counts": s["counts"].encode()})) for s in tr["segs"]
            ]
            ytvis_anns.append(
                {
                    "id": len(ytvis_anns) + 1,
                    "video_id": v + 1,
                    "category_id": tr["cat"] - 2,
                    "segmentations": tr["segs"],
                    "areas": areas,
                    "iscrowd": 0,
                }
            )
        for tr in ptracks.values():
            results.append(
                {
                    "video_id": v + 1,
                    "category_id": tr["cat"] - 2,
                    "score": float(rng.random()),
                    "segmentations": tr["segs"],
                }
            )
    (root / "ytvis").mkdir(parents=True, exist_ok=True)
    (root / "ytvis/gt.json").write_text(
        json.dumps(
            {
                "videos": ytvis_videos,
                "annotations": ytvis_anns,
                "categories": [{"id": i, "name": f"t{i}"} for i in (1, 2, 3, 4)],
            }
        )
    )
    (root / "ytvis/results.json").write_text(json.dumps(results))
    (root / "vipseg/panoptic_gt_VIPSeg_val.json").write_text(json.dumps(vip_gt))
    (root / "vipseg/pred/pred.json").write_text(json.dumps(vip_pred))
    (root / "vspw/val.txt").write_text("".join(n + "\n" for n in names))


def naive_video_iou_seconds(root: Path, n_videos: int) -> tuple[float, int]:
    """The official computeIoU: per (det, gt) pair, per frame, RLE merges and areas."""
    gt = json.loads((root / "ytvis/gt.json").read_text())
    res = json.loads((root / "ytvis/results.json").read_text())
    t0 = time.perf_counter()
    frames = 0
    for v in range(1, n_videos + 1):
        gs = [a for a in gt["annotations"] if a["video_id"] == v]
        ds = [d for d in res if d["video_id"] == v]
        frames += gt["videos"][v - 1]["length"]
        for d in ds:
            for a in gs:
                if a["category_id"] != d["category_id"]:
                    continue
                i = u = 0.0
                for ds_, gs_ in zip(d["segmentations"], a["segmentations"]):
                    if ds_ and gs_:
                        i += mask_utils.area(mask_utils.merge([ds_, gs_], True))
                        u += mask_utils.area(mask_utils.merge([ds_, gs_], False))
                    elif gs_:
                        u += mask_utils.area(gs_)
                    elif ds_:
                        u += mask_utils.area(ds_)
    return time.perf_counter() - t0, frames


def naive_vpq_seconds(root: Path, n_videos: int) -> tuple[float, int]:
    """The official VPQ data path: every window of every size re-stacks its frames, recounts prediction
    areas per frame and runs `np.unique` over the volume (matching itself is not timed)."""
    t0 = time.perf_counter()
    frames = 0
    for v in range(n_videos):
        d = root / "vipseg/panomasksRGB" / f"v{v:04d}"
        pans = []
        for f in sorted(d.iterdir()):
            g = np.array(Image.open(f), np.uint32)
            p = np.array(Image.open(root / "vipseg/pred/pan_pred" / d.name / f.name), np.uint32)
            pans.append(
                (g[..., 0] + 256 * g[..., 1] + 65536 * g[..., 2], p[..., 0] + 256 * p[..., 1] + 65536 * p[..., 2])
            )
        frames += len(pans)
        for n in (1, 2, 4, 6, 8):
            for idx in range(len(pans) - n + 1):
                gs = np.stack([a for a, _ in pans[idx : idx + n]]).astype(np.uint64)
                ps = np.stack([b for _, b in pans[idx : idx + n]]).astype(np.uint64)
                for _, b in pans[idx : idx + n]:
                    np.unique(b, return_counts=True)
                np.unique(gs * 2**24 + ps, return_counts=True)
    return time.perf_counter() - t0, frames


def _timed(fn, frames: int) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return frames / (time.perf_counter() - t0), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=50)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--size", default="720x1280", help="HxW")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--naive-videos", type=int, default=5, help="videos for the naive baselines")
    args = ap.parse_args()
    h, w = (int(x) for x in args.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="vidseg_evalspeed_"))
    try:
        t0 = time.perf_counter()
        generate(root, args.videos, args.frames, h, w)
        gen_s = time.perf_counter() - t0
        n = args.videos * args.frames
        out: dict[str, object] = {
            "videos": args.videos,
            "frames_per_video": args.frames,
            "size": args.size,
            "workers": args.workers,
            "generate_s": round(gen_s, 1),
        }
        for label, workers in (("", args.workers), ("_1proc", 1)):
            fps, m = _timed(
                lambda wk=workers: evaluate_ytvis(root / "ytvis/gt.json", root / "ytvis/results.json", workers=wk), n
            )
            out[f"ytvis_ap_fps{label}"] = round(fps, 1)
            out.setdefault("AP", m.AP)
            fps, m = _timed(lambda wk=workers: evaluate_vipseg(root / "vipseg", root / "vipseg/pred", workers=wk), n)
            out[f"vpq_stq_fps{label}"] = round(fps, 1)
            out.setdefault("VPQ", m.vpq.VPQ)
            out.setdefault("STQ", m.stq.STQ)
            fps, m = _timed(
                lambda wk=workers: evaluate_vspw(root / "vspw", root / "vspw/pred", raw_gt_labels=True, workers=wk), n
            )
            out[f"miou_mvc_fps{label}"] = round(fps, 1)
            out.setdefault("mIoU", m.mIoU)
            out.setdefault("mVC8", m.mVC8)
        # ru_maxrss only grows: read it before the naive baselines, which hold whole stacked windows
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out["peak_rss_worker_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        k = min(args.naive_videos, args.videos)
        s, f = naive_video_iou_seconds(root, k)
        out["naive_ytvis_iou_fps"] = round(f / s, 1)
        s, f = naive_vpq_seconds(root, k)
        out["naive_vpq_data_path_fps"] = round(f / s, 1)
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
