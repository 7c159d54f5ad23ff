"""Does the segmenter learn? VPQ/STQ on the synthetic val split, untrained vs a trained checkpoint.

    vidseg data synth --out synth --videos 30 --frames 8 --size 240x320 --formats vipseg --seed 0
    vidseg train mask2former/synthetic_tiny --out runs/seg_tiny --set data.train_root=synth/vipseg \
        --set optim.max_iters=1500 --set optim.steps=[1200]
    python benchmarks/segmenter_learning.py --data synth/vipseg --checkpoint runs/seg_tiny/ckpt_0001500

Prints JSON: the official-scale metrics of the same architecture before (seeded random init) and after.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from vidseg.io.checkpoint import load_checkpoint
from vidseg.models.segmenter import build_segmenter
from vidseg.training.evaluate import evaluate_segmenter_vps

KEYS = ("VPQ", "VPQ_thing", "VPQ_stuff", "STQ", "AQ", "SQ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="VIPSeg-format dataset root")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    ckpt = load_checkpoint(args.checkpoint, expected_stage="segmenter")
    torch.manual_seed(ckpt.config.seed)
    model = build_segmenter(ckpt.config.model)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
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
