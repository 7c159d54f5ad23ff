"""`vidseg segment` speed of the bundled model next to a peer checkpoint (the previous bundled model), one
run; prints JSON.

A real clip (`--video`, default the bedroom video of ../shared/data) is cut and resized to `--short-side`
(720p by default) with `make_demo_assets.cut_clip`; then `segment_video` (what `vidseg segment` runs:
decoding ahead, the overlay and the result files) segments it with each model, torch on `--threads`
threads, the models alternating `--repeats` times (the best of each counts), so machine load hits all alike.
The bundled model runs online and offline (its default).

    # the previous bundled model (EfficientNet-Lite0 run B), from git:
    mkdir /tmp/effnet_demo_model && for f in config.json manifest.json model.safetensors trainer_state.pt; do
        git show f7da8c6:src/vidseg/assets/demo_model/$f > /tmp/effnet_demo_model/$f; done
    OMP_NUM_THREADS=1 python benchmarks/bundled_speed.py --peer /tmp/effnet_demo_model
    python benchmarks/bundled_speed.py --peer PEER --smoke                        # tiny, for the tests
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from make_demo_assets import cut_clip

from vidseg.inference.predictor import VideoPredictor
from vidseg.inference.segment import segment_video

VIDEO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos" / "bedroom.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peer", required=True, help="the checkpoint to compare with (the previous bundled model)")
    parser.add_argument("--video", default=str(VIDEO))
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--short-side", type=int, default=720)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="4 frames at 120p, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.short_side, args.repeats = 4, 120, 1
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="vidseg-bundled-speed-"))
    try:
        clip = cut_clip(args.video, work / "clip.mp4", 0, args.frames, 1, args.short_side)
        models = {
            "bundled_offline": VideoPredictor.from_pretrained("demo", device="cpu", mode="offline"),
            "bundled_online": VideoPredictor.from_pretrained("demo", device="cpu", mode="online"),
            "peer_online": VideoPredictor.from_checkpoint(args.peer, device="cpu"),
        }
        runs: dict[str, list[float]] = {name: [] for name in models}
        for r in range(args.repeats):
            for name in list(models) if r % 2 == 0 else list(models)[::-1]:
                start = time.perf_counter()
                segment_video(models[name], clip["path"], work / name, progress=False)
                runs[name].append(time.perf_counter() - start)
        best = {name: min(v) for name, v in runs.items()}
        print(json.dumps({
            "clip": clip,
            "peer": args.peer,
            "threads": args.threads,
            "cpus": os.cpu_count(),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "fps": {name: round(args.frames / s, 3) for name, s in best.items()},
            "seconds_per_frame": {name: round(s / args.frames, 3) for name, s in best.items()},
            "runs_s": {name: [round(x, 2) for x in v] for name, v in runs.items()},
        }, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
