"""GPU readiness: per-frame latency, fps and peak memory of the R50 segmenter and the DVIS++ online and offline
pipeline at 480p, in fp32 and bf16, with and without `torch.compile`; prints JSON.

A ResNet-50 DVIS++ offline model (random weights: the cost does not depend on them; re-id head, 6-layer
tracker and refiner, 100 queries) runs on one 480x854 frame repeatedly:

* `segmenter`: the Mask2Former segmenter on one frame;
* `online`: segmenter + referring tracker (`VideoSegmentationModel.step`, the tracker state carried along);
* `offline`: `online` plus one temporal-refiner pass over a `--window`-frame window, amortised per frame.

Each of fp32 / bf16 (CUDA autocast) x eager / `torch.compile` (the segmenter compiled, the dominant cost;
warm-up iterations absorb the compilation) reports the median ms and fps of each, and the peak CUDA memory
allocated. Without CUDA it runs fp32 eager on the CPU (`--cpu-iters`, a smaller default) and says the GPU
part was not run.

    python benchmarks/gpu_pipeline.py                # on a GPU machine: the whole matrix
    python benchmarks/gpu_pipeline.py --smoke        # tiny, CPU: tests that the script runs
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


def measure(model_config: ModelConfig, device: torch.device, height: int, width: int, amp: str, compiled: bool,
            iters: int, warmup: int, window: int) -> dict:
    """Median ms and fps of segmenter / online / offline per frame, and the peak CUDA memory (MB)."""
    torch.manual_seed(0)
    model = build_model(model_config).to(device).eval()
    if compiled:
        model.segmenter = torch.compile(model.segmenter)  # type: ignore[assignment]
    images = torch.randint(0, 256, (1, 3, height, width), generator=torch.Generator().manual_seed(0))
    images = images.float().to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else nullcontext()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    seg_ms, step_ms, refine_ms = [], [], []
    with torch.inference_mode(), autocast:
        state = model.init_state()
        steps = []
        for i in range(warmup + max(iters, window)):
            t_seg, _ = timed_ms(lambda: model.segmenter(images), device)
            t_step, (step, state) = timed_ms(lambda s=state: model.step(images, s), device)
            steps.append(strip_for_refiner(step))
            if warmup <= i < warmup + iters:
                seg_ms.append(t_seg)
                step_ms.append(t_step)
        for i in range(warmup + iters):
            t_ref, _ = timed_ms(lambda: model.refine(steps[-window:], mask_feature_device=device), device)
            if i >= warmup:
                refine_ms.append(t_ref)
    seg, online = statistics.median(seg_ms), statistics.median(step_ms)
    offline = online + statistics.median(refine_ms) / window

    def rate(ms: float) -> dict:
        return {"ms": round(ms, 2), "fps": round(1000 / ms, 2)}

    return {
        "segmenter": rate(seg),
        "online": rate(online),
        "offline": rate(offline),
        "peak_memory_mb": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                           if device.type == "cuda" else None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--num-classes", type=int, default=40, help="YouTube-VIS 2021: 40")
    parser.add_argument("--window", type=int, default=10, help="refiner window (frames)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="also absorbs torch.compile's compilation")
    parser.add_argument("--cpu-iters", type=int, default=3, help="iterations of the CPU fallback")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (tests that the script runs)")
    args = parser.parse_args()
    if args.smoke:
        args.height, args.width, args.backbone, args.window, args.cpu_iters = 64, 96, "tiny_cnn", 2, 1
    config = ModelConfig(backbone=BackboneConfig(name=args.backbone), num_classes=args.num_classes,
                         reid_head=True, method="dvis_offline")
    report: dict = {
        "input_hw": [args.height, args.width],
        "backbone": args.backbone,
        "weights": "random (cost does not depend on the values)",
        "num_queries": config.decoder.num_queries,
        "window": args.window,
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        device = torch.device("cuda")
        report["device"] = torch.cuda.get_device_name(device)
        runs = {}
        for amp in ("fp32", "bf16"):
            for compiled in (False, True) if not args.no_compile else (False,):
                name = f"{amp}_{'compile' if compiled else 'eager'}"
                runs[name] = measure(config, device, args.height, args.width, amp, compiled, args.iters,
                                     args.warmup, args.window)
        report["gpu"] = runs
    else:
        report["device"] = "cpu"
        report["gpu"] = "not run: no CUDA device"
        report["cpu_fp32_eager"] = measure(config, torch.device("cpu"), args.height, args.width, "fp32", False,
                                           args.cpu_iters, 1, args.window)
        report["cpu_threads"] = torch.get_num_threads()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
