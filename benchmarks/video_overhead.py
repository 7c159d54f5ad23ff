"""What the video models cost on top of the segmenter, per frame, in one process.

Times, at 384x640 with a ResNet-50 DVIS++ model (random weights: the cost does not depend on them):

* `segmenter_ms`: the Mask2Former segmenter alone on one frame;
* `segmenter_tracker_ms`: segmenter + referring tracker (`VideoSegmentationModel.step`, DVIS++ online, the
  tracker state carried from frame to frame, as `VideoPredictor` runs it); `tracker_alone_ms`: the tracker
  step alone on a segmenter output (the same cost, without the segmenter's run-to-run noise);
* `refiner_amortised_ms`: one temporal-refiner pass over a window of W frames (mask features on the CPU,
  as `VideoPredictor` keeps them), divided by W; `segmenter_tracker_refiner_ms` adds it to the online step.

Segmenter and online step alternate every iteration so drift affects both alike; each number is the median
of `--iters` runs after `--warmup` runs. The issue's target: tracker overhead <= 15 %. CPU by default,
CUDA when available (`--device`), optionally under autocast (`--amp bf16`). Prints JSON.

    OMP_NUM_THREADS=2 python benchmarks/video_overhead.py --iters 5
"""

from __future__ import annotations

import argparse
import json
import statistics
from contextlib import nullcontext

import torch
from _timing import timed_ms

from vidseg.config import BackboneConfig, ModelConfig
from vidseg.inference.predictor import strip_for_refiner
from vidseg.models.model import build_model
from vidseg.models.video import ModelStep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--num-classes", type=int, default=40, help="YouTube-VIS 2021: 40")
    parser.add_argument("--window", type=int, default=10, help="refiner window W (frames)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="CUDA autocast")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (tests that the script runs)")
    args = parser.parse_args()
    if args.smoke:
        args.height, args.width, args.backbone, args.window, args.iters, args.warmup = 64, 64, "tiny_cnn", 2, 1, 0

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    # DVIS++ defaults: re-id head (tracker/refiner width 2 x 256), 6-layer tracker and refiner.
    config = ModelConfig(backbone=BackboneConfig(name=args.backbone), num_classes=args.num_classes,
                         reid_head=True, method="dvis_offline")
    model = build_model(config).to(device).eval()
    images = torch.randint(0, 256, (1, 3, args.height, args.width), generator=torch.Generator().manual_seed(0))
    images = images.float().to(device)
    autocast = (torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[args.amp])
                if args.amp != "none" and device.type == "cuda" else nullcontext())

    seg_ms: list[float] = []
    step_ms: list[float] = []
    tracker_ms: list[float] = []
    steps: list[ModelStep] = []
    refine_ms: list[float] = []
    with torch.inference_mode(), autocast:
        state = model.init_state()
        tracker_state = model.init_state()
        for i in range(args.warmup + args.iters):
            t_seg, seg = timed_ms(lambda: model.segmenter(images), device)
            # The tracker alone on that segmenter output: its cost without the segmenter's run-to-run noise.
            t_trk, (_, tracker_state) = timed_ms(
                lambda o=seg, s=tracker_state: model.video.online.track(o, s), device
            )
            t_step, (step, state) = timed_ms(lambda s=state: model.step(images, s), device)
            if i >= args.warmup:
                seg_ms.append(t_seg)
                tracker_ms.append(t_trk)
                step_ms.append(t_step)
            steps.append(strip_for_refiner(step))
        while len(steps) < args.window:  # fill the refiner window with further (untimed) frames
            step, state = model.step(images, state)
            steps.append(strip_for_refiner(step))
        window = steps[-args.window:]
        for i in range(args.warmup + args.iters):
            t_ref, _ = timed_ms(lambda: model.refine(window, mask_feature_device="cpu"), device)
            if i >= args.warmup:
                refine_ms.append(t_ref)

    seg, online, refine = statistics.median(seg_ms), statistics.median(step_ms), statistics.median(refine_ms)
    tracker = statistics.median(tracker_ms)
    per_frame_refine = refine / args.window
    print(json.dumps({
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "amp": args.amp if device.type == "cuda" else "none",
        "backbone": args.backbone,
        "input_hw": [args.height, args.width],
        "weights": "random (cost does not depend on the values)",
        "num_queries": config.decoder.num_queries,
        "iters": args.iters,
        "warmup": args.warmup,
        "window": args.window,
        "segmenter_ms": round(seg, 2),
        "segmenter_tracker_ms": round(online, 2),
        "tracker_overhead": round(online / seg - 1, 4),
        "tracker_alone_ms": round(tracker, 2),
        "tracker_alone_overhead": round(tracker / seg, 4),
        "refiner_window_ms": round(refine, 2),
        "refiner_amortised_ms": round(per_frame_refine, 2),
        "segmenter_tracker_refiner_ms": round(online + per_frame_refine, 2),
        "tracker_refiner_overhead": round((online + per_frame_refine) / seg - 1, 4),
        "target_tracker_overhead": 0.15,
        "meets_target": max(online / seg - 1, tracker / seg) <= 0.15,
    }, indent=1))


if __name__ == "__main__":
    main()
