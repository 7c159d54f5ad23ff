"""Evaluator speed against a peer commit, on generated cases of the official-comparison sizes; prints JSON.

Cases (issue 21), generated in a temp dir in the official formats:

* YouTube-VIS and OVIS: `--vis-videos` x `--vis-frames` frames at `--size`, `--gt-tracks` GT tracks and
  `--preds` predictions per video (defaults 50 x 36 at 720x1280, 5 and 100: 250 GT tracks, 5000
  predictions). Masks are polygons rasterised straight to RLE (moving ellipses and boxes; predictions are
  jittered copies of GT tracks and random boxes), so generation needs no dense masks. OVIS adds per-frame
  occlusion levels to the same GT.
* VSPW (mIoU + mVC8/16) and VIPSeg (VPQ + STQ in one pass): `--pix-videos` x `--pix-frames` PNG frames
  (defaults 20 x 30 at 720x1280) of moving objects over stuff bands; predictions shift, drop and re-identify
  objects.

Each evaluator runs in a fresh subprocess, once on this checkout and once on `--peer` (a `git worktree` of
that commit under /tmp, put first on PYTHONPATH), alternating `--repeats` times so machine load hits both
alike. The metrics of both must be equal (the script fails otherwise); the JSON gives per evaluator the
best wall time of each side, `speedup = peer / ours`, and each side's peak RSS (parent + largest worker).

    python benchmarks/eval_speed.py [--peer b5014e3] [--repeats 2] [--workers 2] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

REPO = Path(__file__).resolve().parents[1]
STUFF = (0, 1, 2)  # VIPSeg-style category ids of the stuff bands; things are 3..6
OCCLUSION_LEVELS = ("no_occlusion", "slight_occlusion", "severe_occlusion")

# --- generation: YouTube-VIS / OVIS (RLE straight from polygons) --------------------------------------------


def _polygon(kind: int, cy: float, cx: float, r: float) -> list[float]:
    """Flat [x0, y0, x1, y1, ...] outline of an ellipse (kind 0) or a box (kind 1) of half-height r."""
    if kind == 0:
        a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([cx + 1.5 * r * np.cos(a), cy + r * np.sin(a)], axis=1)
    else:
        pts = np.array([[cx - 1.5 * r, cy - r], [cx + 1.5 * r, cy - r], [cx + 1.5 * r, cy + r], [cx - 1.5 * r, cy + r]])
    return pts.ravel().tolist()


def _track_rles(path: list[tuple[float, float, float] | None], kind: int, h: int, w: int) -> list[dict | None]:
    """Per frame a compressed RLE (str counts) of the shape at (cy, cx, r), None where absent or off-frame."""
    out: list[dict | None] = []
    for p in path:
        if p is None:
            out.append(None)
            continue
        rle = mask_utils.frPyObjects([_polygon(kind, *p)], h, w)[0]
        out.append({"size": [h, w], "counts": rle["counts"].decode("ascii")} if mask_utils.area(rle) > 0 else None)
    return out


def _gt_paths(rng: np.random.Generator, n: int, t_len: int, h: int, w: int) -> list[tuple[int, int, list]]:
    """n GT tracks: (kind, category, per-frame (cy, cx, r) or None), entering late / leaving early at times."""
    tracks = []
    for _ in range(n):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.1, 0.9) * w
        vy, vx, r = rng.uniform(-6, 6), rng.uniform(-10, 10), rng.uniform(0.03, 0.25) * h
        start, stop = int(rng.integers(0, t_len // 4 + 1)), t_len - int(rng.integers(0, t_len // 4 + 1))
        path = [(cy + vy * t, cx + vx * t, r) if start <= t < stop else None for t in range(t_len)]
        tracks.append((int(rng.integers(0, 2)), int(rng.integers(1, 5)), path))
    return tracks


def _pred_paths(rng: np.random.Generator, gts: list, n: int, t_len: int, h: int, w: int) -> list[tuple[int, int, list]]:
    """n predictions: 60% jittered copies of GT tracks (sometimes the wrong class), the rest random boxes."""
    preds = []
    for k in range(n):
        if k < 0.6 * n:
            kind, cat, path = gts[k % len(gts)]
            dy, dx, s = rng.normal(0, 0.05 * h), rng.normal(0, 0.05 * w), rng.uniform(0.7, 1.3)
            cat = cat if rng.random() < 0.8 else int(rng.integers(1, 5))
            new = [None if p is None or rng.random() < 0.05 else (p[0] + dy, p[1] + dx, p[2] * s) for p in path]
            preds.append((kind, cat, new))
        else:
            preds.append((1, int(rng.integers(1, 5)), _gt_paths(rng, 1, t_len, h, w)[0][2]))
    return preds


def generate_vis(root: Path, n_videos: int, t_len: int, h: int, w: int, gt_tracks: int, preds: int, seed: int = 0):
    """`ytvis/gt.json`, `ovis/gt.json` (same GT plus occlusion) and one `results.json` for both."""
    rng = np.random.default_rng(seed)
    videos, anns, results = [], [], []
    for v in range(1, n_videos + 1):
        videos.append({"id": v, "height": h, "width": w, "length": t_len})
        gts = _gt_paths(rng, gt_tracks, t_len, h, w)
        for kind, cat, path in gts:
            segs = _track_rles(path, kind, h, w)
            areas = [None if s is None else int(mask_utils.area({**s, "counts": s["counts"].encode()})) for s in segs]
            occ = [None if s is None else OCCLUSION_LEVELS[int(rng.integers(0, 3))] for s in segs]
            if all(o is None for o in occ):  # OVIS needs one non-null level; keep the track visible once
                t0 = t_len // 2
                segs[t0] = _track_rles([(h / 2, w / 2, h / 8)], kind, h, w)[0]
                areas[t0] = int(mask_utils.area({**segs[t0], "counts": segs[t0]["counts"].encode()}))
                occ[t0] = OCCLUSION_LEVELS[0]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "video_id": v,
                    "category_id": cat,
                    "segmentations": segs,
                    "areas": areas,
                    "iscrowd": 0,
                    "occlusion": occ,
                }
            )
        for kind, cat, path in _pred_paths(rng, gts, preds, t_len, h, w):
            results.append(
                {
                    "video_id": v,
                    "category_id": cat,
                    "score": float(rng.random()),
                    "segmentations": _track_rles(path, kind, h, w),
                }
            )
    cats = [{"id": i, "name": f"t{i}"} for i in (1, 2, 3, 4)]
    for name, keep_occ in (("ovis", True), ("ytvis", False)):
        (root / name).mkdir(parents=True, exist_ok=True)
        gt_anns = anns if keep_occ else [{k: a[k] for k in a if k != "occlusion"} for a in anns]
        (root / name / "gt.json").write_text(json.dumps({"videos": videos, "annotations": gt_anns, "categories": cats}))
    (root / "results.json").write_text(json.dumps(results))


# --- generation: VSPW / VIPSeg (PNG frames) ---------------------------------------------------------------


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, compress_level=1)


def _video(rng: np.random.Generator, t_len: int, h: int, w: int):
    """Per frame: GT id map [H, W], GT {id: category}, pred id map [H, W], pred {id: category}."""
    yy, xx = np.mgrid[0:h, 0:w]
    bands = np.minimum((yy * 3) // h, 2)
    n_obj = int(rng.integers(3, 7))
    objs = []
    for k in range(n_obj):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.1, 0.9) * w
        ellipse = bool(rng.random() < 0.5)
        objs.append((cy, cx, rng.uniform(-6, 6), rng.uniform(-10, 10), rng.uniform(0.05, 0.2) * h, 3 + k % 4, ellipse))
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
        g_ids, p_ids = set(np.unique(gt).tolist()), set(np.unique(pred).tolist())
        yield gt, {i: c for i, c in gcat.items() if i in g_ids}, pred, {i: c for i, c in pcat.items() if i in p_ids}


def generate_pixels(root: Path, n_videos: int, t_len: int, h: int, w: int, seed: int = 0) -> None:
    """VIPSeg (`vipseg/`: GT json + panomasksRGB, `pred/` submission) and VSPW (`vspw/`: raw GT, `pred/`)."""
    from vidseg.structures import panoptic_to_rgb

    rng = np.random.default_rng(seed)
    vip_gt = {
        "videos": [],
        "annotations": [],
        "categories": [{"id": c, "name": f"c{c}", "isthing": int(c >= 3)} for c in range(7)],
    }
    vip_pred: dict[str, list] = {"annotations": []}
    names = []
    for v in range(n_videos):
        name = f"v{v:04d}"
        names.append(name)
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
            _save(root / "vspw/data" / name / "mask" / fn, lut_gt[gt])
            _save(root / "vspw/pred" / name / fn, lut_pred[pred])
            ids, counts = np.unique(gt, return_counts=True)
            area = dict(zip(ids.tolist(), counts.tolist()))
            images.append({"id": f"{t:05d}", "file_name": fn, "height": h, "width": w})
            info = [{"id": i, "category_id": c, "iscrowd": 0, "area": area[i]} for i, c in sorted(gcat.items())]
            anns.append({"image_id": f"{t:05d}", "file_name": fn, "segments_info": info})
            pinfo = [{"id": i, "category_id": c} for i, c in sorted(pcat.items())]
            panns.append({"image_id": f"{t:05d}", "file_name": fn, "segments_info": pinfo})
        vip_gt["videos"].append({"video_id": name, "images": images})
        vip_gt["annotations"].append({"video_id": name, "annotations": anns})
        vip_pred["annotations"].append({"video_id": name, "annotations": panns})
    (root / "vipseg/panoptic_gt_VIPSeg_val.json").write_text(json.dumps(vip_gt))
    (root / "vipseg/pred/pred.json").write_text(json.dumps(vip_pred))
    (root / "vspw/val.txt").write_text("".join(n + "\n" for n in names))


# --- timed runs -------------------------------------------------------------------------------------------

# Run in a fresh interpreter; `vidseg` is whichever checkout PYTHONPATH puts first. Prints one JSON line.
_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import vidseg
from vidseg.evaluation.report import evaluate_task
task, gt, pred, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t0 = time.perf_counter()
m = evaluate_task(task, gt, pred, workers=workers, vspw_raw_labels=True)
seconds = time.perf_counter() - t0
out = m.to_json()
print(json.dumps({
    "seconds": seconds,
    "module": vidseg.__file__,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "metrics": out,
}))
"""


def _run_child(src: Path, task: str, gt: Path, pred: Path, workers: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, task, str(gt), str(pred), str(workers)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{task} on {src} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out["module"].startswith(str(src)):
        raise RuntimeError(f"{src}: imported vidseg from {out['module']}")
    return out


def peer_checkout(commit: str) -> Path:
    """`/tmp/vidseg_<commit>`: a git worktree of the peer commit (created once, reused)."""
    path = Path(tempfile.gettempdir()) / f"vidseg_{commit}"
    if not (path / "src/vidseg").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=True)
    return path


def compare(cases: dict[str, tuple[str, Path, Path]], peer_src: Path, repeats: int, workers: int) -> dict:
    """Alternate ours / peer per case `repeats` times; metrics must agree; best wall time per side."""
    report: dict[str, dict] = {}
    for label, (task, gt, pred) in cases.items():
        runs: dict[str, list[dict]] = {"ours": [], "peer": []}
        for r in range(repeats):
            order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
            for side in order:
                src = REPO / "src" if side == "ours" else peer_src
                runs[side].append(_run_child(src, task, gt, pred, workers))
        ours, peer = runs["ours"][0]["metrics"], runs["peer"][0]["metrics"]
        if ours != peer:
            diff = {k: (ours.get(k), peer.get(k)) for k in set(ours) | set(peer) if ours.get(k) != peer.get(k)}
            raise SystemExit(f"{label}: metrics differ from the peer: {json.dumps(diff)[:2000]}")
        best = {side: min(x["seconds"] for x in rs) for side, rs in runs.items()}
        report[label] = {
            "ours_s": round(best["ours"], 3),
            "peer_s": round(best["peer"], 3),
            "speedup": round(best["peer"] / best["ours"], 2),
            "ours_rss_mb": round(max(x["rss_mb"] for x in runs["ours"]), 1),
            "peer_rss_mb": round(max(x["rss_mb"] for x in runs["peer"]), 1),
            "ours_rss_worker_mb": round(max(x["rss_worker_mb"] for x in runs["ours"]), 1),
            "peer_rss_worker_mb": round(max(x["rss_worker_mb"] for x in runs["peer"]), 1),
        }
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", default="b5014e3", help="commit to compare with (a worktree under /tmp)")
    ap.add_argument("--vis-videos", type=int, default=50)
    ap.add_argument("--vis-frames", type=int, default=36)
    ap.add_argument("--gt-tracks", type=int, default=5, help="GT tracks per video")
    ap.add_argument("--preds", type=int, default=100, help="predictions per video")
    ap.add_argument("--pix-videos", type=int, default=20)
    ap.add_argument("--pix-frames", type=int, default=30)
    ap.add_argument("--size", default="720x1280", help="HxW")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="runs per side (alternating); the best counts")
    ap.add_argument("--only", default="ytvis,ovis,vspw,vipseg", help="comma-separated cases")
    ap.add_argument("--data", help="folder for the generated cases, kept and reused (default: a temp dir)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (tests that the script runs)")
    args = ap.parse_args()
    if args.smoke:
        args.vis_videos, args.vis_frames, args.gt_tracks, args.preds = 2, 4, 2, 4
        args.pix_videos, args.pix_frames, args.size, args.repeats, args.workers = 2, 9, "48x64", 1, 1
    h, w = (int(x) for x in args.size.split("x"))
    only = set(args.only.split(","))
    root = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="vidseg_evalspeed_"))
    try:
        if only & {"ytvis", "ovis"} and not (root / "results.json").is_file():
            generate_vis(root, args.vis_videos, args.vis_frames, h, w, args.gt_tracks, args.preds)
        if only & {"vspw", "vipseg"} and not (root / "vspw/val.txt").is_file():
            generate_pixels(root, args.pix_videos, args.pix_frames, h, w)
        cases = {
            "ytvis": ("vis", root / "ytvis/gt.json", root / "results.json"),
            "ovis": ("ovis", root / "ovis/gt.json", root / "results.json"),
            "vspw": ("vss", root / "vspw", root / "vspw/pred"),
            "vipseg": ("vps", root / "vipseg", root / "vipseg/pred"),
        }
        cases = {k: v for k, v in cases.items() if k in only}
        report = compare(cases, peer_checkout(args.peer) / "src", args.repeats, args.workers)
        load = os.getloadavg()
        out = {
            "peer": args.peer,
            "size": args.size,
            "vis": {"videos": args.vis_videos, "frames": args.vis_frames, "gt_tracks": args.gt_tracks * args.vis_videos,
                    "predictions": args.preds * args.vis_videos},
            "pixels": {"videos": args.pix_videos, "frames": args.pix_frames},
            "workers": args.workers,
            "repeats": args.repeats,
            "loadavg_1_5_15": [round(x, 2) for x in load],
            "cpus": os.cpu_count(),
            **report,
        }
        print(json.dumps(out, indent=2))
    finally:
        if not args.data:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
