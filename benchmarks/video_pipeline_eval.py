"""Run A: score trained video models on the synthetic benchmark, every task and mode, in one table.

Each model (a checkpoint of any stage) is streamed through `VideoPredictor` over the validation videos of a
synthetic set written in all three formats (`vidseg data synth --formats vipseg,ytvis,vspw`), the
predictions are written in the official formats and scored by the `vidseg eval` code:

* VIS AP (YouTube-VIS format; a panoptic model is scored on its thing classes) and identity switches of
  the slots against the GT instance tracks,
* VPQ and STQ (VIPSeg format) and identity switches of the thing tracks against the GT tracks,
* mIoU, mVC8 and mVC16 (VSPW format; mVC_k needs videos longer than k frames).

    vidseg data synth --out /work/synth_eval --videos 30 --frames 24 --size 240x320 \\
        --formats vipseg,ytvis,vspw --seed 0
    python benchmarks/video_pipeline_eval.py --data /work/synth_eval --out /work/runs/eval_a \\
        --model minvis=/work/runs/seg_tiny/ckpt_0001500 --model dvis_online=/work/runs/trk_tiny/ckpt_0001000 \\
        --model dvis_offline=/work/runs/ref_tiny/ckpt_0000400
    python benchmarks/video_pipeline_eval.py --smoke          # tiny set and models, for the tests

`name=CKPT` runs online (and offline too when the checkpoint has a refiner); `name:online=CKPT` forces a mode.
Tasks a model cannot run (e.g. VPS for a Local2Global model trained on instances only) are left out.
The submissions stay in `--out/<name>/<task>` for `vidseg eval --task ... --pred ...`. Each row is printed as
JSON when scored, then the markdown table, then JSON with every row. `--smoke` generates what it is not
given in a temporary folder: a 4-video set at 64x96 (1 scored) and, as models, the tiny synthetic chain
(`mask2former/synthetic_tiny` -> `dvis_plus/synthetic_tiny_{tracker,refiner}`) trained 1 iteration a stage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _runs import SMOKE_SIZES, cached_stage

from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.inference.dataset_eval import evaluate_vis, evaluate_vps, evaluate_vss
from vidseg.inference.predictor import VideoPredictor
from vidseg.models.model import load_model

# --smoke: the tiny chain trained and scored on 64 px frames.
CHAIN = [("segmenter", "mask2former/synthetic_tiny"), ("tracker", "dvis_plus/synthetic_tiny_tracker"),
         ("refiner", "dvis_plus/synthetic_tiny_refiner")]


def _nan_to_none(x: float) -> float | None:
    return None if x != x else x


def score(name: str, ckpt: str, mode: str, data: Path, out: Path, vis_only: bool = False) -> dict[str, object]:
    row: dict[str, object] = {"model": name, "mode": mode, "checkpoint": ckpt}
    loaded = load_model(ckpt)
    row["stage"] = loaded.stage

    def predictor(task: str) -> VideoPredictor:
        return VideoPredictor(loaded.model, loaded.config, task=task, mode=mode, device="cpu")

    vis = evaluate_vis(predictor("vis"), data / "ytvis" / "val" / "instances.json", out / "vis.zip")
    row["AP"] = 100 * vis.metrics.AP
    row["vis_id_switches"] = vis.id_switches.switches
    row["vis_matched_object_frames"] = vis.id_switches.matched
    if loaded.config.model.num_classes > 4 and not vis_only:  # trained on things and stuff (panoptic)
        vps = evaluate_vps(predictor("vps"), data / "vipseg" / "panoptic_gt_VIPSeg_val.json", out / "vps")
        row.update(VPQ=vps.metrics.vpq.VPQ, STQ=100 * vps.metrics.stq.STQ, id_switches=vps.id_switches.switches,
                   matched_object_frames=vps.id_switches.matched, object_frames=vps.id_switches.objects)
        vss = evaluate_vss(predictor("vss"), data / "vspw", "val", out / "vss")
        row.update(mIoU=100 * vss.metrics.mIoU, mVC8=_nan_to_none(100 * vss.metrics.mVC8),
                   mVC16=_nan_to_none(100 * vss.metrics.mVC16))
    return row


def smoke_models(data: Path, out: Path) -> list[str]:
    """The tiny chain trained 1 iteration a stage on `data`'s VIPSeg format: MinVIS (the segmenter) and
    DVIS++ (the refiner, online and offline)."""
    ckpts: dict[str, Path] = {}
    init = None  # each stage starts from the previous one
    for stage, preset in CHAIN:
        init = ckpts[stage] = cached_stage(out / stage, preset, stage, init,
                                           [*SMOKE_SIZES, f"data.train_root={data / 'vipseg'}"], 1)
    return [f"minvis={ckpts['segmenter']}", f"dvis={ckpts['refiner']}"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, help="synthetic set with vipseg, ytvis and vspw formats")
    p.add_argument("--out", type=Path)
    p.add_argument("--model", action="append", metavar="NAME[:MODE]=CKPT")
    p.add_argument("--vis-only", action="store_true", help="score VIS only (the Local2Global comparison)")
    p.add_argument("--smoke", action="store_true", help="tiny set and models where not given (tests that it runs)")
    args = p.parse_args()
    if not args.smoke and None in (args.data, args.out, args.model):
        p.error("give --data, --out and --model (or --smoke)")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:  # 17 frames: mVC16 needs more than 16
            write_synthetic_dataset(tmp, 4, 17, 64, 96, formats=("vipseg", "ytvis", "vspw"), seed=0)
            args.data = Path(tmp)
        args.out = args.out or Path(tmp) / "out"
        args.model = args.model or smoke_models(args.data, Path(tmp) / "runs")
        for spec in args.model:
            name, ckpt = spec.split("=", 1)
            modes = [name.split(":")[1]] if ":" in name else None
            name = name.split(":")[0]
            if modes is None:
                modes = ["online", "offline"] if load_model(ckpt).model.is_offline else ["online"]
            for mode in modes:
                rows.append(score(name, ckpt, mode, args.data, args.out / f"{name}_{mode}", args.vis_only))
                print(json.dumps(rows[-1]), flush=True)
    cols = ["AP", "vis_id_switches", "VPQ", "STQ", "mIoU", "mVC8", "mVC16", "id_switches"]
    print("| model | mode | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for r in rows:
        cells = ["—" if r.get(c) is None else (f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c])) for c in cols]
        print(f"| {r['model']} | {r['mode']} | " + " | ".join(cells) + " |")
    print(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
