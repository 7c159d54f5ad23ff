"""Memory of `vidseg segment` over a long video: it must not grow with the video's length.

A synthetic 3000-frame 360p video (moving shapes on a textured background, H.264) is segmented by
`vidseg segment` in a child process, for each task (vis, vps, vss) online (a tiny random DVIS++ online model)
and offline (a tiny random DVIS++ offline model, stage "refiner"): random weights are fine, what is measured
is how memory grows. The child's memory is sampled from `/proc/<pid>/status` every `--interval` s and its
frame count read from its progress bar:

* `rss_mb_at_probe`: RSS when frame `--probe-frame` (100) was reached;
* `rss_mb_end`: the last sample, after the official results were written (`finish()` and the writers);
  `end_growth_mb`: `rss_mb_end - rss_mb_at_probe`;
* `rss_mb_peak_to_probe`: the largest RSS up to the probe frame. Memory cycles with the work of a few frames
  (offline: a 30-frame window is buffered, refined and emitted, ~80 MB from trough to crest), so one sample at
  the probe can land anywhere in that cycle;
* `peak_growth_mb`: the largest RSS after the probe frame (the end phase included) minus
  `rss_mb_peak_to_probe`: what the rest of the video added to the memory its first frames needed (the
  issue's bound: < 50 MB); `anon_*`: the same for anonymous memory only (RssAnon: the heap; RssFile counts
  pages of memory-mapped files, e.g. the shared libraries, which the kernel can drop).

    OMP_NUM_THREADS=1 python benchmarks/segment_memory.py            # ~15 min on 1 core
    python benchmarks/segment_memory.py --smoke                      # 60 small frames, for the tests

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from vidseg.config import apply_overrides, load_preset_or_file
from vidseg.io.checkpoint import save_checkpoint
from vidseg.io.video import VideoWriter
from vidseg.models.model import build_model

MODES = {"online": ("dvis_online", "tracker"), "offline": ("dvis_offline", "refiner")}
TASKS = ("vis", "vps", "vss")
_PROGRESS = re.compile(rb"(\d+)/(\d+)")


def write_video(path: Path, frames: int, height: int, width: int) -> Path:
    """A textured background with three squares moving across it, `frames` frames at 30 fps."""
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([(xx * 3) % 256, (yy * 5) % 256, ((xx + yy) * 2) % 256], -1).astype(np.uint8)
    side = max(4, height // 6)
    with VideoWriter(path, fps=30) as writer:
        for t in range(frames):
            f = background.copy()
            for k, color in enumerate([(250, 40, 40), (30, 220, 90), (40, 60, 230)]):
                x = (t * (2 + k) + k * width // 3) % max(1, width - side)
                y = (k + 1) * height // 4 - side // 2
                f[y : y + side, x : x + side] = color
            writer.write(f)
    return path


def write_checkpoint(out: Path, mode: str, min_size: int, max_size: int) -> Path:
    """A tiny random model of `mode` (online: DVIS++ tracker stage; offline: DVIS++ refiner stage)."""
    method, stage = MODES[mode]
    overrides = [
        f"model.method={method}", "model.reid_head=true", "model.decoder.num_queries=8",
        "model.tracker.num_layers=1", "model.tracker.num_heads=2", "model.tracker.ffn_dim=64",
        "model.refiner.num_layers=1", "model.refiner.num_heads=2", "model.refiner.ffn_dim=64",
        f"inference.min_size={min_size}", f"inference.max_size={max_size}", "inference.test_topk=5",
        "inference.object_mask_threshold=0.0", "data.val_root=''", "data.train_root=''",
    ]
    cfg = apply_overrides(load_preset_or_file("mask2former/synthetic_tiny"), overrides)
    torch.manual_seed(0)
    return save_checkpoint(out / mode, build_model(cfg).state_dict(), cfg, stage, 1)


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def measure(video: Path, ckpt: Path, task: str, mode: str, out: Path, probe: int, interval: float) -> dict:
    """Run `vidseg segment` on `video` and sample its memory (see the module docstring)."""
    cmd = [sys.executable, "-m", "vidseg.cli", "segment", str(video), "--weights", str(ckpt), "--task", task,
           "--mode", mode, "--out", str(out), "--device", "cpu", "--threads", "1"]
    shutil.rmtree(out, ignore_errors=True)  # this script's own folder (also after an interrupted run)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    frame = [0]
    tail = bytearray()

    def read_progress() -> None:
        assert proc.stderr is not None
        while chunk := proc.stderr.read1(4096):  # type: ignore[attr-defined]
            tail.extend(chunk)
            del tail[:-8192]
            found = _PROGRESS.findall(chunk)
            if found:
                frame[0] = int(found[-1][0])

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    samples: list[tuple[float, int, dict[str, int]]] = []
    start = time.perf_counter()
    while proc.poll() is None:
        try:
            status = _status_kb(proc.pid)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            break
        if "VmRSS" not in status:  # exiting (a zombie has no memory left)
            break
        samples.append((time.perf_counter() - start, frame[0], status))
        time.sleep(interval)
    proc.wait()
    reader.join(timeout=5)
    if proc.returncode != 0 or not samples:
        raise RuntimeError(f"vidseg segment failed ({proc.returncode}): {bytes(tail).decode(errors='replace')}")
    summary = json.loads((out / "summary.json").read_text())
    at = next((i for i, s in enumerate(samples) if s[1] >= probe), len(samples) - 1)
    mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
    after = samples[at:]
    keys = ("VmRSS", "RssAnon", "RssFile")
    rss0, anon0, file0 = (samples[at][2].get(k, 0) for k in keys)
    base, anon_base, file_base = (max(s[2].get(k, 0) for s in samples[: at + 1]) for k in keys)
    return {
        "task": task,
        "mode": mode,
        "frames": summary["frames"],
        "fps": summary["fps"],
        "seconds": round(time.perf_counter() - start, 1),
        "samples": len(samples),
        "rss_mb_at_probe": mb(rss0),
        "rss_mb_end": mb(samples[-1][2]["VmRSS"]),
        "end_growth_mb": mb(samples[-1][2]["VmRSS"] - rss0),
        "rss_mb_peak_to_probe": mb(base),
        "peak_growth_mb": mb(max(s[2]["VmRSS"] for s in after) - base),
        "anon_mb_at_probe": mb(anon0),
        "anon_mb_end": mb(samples[-1][2].get("RssAnon", 0)),
        "anon_peak_growth_mb": mb(max(s[2].get("RssAnon", 0) for s in after) - anon_base),
        "file_mb_at_probe": mb(file0),
        "file_mb_end": mb(samples[-1][2].get("RssFile", 0)),
        "file_peak_growth_mb": mb(max(s[2].get("RssFile", 0) for s in after) - file_base),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--size", default="360x640", help="video HxW (default 360x640)")
    parser.add_argument("--model-size", type=int, default=120, help="inference.min_size of the tiny models")
    parser.add_argument("--probe-frame", type=int, default=100, help="the frame whose RSS is the baseline")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--limit-mb", type=float, default=50.0, help="allowed growth after the probe frame")
    parser.add_argument("--workdir", default=None, help="keep the video, checkpoints and outputs here")
    parser.add_argument("--smoke", action="store_true", help="60 frames at 120x160 (tests that the script runs)")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.size, args.model_size, args.probe_frame, args.interval = 60, "120x160", 64, 20, 0.05
    height, width = (int(x) for x in args.size.split("x"))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vidseg-segmem-"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / f"synthetic_{args.frames}_{height}x{width}.mp4"
    if not video.is_file():
        write_video(video, args.frames, height, width)
    runs = []
    for mode in args.modes.split(","):
        ckpt = write_checkpoint(work / "ckpt", mode, args.model_size, args.model_size * 16 // 9)
        for task in args.tasks.split(","):
            runs.append(measure(video, ckpt, task, mode, work / f"out_{task}_{mode}", args.probe_frame,
                                args.interval))
            print(json.dumps(runs[-1]), file=sys.stderr)
    worst = max(r["peak_growth_mb"] for r in runs)
    worst_anon = max(r["anon_peak_growth_mb"] for r in runs)
    print(json.dumps({
        "video": {"frames": args.frames, "height": height, "width": width},
        "probe_frame": args.probe_frame,
        "limit_mb": args.limit_mb,
        "worst_peak_growth_mb": worst,
        "within_limit": worst < args.limit_mb,
        "worst_anon_peak_growth_mb": worst_anon,
        "anon_within_limit": worst_anon < args.limit_mb,
        "runs": runs,
    }, indent=1))


if __name__ == "__main__":
    main()
