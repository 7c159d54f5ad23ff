"""Ablation of MVC-1, MVC-2 and OMA on the synthetic VPS/VSS benchmark (the MVC paper's Table 4, tiny scale).

Five rows, each the full DVIS++ offline pipeline segmenter -> tracker -> refiner with the same seeds and
iteration budgets, differing only in the training strategy switched on:

    baseline | +MVC-1 (segmenter) | +MVC-2 (tracker, tube masking) | +OMA (refiner) | all

Every segmenter starts from the same trained tiny segmenter (`--init`, e.g. the `mask2former/synthetic_tiny`
run) and is fine-tuned for `--seg-iters` with or without MVC-1; trackers and refiners train from scratch on
top, so a row differs from the baseline only where its strategy acts. Shared prefixes are trained once
(e.g. the baseline segmenter serves the baseline, +MVC-2 and +OMA rows). Training uses the VIPSeg-format
set `--vipseg`; every row is scored in offline mode on the validation videos of `--eval` (the run-A
evaluation set, written with `--formats vipseg,ytvis,vspw`): VPQ and STQ (VIPSeg format, official windows)
and mIoU (VSPW format, the same videos).

    python benchmarks/ablation_mvc_oma.py --vipseg /work/synth/vipseg --eval /work/synth_eval \\
        --init /work/runs/A2/seg/ckpt_0001500 --out /work/runs/ablation2 --seeds 0 1 2
    python benchmarks/ablation_mvc_oma.py --smoke     # every row, 1 iteration a stage at 64 px, for the tests

Runs are cached in `--out` (a finished stage is not trained again), so the script can be re-run or run per
seed in parallel (`--seeds 1`) and then once more over all seeds to print the table. Prints a markdown table
with mean ± std over seeds, then JSON with every run's numbers. `--smoke` generates what it is not given in a
temporary folder: a 4-video synthetic set (both formats; training and scoring) and a 1-iteration `--init`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _runs import SMOKE_SIZES, cached_scores, cached_stage, mean_std_table

from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.inference.dataset_eval import evaluate_vps, evaluate_vss
from vidseg.inference.predictor import VideoPredictor

ROWS = {
    # row: (MVC-1 on the segmenter, MVC-2 on the tracker, OMA on the refiner)
    "baseline": (False, False, False),
    "+MVC-1": (True, False, False),
    "+MVC-2": (False, True, False),
    "+OMA": (False, False, True),
    "all": (True, True, True),
}
# --smoke: every stage trained and scored on 64 px frames.


def common_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    return [f"seed={seed}", f"data.train_root={args.vipseg}", f"data.val_root={args.vipseg}",
            f"data.num_workers={args.workers}", *args.overrides]


def run_row(args: argparse.Namespace, seed: int, row: str) -> dict[str, float]:
    mvc1, mvc2, oma = ROWS[row]
    base = common_overrides(args, seed)
    root = Path(args.out) / f"seed{seed}"
    seg_name = "seg_mvc1" if mvc1 else "seg"
    seg = cached_stage(root / seg_name, "mask2former/synthetic_tiny", "segmenter", Path(args.init),
                       base + (["mvc.enabled=true", "mvc.mode=frame"] if mvc1 else []), args.seg_iters)
    trk_name = f"{seg_name}__trk" + ("_mvc2" if mvc2 else "")
    trk = cached_stage(root / trk_name, "dvis_plus/synthetic_tiny_tracker", "tracker", seg,
                       base + (["mvc.enabled=true", "mvc.mode=tube"] if mvc2 else []), args.trk_iters)
    ref_name = f"{trk_name}__ref" + ("_oma" if oma else "")
    ref = cached_stage(root / ref_name, "dvis_plus/synthetic_tiny_refiner", "refiner", trk,
                       base + (["oma.enabled=true"] if oma else []), args.ref_iters)
    out = root / ref_name

    def score() -> dict[str, float]:
        vps = evaluate_vps(VideoPredictor.from_checkpoint(ref, task="vps", mode="offline", device="cpu"),
                           Path(args.eval) / "vipseg" / "panoptic_gt_VIPSeg_val.json", out / "eval_vps")
        vss = evaluate_vss(VideoPredictor.from_checkpoint(ref, task="vss", mode="offline", device="cpu"),
                           Path(args.eval) / "vspw", "val", out / "eval_vss")
        return {"VPQ": vps.metrics.vpq.VPQ, "STQ": 100 * vps.metrics.stq.STQ, "mIoU": 100 * vss.metrics.mIoU,
                "id_switches": vps.id_switches.switches}

    return cached_scores(out / "scores.json", score)


def smoke_inputs(args: argparse.Namespace, tmp: Path) -> None:
    """Fill in the inputs --smoke was not given, in `tmp`: 3 training videos and 1 scored (16 frames: VPQ's
    longest window is 15), and an `--init` segmenter trained for 1 iteration."""
    if args.vipseg is None or args.eval is None:
        write_synthetic_dataset(tmp, 4, 16, 64, 96, formats=("vipseg", "vspw"), seed=0)
        args.vipseg, args.eval = args.vipseg or str(tmp / "vipseg"), args.eval or str(tmp)
    args.out = args.out or str(tmp / "out")
    if args.init is None:
        args.init = str(cached_stage(tmp / "init", "mask2former/synthetic_tiny", "segmenter", None,
                                     common_overrides(args, 0), 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vipseg", help="synthetic VIPSeg-format training root")
    p.add_argument("--eval", help="synthetic set with vipseg and vspw formats (val split scored)")
    p.add_argument("--init", help="trained tiny segmenter checkpoint every row starts from")
    p.add_argument("--out")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--seg-iters", type=int, default=150)
    p.add_argument("--trk-iters", type=int, default=200)
    p.add_argument("--ref-iters", type=int, default=300)
    p.add_argument("--workers", type=int, default=0, help="data loader workers per training")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every training")
    p.add_argument("--smoke", action="store_true", help="one seed, 1 iteration a stage at 64 px (tests that it runs)")
    args = p.parse_args()
    if not args.smoke and None in (args.vipseg, args.eval, args.init, args.out):
        p.error("give --vipseg, --eval, --init and --out (or --smoke)")
    if args.smoke:
        args.seeds, args.seg_iters, args.trk_iters, args.ref_iters = [0], 1, 1, 1
        args.overrides = [*SMOKE_SIZES, *args.overrides]

    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            smoke_inputs(args, Path(tmp))
        results = {row: {seed: run_row(args, seed, row) for seed in args.seeds} for row in args.rows}
    table, summary = mean_std_table(results, ["VPQ", "STQ", "mIoU", "id_switches"])
    print("\n".join(table))
    print(json.dumps({"seeds": args.seeds, "budget": {"segmenter": args.seg_iters, "tracker": args.trk_iters,
                                                      "refiner": args.ref_iters},
                      "runs": results, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
