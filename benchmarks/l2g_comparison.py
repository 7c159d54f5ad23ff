"""Local2Global vs plain query propagation vs MinVIS vs DVIS++ online on the synthetic VIS benchmark.

Equal budget: every model starts from a tiny segmenter of the same architecture and training budget (a
`local2global/synthetic_tiny` segmenter run) with the class head its paper uses: softmax over K+1 classes
for MinVIS and DVIS++ (`--segmenter-softmax`; DVIS++ needs it), sigmoid focal for Local2Global
(`--segmenter-sigmoid`). Then each gets the same number of video-training iterations (`--iters`) on the
same 4-frame clips, batch 2 (8 frames per iteration), with the same seed:

* `minvis`: the segmenter itself trained on for `--iters` iterations (its frames as images), tracked at
  inference by MinVIS query matching;
* `dvis_online`: the DVIS++ referring tracker (3 layers) trained on the frozen segmenter;
* `l2g`: Local2Global (L2G-aligner, trajectory position embeddings, reduced supervision) from the segmenter;
* `plain`: plain query propagation, the L2G paper's baseline: aligner and trajectory position embedding off
  (the previous frame's queries go straight to the decoder, with learned static positions).

Each model is streamed online through `VideoPredictor` over the validation videos of `--eval` (YouTube-VIS
format) and scored with the `vidseg eval` code: VIS AP, and identity switches of the query slots against
the ground-truth tracks.

    SEG="local2global/synthetic_tiny --stage segmenter --set data.num_frames=1 --set optim.max_iters=1000
         --set optim.steps=[800] --set data.train_root=/work/synth/ytvis/train/JPEGImages
         --set data.train_annotations=/work/synth/ytvis/train/instances.json"
    vidseg train $SEG --out /work/runs/l2g_cmp/seg
    vidseg train $SEG --set model.classification=softmax --set loss.class_weight=2.0 \\
        --out /work/runs/l2g_cmp/seg_softmax
    python benchmarks/l2g_comparison.py --train /work/synth/ytvis/train --eval /work/synth_eval/ytvis/val \\
        --segmenter-sigmoid /work/runs/l2g_cmp/seg/ckpt_0001000 \\
        --segmenter-softmax /work/runs/l2g_cmp/seg_softmax/ckpt_0001000 --out /work/runs/l2g_cmp --seeds 0 1 2
    python benchmarks/l2g_comparison.py --smoke       # every model, 1 iteration at 64 px, for the tests

Runs are cached in `--out` like `ablation_mvc_oma.py`'s, so seeds can run in parallel (`--seeds 1`) and a
last call over all seeds prints the table: mean ± std over seeds, then JSON with every run. `--smoke`
generates what it is not given in a temporary folder: a 4-video synthetic YouTube-VIS set (3 training
videos, 1 scored) and both segmenters, trained for 1 iteration as above.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _runs import SMOKE_SIZES, cached_scores, cached_stage, mean_std_table

from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.inference.dataset_eval import evaluate_vis
from vidseg.inference.predictor import VideoPredictor

PRESET = "local2global/synthetic_tiny"
SOFTMAX = ["model.classification=softmax", "loss.class_weight=2.0"]
TRACKER = ["model.tracker.num_layers=3", "model.tracker.num_heads=4", "model.tracker.ffn_dim=256"]
MODELS = {
    # name: (stage, starts from the softmax segmenter, extra overrides)
    "minvis": ("segmenter", True, [*SOFTMAX, "optim.batch_size=8", "data.num_frames=1"]),
    "dvis_online": ("tracker", True, [*SOFTMAX, *TRACKER]),
    "l2g": ("l2g", False, []),
    "plain": ("l2g", False, ["model.l2g.aligner=false", "model.l2g.trajectory_pe=false"]),
}
# --smoke: every model trained and scored on 64 px frames.


def common_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    train_dir = Path(args.train)
    return [f"seed={seed}", f"data.train_root={train_dir / 'JPEGImages'}",
            f"data.train_annotations={train_dir / 'instances.json'}", "optim.batch_size=2", "data.num_frames=4",
            f"data.num_workers={args.workers}", *args.overrides]


def run_model(args: argparse.Namespace, seed: int, name: str) -> dict[str, float]:
    stage, softmax, extra = MODELS[name]
    common = common_overrides(args, seed)
    out = Path(args.out) / f"seed{seed}" / name
    init = Path(args.segmenter_softmax if softmax else args.segmenter_sigmoid)
    ckpt = cached_stage(out, PRESET, stage, init, common + extra, args.iters)

    def score() -> dict[str, float]:
        vis = evaluate_vis(VideoPredictor.from_checkpoint(ckpt, task="vis", mode="online", device="cpu"),
                           Path(args.eval) / "instances.json", out / "vis.zip")
        return {"AP": 100 * vis.metrics.AP, "AP50": 100 * vis.metrics.AP50,
                "id_switches": vis.id_switches.switches, "matched": vis.id_switches.matched}

    return cached_scores(out / "scores.json", score)


def smoke_inputs(args: argparse.Namespace, tmp: Path) -> None:
    """Fill in the inputs --smoke was not given, in `tmp`; the segmenters as the docstring trains them."""
    if args.train is None or args.eval is None:
        write_synthetic_dataset(tmp, 4, 6, 64, 96, formats=("ytvis",), seed=0)
        args.train, args.eval = args.train or str(tmp / "ytvis/train"), args.eval or str(tmp / "ytvis/val")
    args.out = args.out or str(tmp / "out")
    segmenter = [*common_overrides(args, 0), "data.num_frames=1"]
    if args.segmenter_sigmoid is None:
        args.segmenter_sigmoid = str(cached_stage(tmp / "seg", PRESET, "segmenter", None, segmenter, 1))
    if args.segmenter_softmax is None:
        args.segmenter_softmax = str(cached_stage(tmp / "seg_softmax", PRESET, "segmenter", None,
                                                  [*segmenter, *SOFTMAX], 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", help="YouTube-VIS-format training split (JPEGImages/, instances.json)")
    p.add_argument("--eval", help="YouTube-VIS-format validation split (JPEGImages/, instances.json)")
    p.add_argument("--segmenter-softmax", help="softmax segmenter checkpoint (MinVIS, DVIS++)")
    p.add_argument("--segmenter-sigmoid", help="sigmoid segmenter checkpoint (Local2Global)")
    p.add_argument("--out")
    p.add_argument("--iters", type=int, default=300, help="video-training iterations of every model")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--workers", type=int, default=0, help="data loader workers per training")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every training")
    p.add_argument("--smoke", action="store_true", help="one seed, 1 iteration at 64 px (tests that it runs)")
    args = p.parse_args()
    if not args.smoke and None in (args.train, args.eval, args.segmenter_softmax, args.segmenter_sigmoid, args.out):
        p.error("give --train, --eval, --segmenter-softmax, --segmenter-sigmoid and --out (or --smoke)")
    if args.smoke:
        args.seeds, args.iters, args.overrides = [0], 1, [*SMOKE_SIZES, *args.overrides]

    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            smoke_inputs(args, Path(tmp))
        results = {name: {seed: run_model(args, seed, name) for seed in args.seeds} for name in args.models}
    table, summary = mean_std_table(results, ["AP", "AP50", "id_switches", "matched"])
    print("\n".join(table))
    print(json.dumps({"seeds": args.seeds, "iters": args.iters, "runs": results, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
