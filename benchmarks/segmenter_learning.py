"""Does the segmenter learn? VPQ/STQ on the synthetic val split, untrained vs a trained checkpoint.

    vidseg data synth --out synth --videos 30 --frames 8 --size 240x320 --formats vipseg --seed 0
    vidseg train mask2former/synthetic_tiny --out runs/seg_tiny --set data.train_root=synth/vipseg \
        --set optim.max_iters=1500 --set optim.steps=[1200]
    python benchmarks/segmenter_learning.py --data synth/vipseg --checkpoint runs/seg_tiny/ckpt_0001500
    python benchmarks/segmenter_learning.py --smoke      # tiny synthetic set and 2-iteration run

Prints JSON: the official-scale metrics of the same architecture before (seeded random init) and after.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from _runs import SMOKE_SIZES

from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.io.checkpoint import load_checkpoint
from vidseg.models.segmenter import build_segmenter
from vidseg.training.evaluate import evaluate_segmenter_vps
from vidseg.training.run import train

KEYS = ("VPQ", "VPQ_thing", "VPQ_stuff", "STQ", "AQ", "SQ")
PRESET = "mask2former/synthetic_tiny"
# --smoke: the preset's model trained and scored on 64 px frames.
SMOKE = [*SMOKE_SIZES, "optim.max_iters=2"]


def smoke_checkpoint(data: str, out: Path) -> str:
    """A 2-iteration run of the preset on `data`, in `out`."""
    run = train(PRESET, "segmenter", out, overrides=[*SMOKE, f"data.train_root={data}"], device="cpu")
    assert run.last_checkpoint is not None
    return str(run.last_checkpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="VIPSeg-format dataset root")
    parser.add_argument("--checkpoint")
    parser.add_argument("--split", default="val")
    parser.add_argument("--smoke", action="store_true",
                        help="without --data/--checkpoint: a tiny synthetic set and run (tests that it runs)")
    args = parser.parse_args()
    if not args.smoke and (args.data is None or args.checkpoint is None):
        parser.error("give --data and --checkpoint (or --smoke)")
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:  # 3 train videos, 1 val; 16 frames: VPQ's longest window is 15
            args.data = str(write_synthetic_dataset(tmp, 4, 16, 64, 96, formats=("vipseg",), seed=0)["vipseg"])
        if args.checkpoint is None:
            args.checkpoint = smoke_checkpoint(args.data, Path(tmp) / "run")
        ckpt = load_checkpoint(args.checkpoint, expected_stage="segmenter")
        torch.manual_seed(ckpt.config.seed)
        model = build_segmenter(ckpt.config.model)
        before = evaluate_segmenter_vps(model, ckpt.config, args.data, args.split, f"{tmp}/before")
        model.load_state_dict(ckpt.state_dict)
        after = evaluate_segmenter_vps(model, ckpt.config, args.data, args.split, f"{tmp}/after")
    for name, metrics in (("untrained", before), ("trained", after)):
        flat = metrics.to_json()
        report[name] = {k: flat[k] for k in KEYS if k in flat}
        report[name]["VPQ_1frame"] = flat["vpq"]["windows"]["1"]["VPQ"]
    report["iterations"] = ckpt.iteration
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
