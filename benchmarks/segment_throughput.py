"""Is `vidseg segment` bounded by the model, not by video I/O? Decode, model and overlay encode, timed apart
and together; prints JSON.

On a synthetic H.264 clip (`segment_memory.write_video`: moving squares on a texture, `--size`, `--frames`)
with the bundled model (or `--weights`), torch on `--threads` threads, in one process:

* `decode_s`: decoding the clip alone; `encode_s`: drawing and encoding the overlay of every frame alone;
* `model_s`: the model alone: `VideoPredictor.run` over frames already in memory, then `finish()` (the
  official results), nothing read or written;
* `sequential_s`: `segment_video` with decoding and the overlay in the model's thread (`read_ahead=0`,
  `write_behind=0`): what `vidseg segment` cost before the background threads;
* `overlapped_s`: `segment_video` as `vidseg segment` runs it (decoding ahead and encoding behind in
  background threads).

`*_over_model` are each pipeline's time over `model_s`: 1.0 means I/O costs nothing on top of the model.
The three model-bound runs alternate `--repeats` times (the best of each counts), so machine load hits all
alike. Decoding and encoding overlap with the model only where a core is free for them: with `--threads 1`
on 2 cores, as `vidseg segment` chooses by default there.

    OMP_NUM_THREADS=1 python benchmarks/segment_throughput.py                 # 720p, 120 frames
    python benchmarks/segment_throughput.py --smoke                           # tiny, for the tests
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from segment_memory import write_video

from vidseg.inference.predictor import VideoPredictor
from vidseg.inference.segment import segment_video
from vidseg.io.video import open_video
from vidseg.io.visualize import OverlayWriter


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="720x1280", help="clip HxW")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--task", default="vis")
    parser.add_argument("--smoke", action="store_true", help="12 frames at 120x160, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.size, args.repeats = 12, "120x160", 1
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="vidseg-throughput-"))
    try:
        clip = work / "clip.mp4"
        write_video(clip, args.frames, height, width)
        frames = list(open_video(clip))

        def predictor(read_ahead: int) -> VideoPredictor:
            kwargs = {"task": args.task, "device": "cpu", "read_ahead": read_ahead}
            return (VideoPredictor.from_checkpoint(args.weights, **kwargs) if args.weights
                    else VideoPredictor.from_pretrained("demo", **kwargs))

        sequential, overlapped = predictor(0), predictor(4)

        def model_only() -> None:
            for _ in sequential.run(frames):
                pass
            for _ in sequential.finish():
                pass

        def pipeline(p: VideoPredictor, depth: int, name: str) -> None:
            segment_video(p, clip, work / name, progress=False, write_behind=depth)

        def encode_only() -> None:
            result = next(iter(sequential.run(frames[:1])))  # the same objects drawn on every frame
            with OverlayWriter(work / "encode", fps=30) as overlay:
                for f in frames:
                    overlay.write(f, result)

        runs: dict[str, list[float]] = {"model": [], "sequential": [], "overlapped": []}
        model_only()  # warm-up: first-call allocations and lazy imports
        for r in range(args.repeats):
            order = ["model", "sequential", "overlapped"]
            for name in order if r % 2 == 0 else order[::-1]:
                if name == "model":
                    runs[name].append(timed(model_only))
                elif name == "sequential":
                    runs[name].append(timed(lambda: pipeline(sequential, 0, "out_seq")))
                else:
                    runs[name].append(timed(lambda: pipeline(overlapped, 4, "out_ovl")))
        decode_s = timed(lambda: list(open_video(clip)))
        encode_s = timed(encode_only)
        best = {k: min(v) for k, v in runs.items()}
        print(json.dumps({
            "clip": {"frames": args.frames, "height": height, "width": width},
            "weights": args.weights or "bundled",
            "task": args.task,
            "threads": args.threads,
            "cpus": os.cpu_count(),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "decode_s": round(decode_s, 3),
            "encode_s": round(encode_s, 3),
            "model_s": round(best["model"], 3),
            "sequential_s": round(best["sequential"], 3),
            "overlapped_s": round(best["overlapped"], 3),
            "model_fps": round(args.frames / best["model"], 2),
            "overlapped_fps": round(args.frames / best["overlapped"], 2),
            "sequential_over_model": round(best["sequential"] / best["model"], 3),
            "overlapped_over_model": round(best["overlapped"] / best["model"], 3),
            "runs_s": {k: [round(x, 3) for x in v] for k, v in runs.items()},
        }, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
