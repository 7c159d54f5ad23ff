"""Real run B: YouTube-VIS AP and DAVIS J&F of a checkpoint on the DAVIS-2016 train or val split.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/davis_run_b.py runs/davis_b/ckpt_0001100 --split val
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/davis_run_b.py src/vidseg/assets/demo_model --split val
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/davis_run_b.py --untrained mask2former/davis_effnet_lite0
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/davis_run_b.py --smoke      # tiny, for the tests

Prints JSON. The split (sequence names) comes from the checkpoint's config (`data.val_annotations` /
`data.train_annotations`, see `vidseg.data.build`), the data from `--data` or the config's root (run from
the repository root: the preset's roots are relative to it).

Protocol:

* Inference is the product's: `VideoPredictor` (online: MinVIS association of a `segmenter` checkpoint or
  the DVIS++ tracker, classes = each slot's logits averaged over the frames so far, `inference.test_topk`
  results per frame; `--mode offline`: the DVIS++ refiner over windows of the video),
  frames read from `JPEGImages/<sequence>/`, resized as `inference.min_size`/`max_size` say.
* YouTube-VIS AP: the official-parity evaluator on the split written as YouTube-VIS ground truth (one
  category, `object`, one track per sequence); a result track's score is its mean per-frame score.
* DAVIS J&F (DAVIS-2016: one foreground mask per frame): the foreground of a frame is the mask of the
  video's single best track (highest track score, "top1"); "union" is reported too: the union of every
  track scoring >= 0.5 (falls back to top1 when none does). Scored with `vidseg.evaluation.davis` as the
  DAVIS toolkit does (first and last frame excluded, F tolerance 0.008 of the diagonal).
* `J_best_track` (per sequence, and `davis_best_track_J` their mean): J of the track that fits the ground
  truth best, i.e. top1 with a perfect choice of track: the most the masks and tracks allow, whatever the
  scores say.
* `--untrained CONFIG`: the same architecture with its ImageNet backbone and seeded random heads.
* `--smoke`: without `--data`, two 6-frame synthetic sequences (64x96, `vidseg.data.synthetic`) written in
  the DAVIS-2016 layout (the foreground: every object of the frame); without a checkpoint, `--untrained`
  `mask2former/synthetic_tiny` as a class-agnostic VIS model at 64 px.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidseg.config import ExperimentConfig, apply_overrides, load_preset_or_file
from vidseg.data.annotations import VideoAnnotation
from vidseg.data.build import davis_sequences
from vidseg.data.formats.davis import read_davis, write_davis_sequence
from vidseg.data.formats.ytvis import ytvis_json
from vidseg.data.synthetic import generate_video, video_seed
from vidseg.evaluation.davis import DavisEvaluator, DavisSequence, region_similarity
from vidseg.evaluation.ytvis import YtvisEvaluator, parse_ytvis_gt
from vidseg.inference.predictor import VideoPredictor
from vidseg.models.model import build_model
from vidseg.structures import Track, VideoResult, decode_rle

UNION_THRESHOLD = 0.5
YTVIS_KEYS = ("AP", "AP50", "AP75", "AR1", "AR10")
SMOKE_CONFIG = "mask2former/synthetic_tiny"
# --smoke: run B's task (one class, VIS results) on the tiny model, at the synthetic frames' size.
SMOKE = ["model.num_classes=1", "inference.task=vis", "inference.min_size=64", "inference.max_size=96"]


@dataclass
class SequencePrediction:
    """Tracks of one sequence and the inference time."""

    tracks: list[Track]
    seconds: float


def predict_sequence(predictor: VideoPredictor, video: VideoAnnotation) -> SequencePrediction:
    """Run the predictor over a sequence's frame files; results grouped into tracks."""
    start = time.perf_counter()
    result = VideoResult(video.video_id)
    for frame_result in predictor.run(video.load_frame(t) for t in range(len(video))):
        result.add(frame_result)
    return SequencePrediction(result.tracks(), time.perf_counter() - start)


def foreground(tracks: list[Track], t: int, height: int, width: int, mode: str) -> np.ndarray:
    """[H, W] bool DAVIS-2016 foreground of frame t: the best track ("top1") or the confident union."""
    if not tracks:
        return np.zeros((height, width), bool)
    best = max(tracks, key=lambda tr: tr.score)
    chosen = [best] if mode == "top1" else [tr for tr in tracks if tr.score >= UNION_THRESHOLD] or [best]
    out = np.zeros((height, width), bool)
    for tr in chosen:
        seg = tr.segmentations[t]
        if seg is not None:
            out |= decode_rle(seg)
    return out


def best_track_j(tracks: list[Track], gt: list[np.ndarray]) -> float:
    """J (mean over the frames but the first and last, as `DavisSequence`) of the track closest to `gt`
    ([H, W] bool per frame); 0 without tracks."""
    best = 0.0
    for tr in tracks:
        j = [region_similarity(g, np.zeros_like(g) if seg is None else decode_rle(seg).astype(bool))
             for g, seg in zip(gt, tr.segmentations)]
        best = max(best, float(np.mean(j[1:-1])))
    return best


def evaluate(predictor: VideoPredictor, videos: list[VideoAnnotation], gt_json: dict) -> dict:
    """YouTube-VIS AP, DAVIS J&F (top1 and union) and the best track's J of the predictor on `videos`."""
    ytvis = YtvisEvaluator(parse_ytvis_gt(gt_json, "<davis split>"))
    davis = {mode: DavisEvaluator() for mode in ("top1", "union")}
    frames, seconds, per_sequence = 0, 0.0, {}
    for video in videos:
        pred = predict_sequence(predictor, video)
        frames, seconds = frames + len(video), seconds + pred.seconds
        entries = [
            {"video_id": video.video_id, "category_id": 1, "score": tr.score, "segmentations": tr.segmentations}
            for tr in pred.tracks
        ]
        if entries:
            ytvis.add_video(video.video_id, entries)
        gt = [video.instances[0].mask(t, video.height, video.width).astype(bool) for t in range(len(video))]
        row = {"frames": len(video)}
        for mode, ev in davis.items():
            seq = DavisSequence(video.name, 1)
            for t in range(len(video)):
                seq.add_frame(gt[t].astype(np.uint8),
                              foreground(pred.tracks, t, video.height, video.width, mode).astype(np.uint8))
            scores = seq.finish()
            ev.add(scores)
            row[f"J_{mode}"], row[f"F_{mode}"] = scores[0].J[0], scores[0].F[0]
        row["best_track_score"] = max((tr.score for tr in pred.tracks), default=0.0)
        row["J_best_track"] = best_track_j(pred.tracks, gt)
        per_sequence[video.name] = row
    ap = ytvis.summarize()
    report: dict = {"ytvis": {k: float(getattr(ap, k)) for k in YTVIS_KEYS}}
    for mode, ev in davis.items():
        m = ev.summarize()
        report[f"davis_{mode}"] = {"J_mean": m.J_mean, "F_mean": m.F_mean, "JF_mean": m.JF_mean,
                                   "J_recall": m.J_recall, "F_recall": m.F_recall}
    report["davis_best_track_J"] = float(np.mean([row["J_best_track"] for row in per_sequence.values()]))
    report["per_sequence"] = per_sequence
    report["frames"] = frames
    report["seconds"] = round(seconds, 2)
    report["fps"] = round(frames / seconds, 3) if seconds else 0.0
    return report


def write_smoke_davis(root: Path) -> str:
    """Two short synthetic sequences in the DAVIS-2016 layout under `root`; returns their names, comma-separated."""
    names = []
    for i in range(2):
        video = generate_video(video_seed(0, i), 6, 64, 96)
        foreground: list[np.ndarray | None] = [np.asarray(m.any(axis=0), np.uint8) for m in video.instance_masks]
        names.append(f"synthetic_{i}")
        write_davis_sequence(root, names[-1], video.frames, foreground)
    return ",".join(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="checkpoint directory (any stage)")
    parser.add_argument("--untrained", metavar="CONFIG", help="evaluate CONFIG's architecture untrained instead")
    parser.add_argument("--split", choices=["val", "train"], default="val")
    parser.add_argument("--data", help="DAVIS root (default: the config's data root of the split)")
    parser.add_argument("--sequences", help="comma-separated sequences instead of the config's split")
    parser.add_argument("--mode", choices=["online", "offline"],
                        help="offline: the DVIS++ refiner over the video (refiner checkpoints: their default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override in the --untrained config")
    parser.add_argument("--smoke", action="store_true",
                        help="synthetic sequences and a tiny untrained model where not given (tests that it runs)")
    args = parser.parse_args()
    if args.smoke and args.checkpoint is None:
        args.untrained = args.untrained or SMOKE_CONFIG
        args.overrides = [*SMOKE, *args.overrides]
    if (args.checkpoint is None) == (args.untrained is None):
        parser.error("give a checkpoint or --untrained CONFIG")
    if args.untrained:
        config: ExperimentConfig = apply_overrides(load_preset_or_file(args.untrained), args.overrides)
        torch.manual_seed(config.seed)
        predictor = VideoPredictor(build_model(config), config, device="cpu", mode=args.mode)
        what = {"untrained": args.untrained}
        if args.overrides:
            what["set"] = args.overrides
    else:
        predictor = VideoPredictor.from_checkpoint(args.checkpoint, device="cpu", mode=args.mode)
        config = predictor.config
        what = {"checkpoint": args.checkpoint, "stage": predictor.stage}
    what["mode"] = predictor.mode
    data = config.data
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke and args.data is None:
            args.data, args.sequences = tmp, write_smoke_davis(Path(tmp))
        root = args.data or (data.val_root if args.split == "val" else data.train_root)
        field = f"data.{args.split}_annotations"
        names = davis_sequences(args.sequences or getattr(data, f"{args.split}_annotations"), root, field)
        dataset = read_davis(root, names)
        report = {**what, "split": args.split, "sequences": [v.name for v in dataset.videos]}
        report.update(evaluate(predictor, dataset.videos, ytvis_json(dataset, rle="compressed")))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
