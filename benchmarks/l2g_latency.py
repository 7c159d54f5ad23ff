"""Per-frame latency of Local2Global vs the plain segmenter it is built on (same weights, same process).

Builds a randomly initialised R50 Mask2Former (100 queries, 9 decoder layers, sigmoid head) and the
Local2Global model around it (aligner 3 layers / FFN 1024), then times, alternating every iteration so drift
affects all alike, the median milliseconds of:

* `segmenter`: the plain segmenter on one frame (`Segmenter.forward`),
* `l2g`: one streaming Local2Global step (`Local2Global.step`) in steady state (from frame 2 on, so
  the propagated queries and the trajectory embedding are used),
* `l2g_no_aligner`: the same with the aligner switched off (plain query propagation with box PE),
* and, on one shared encoder output, the decoder alone vs the Local2Global part (selection + aligner + box
  PE + decoder), which isolates the overhead.

Prints one JSON object. Usage: python benchmarks/l2g_latency.py [--height 384 --width 640 --iters 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable

import torch

from vidseg.config import BackboneConfig, L2GConfig, ModelConfig
from vidseg.models.local2global import Local2Global, build_local2global
from vidseg.models.segmenter import build_segmenter


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_all(runs: dict[str, Callable[[], object]], device: torch.device, iters: int, warmup: int) -> dict[str, float]:
    """Median ms of every run, interleaved each iteration."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(iters):
        for name, run in runs.items():
            _sync(device)
            t0 = time.perf_counter()
            run()
            _sync(device)
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(v) for name, v in times.items()}


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def bench(cfg: ModelConfig, images: torch.Tensor, device: torch.device, iters: int, warmup: int) -> dict:
    torch.manual_seed(0)
    segmenter = build_segmenter(cfg).to(device).eval()
    l2g = build_local2global(cfg).to(device).eval()
    plain = build_local2global(dataclasses.replace(cfg, l2g=dataclasses.replace(cfg.l2g, aligner=False)))
    plain = plain.to(device).eval()
    images = images.to(device)

    def steady_state(model: Local2Global):
        state = model.init_state()
        for _ in range(2):
            _, state = model.step(segmenter, images, state)
        return state

    with torch.inference_mode():
        state, plain_state = steady_state(l2g), steady_state(plain)
        encoded = segmenter.encode(segmenter.normalize(images))
        frame = {
            "segmenter": lambda: segmenter(images),
            "l2g": lambda: l2g.step(segmenter, images, state),
            "l2g_no_aligner": lambda: plain.step(segmenter, images, plain_state),
        }
        heads = {
            "decoder": lambda: segmenter.decode(encoded),
            "l2g_after_encoder": lambda: l2g.step_encoded(segmenter, encoded, state),
        }
        per_frame = time_all(frame, device, iters, warmup)
        after_encoder = time_all(heads, device, iters, warmup)
    return {
        "per_frame_ms": {k: round(v, 2) for k, v in per_frame.items()},
        "ratio_l2g_over_segmenter": round(per_frame["l2g"] / per_frame["segmenter"], 3),
        "ratio_no_aligner_over_segmenter": round(per_frame["l2g_no_aligner"] / per_frame["segmenter"], 3),
        "after_encoder_ms": {k: round(v, 2) for k, v in after_encoder.items()},
        "l2g_overhead_ms": round(after_encoder["l2g_after_encoder"] - after_encoder["decoder"], 2),
        "params": {
            "segmenter": params(segmenter),
            "local2global": params(l2g),
            "aligner": params(l2g.aligner) if l2g.aligner is not None else 0,
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--num-classes", type=int, default=40)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (tests that the script runs)")
    args = p.parse_args()
    if args.smoke:
        args.height, args.width, args.backbone, args.iters, args.warmup = 128, 128, "tiny_cnn", 1, 0
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ModelConfig(
        backbone=BackboneConfig(name=args.backbone),  # type: ignore[arg-type]
        num_classes=args.num_classes,
        classification="sigmoid",
        method="l2g",
        l2g=L2GConfig(),
    )
    images = torch.rand(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0)) * 255
    result: dict = {
        "benchmark": "l2g_latency",
        "input": [args.height, args.width],
        "backbone": args.backbone,
        "queries": cfg.decoder.num_queries,
        "iters": args.iters,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_fp32": bench(cfg, images, torch.device("cpu"), args.iters, args.warmup),
    }
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        result["gpu"] = torch.cuda.get_device_name(gpu)
        result["gpu_fp32"] = bench(cfg, images, gpu, args.iters * 10, args.warmup * 5)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
