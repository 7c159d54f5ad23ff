"""Training throughput (iterations/s) of a stage, and the per-iteration overhead of MVC / OMA in the same run.

For every variant the same batches (pre-collated once, so data loading is not measured) go through
`stage.loss` + backward + AdamW step. Variants are interleaved iteration by iteration, so a slowdown of the
machine affects all of them equally; the report gives the median time per iteration of each and its ratio
to the first (baseline) variant.

    python benchmarks/train_throughput.py --stage segmenter --data /work/synth/vipseg            # MVC-1
    python benchmarks/train_throughput.py --stage tracker --data /work/synth/vipseg               # MVC-2
    python benchmarks/train_throughput.py --stage refiner --data /work/synth/vipseg               # OMA
    python benchmarks/train_throughput.py --stage segmenter --device cuda --amp bf16 ...           # GPU
    python benchmarks/train_throughput.py --smoke                    # tiny, for the tests (any --stage)

Without --data a small synthetic VIPSeg-format set is generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _runs import SMOKE_SIZES

from vidseg.config import apply_overrides, load_preset_or_file
from vidseg.data.build import build_clip_dataset
from vidseg.data.clips import collate_clips
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.training.stages import RefinerStage, SegmenterStage, TrackerStage

PRESETS = {
    "segmenter": ("mask2former/synthetic_tiny", SegmenterStage, ["mvc.enabled=true", "mvc.mode=frame"]),
    "tracker": ("dvis_plus/synthetic_tiny_tracker", TrackerStage, ["mvc.enabled=true", "mvc.mode=tube"]),
    "refiner": ("dvis_plus/synthetic_tiny_refiner", RefinerStage, ["oma.enabled=true"]),
}
# --smoke: the presets' models on 64 px frames, few loss points, one clip per batch.


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stage", choices=list(PRESETS), default="segmenter")
    p.add_argument("--data", help="VIPSeg-format root (default: generate a small synthetic one)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per variant")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--smoke", action="store_true", help="tiny data and sizes, 1 iteration (tests that it runs)")
    args = p.parse_args()
    videos, height, width = 6, 240, 320
    if args.smoke:
        args.iters, args.warmup, args.overrides = 1, 0, [*SMOKE_SIZES, *args.overrides]
        videos, height, width = 2, 64, 96

    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.TemporaryDirectory()
        # 8 frames: the refiner's clip length
        write_synthetic_dataset(Path(tmp.name), videos, 8, height, width, formats=("vipseg",), seed=0)
        data = str(Path(tmp.name) / "vipseg")
    preset, cls, feature = PRESETS[args.stage]
    base = apply_overrides(load_preset_or_file(preset), [f"data.train_root={data}", "data.num_workers=0",
                                                        *args.overrides])
    variants = {"baseline": base, "with " + ", ".join(feature): apply_overrides(base, feature)}
    device = torch.device(args.device)
    dataset = build_clip_dataset(base.data, "panoptic", train=True, seed=0)
    batches = [collate_clips([dataset[(i * base.optim.batch_size + j) % len(dataset)]
                              for j in range(base.optim.batch_size)]).to(device)
               for i in range(args.warmup + args.iters)]
    runners = {}
    for name, cfg in variants.items():
        torch.manual_seed(0)
        stage = cls.from_config(cfg)
        stage.model.to(device).train()
        params = [q for q in stage.model.parameters() if q.requires_grad]
        runners[name] = (stage, torch.optim.AdamW(params, lr=cfg.optim.lr))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i, batch in enumerate(batches):
        for name, (stage, opt) in runners.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = stage.loss(stage.model, batch, i)
            opt.zero_grad(set_to_none=True)
            out.loss.float().backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    baseline = statistics.median(times["baseline"])
    report = {
        "stage": args.stage,
        "device": str(device),
        "amp": args.amp,
        "threads": torch.get_num_threads(),
        "batch_size": base.optim.batch_size,
        "clip_frames": base.data.num_frames,
        "iters": args.iters,
        "variants": {
            name: {"sec_per_iter": round(statistics.median(t), 4), "iters_per_sec": round(1 / statistics.median(t), 3),
                   "relative_to_baseline": round(statistics.median(t) / baseline, 4)}
            for name, t in times.items()
        },
    }
    print(json.dumps(report, indent=1))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
