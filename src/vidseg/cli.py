"""The `vidseg` command line: parse, call the library, print.

Every subcommand is registered by an `_add_<name>` function below and runs through a `_run_<name>`
handler. User errors (`VidsegError`) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from vidseg import __version__
from vidseg.errors import VidsegError

Handler = Callable[[argparse.Namespace], int]


# --- demo -------------------------------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment a short real clip with the bundled model and write an overlay mp4")
    p.add_argument("--source", help="video file, frame folder or image (default: the bundled clip)")
    p.add_argument("--weights", help="checkpoint directory (default: the bundled run-B model)")
    p.add_argument("--out", default="vidseg_demo", help="output folder (default: ./vidseg_demo)")
    p.add_argument("--frames", type=int, default=None, help="segment at most this many frames (default: all)")
    p.add_argument("--min-score", type=float, default=0.5, help="draw tracks scoring at least this (default 0.5)")
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from vidseg.demo import run_demo
    from vidseg.errors import ConfigError

    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    summary = run_demo(source=args.source, out_dir=args.out, weights=args.weights, max_frames=args.frames,
                       min_score=args.min_score, log=print)
    print(f"overlay written to {summary.overlay}")
    return 0


# --- config ---------------------------------------------------------------------------------------------


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="list presets or print a resolved config")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    csub.add_parser("list", help="list the bundled presets").set_defaults(handler=_run_config_list)
    show = csub.add_parser("show", help="print a preset or YAML file as YAML, after --set overrides")
    show.add_argument("config", help="preset name (see `vidseg config list`) or YAML path")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    show.set_defaults(handler=_run_config_show)


def _run_config_list(args: argparse.Namespace) -> int:
    from vidseg.config import preset_names

    print("\n".join(preset_names()))
    return 0


def _run_config_show(args: argparse.Namespace) -> int:
    from vidseg.config import apply_overrides, dump_yaml, load_preset_or_file

    config = apply_overrides(load_preset_or_file(args.config), args.overrides)
    print(dump_yaml(config), end="")
    return 0


# --- data -------------------------------------------------------------------------------------------------


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate, validate and convert datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    s = dsub.add_parser("synth", help="write the synthetic benchmark in YTVIS / VIPSeg / VSPW formats")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--videos", type=int, default=8, help="number of videos (the last quarter is val)")
    s.add_argument("--frames", type=int, default=24, help="frames per video")
    s.add_argument("--size", default="240x320", help="frame size HxW (default 240x320)")
    s.add_argument("--formats", default="ytvis,vipseg,vspw", help="comma-separated: ytvis,vipseg,vspw")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(handler=_run_data_synth)

    v = dsub.add_parser("validate", help="read a whole dataset, print counts and every problem")
    v.add_argument("path", help="dataset folder (or annotation JSON)")
    v.add_argument("--format", required=True, choices=["ytvis", "vipseg", "vspw", "davis"])
    v.add_argument("--skip-bad", action="store_true", help="skip bad videos/annotations instead of failing")
    v.set_defaults(handler=_run_data_validate)

    c = dsub.add_parser("convert", help="your frames/videos + mask PNGs -> YouTube-VIS JSON")
    c.add_argument("--frames", required=True, help="folder of <video>/ frame folders or <video>.mp4 files")
    c.add_argument("--masks", required=True, help="folder of <video>/<frame>.png index masks")
    c.add_argument("--out", required=True, help="output folder (instances.json + JPEGImages/)")
    c.add_argument("--classes", help='JSON file {"<video>": {"<object index>": "<class name>"}}')
    c.add_argument("--all-frames", action="store_true", help="keep frames without a mask too")
    c.set_defaults(handler=_run_data_convert)


def _parse_size(text: str) -> tuple[int, int]:
    from vidseg.errors import ConfigError

    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must be HxW (e.g. 240x320), got {text!r}") from None
    if h < 16 or w < 16:
        raise ConfigError(f"--size must be at least 16x16, got {text!r}")
    return h, w


def _run_data_synth(args: argparse.Namespace) -> int:
    from vidseg.data.synthetic import FORMATS, write_synthetic_dataset
    from vidseg.errors import ConfigError

    h, w = _parse_size(args.size)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--formats: unknown {bad or formats}; choose from {','.join(FORMATS)}")
    if args.videos < 1 or args.frames < 1:
        raise ConfigError("--videos and --frames must be ≥ 1")
    roots = write_synthetic_dataset(args.out, args.videos, args.frames, h, w, formats, args.seed)
    for fmt, root in roots.items():
        print(f"{fmt}: {root}")
    return 0


def _run_data_validate(args: argparse.Namespace) -> int:
    from vidseg.data.validate import validate_dataset

    report = validate_dataset(args.path, args.format, skip_bad=args.skip_bad)
    print(report.summary())
    return 0 if report.usable else 1


def _run_data_convert(args: argparse.Namespace) -> int:
    from vidseg.data.convert import convert_to_ytvis
    from vidseg.data.formats.jsonio import load_json
    from vidseg.errors import DataFormatError

    classes = None
    if args.classes:
        raw = load_json(args.classes)
        try:
            classes = {str(v): {int(k): str(n) for k, n in per.items()} for v, per in raw.items()}
        except (AttributeError, ValueError) as e:
            raise DataFormatError(args.classes, f"expected {{video: {{object index: class}}}} ({e})") from e
    path = convert_to_ytvis(args.frames, args.masks, args.out, classes, all_frames=args.all_frames)
    print(f"wrote {path}")
    return 0


# --- convert-weights --------------------------------------------------------------------------------------


def _add_convert_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-weights", help="import a Mask2Former checkpoint from another library")
    p.add_argument("--from", dest="source_format", choices=["hf"], required=True,
                   help="hf: a saved transformers Mask2FormerForUniversalSegmentation directory")
    p.add_argument("src", help="checkpoint directory (config.json + model.safetensors or pytorch_model.bin)")
    p.add_argument("--out", required=True, help="output .safetensors (its config goes beside it as .json)")
    p.set_defaults(handler=_run_convert_weights)


def _run_convert_weights(args: argparse.Namespace) -> int:
    from vidseg.models.convert import convert_hf_checkpoint

    path, cfg = convert_hf_checkpoint(args.src, args.out)
    print(f"wrote {path} ({cfg.backbone.name}, {cfg.num_classes} classes) and {path.with_suffix('.json')}")
    return 0


# --- train ----------------------------------------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a stage (single process, or every rank under torchrun)")
    p.add_argument("config", help="preset name (see `vidseg config list`) or YAML path")
    p.add_argument("--stage", choices=["segmenter", "tracker", "refiner", "l2g"], default="segmenter",
                   help="what to train: segmenter -> tracker -> refiner (DVIS++), or l2g (Local2Global)")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="checkpoint of the previous stage to start from (tracker: a segmenter checkpoint, "
                        "refiner: a tracker checkpoint; optional for segmenter and l2g)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, log.jsonl)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from vidseg.training.run import train

    summary = train(args.config, args.stage, args.out, overrides=args.overrides, resume=args.resume,
                    device=args.device, checkpoint_every=args.checkpoint_every, init=args.init)
    state = "interrupted at" if summary.interrupted else "finished"
    print(f"{state} iteration {summary.iteration}; checkpoint: {summary.last_checkpoint}")
    return 0


# --- eval -------------------------------------------------------------------------------------------------


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="official-parity metrics of predictions against ground truth")
    p.add_argument("--task", required=True, choices=["vis", "ovis", "vps", "vss", "pq", "davis"],
                   help="vis/ovis: YouTube-VIS/OVIS AP; vps: VIPSeg VPQ+STQ; vss: VSPW mIoU+mVC; "
                        "pq: COCO panoptic PQ; davis: DAVIS J&F")
    p.add_argument("--gt", required=True, help="GT json (vis, ovis, pq) or dataset folder (vps, vss, davis)")
    p.add_argument("--pred", required=True,
                   help="results.json or submission zip (vis, ovis), submission folder (vps, vss, davis), "
                        "prediction json (pq)")
    p.add_argument("--out", help="write the metrics as JSON (full precision) to this file")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPUs)")
    p.add_argument("--vspw-labels", choices=["raw", "remapped"], default="raw",
                   help="VSPW GT PNG labels: raw as shipped (0 others, 1..124, 255) or already remapped (0..123)")
    p.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from vidseg.evaluation.report import evaluate_task, format_table, write_metrics

    metrics = evaluate_task(args.task, args.gt, args.pred, workers=args.workers,
                            vspw_raw_labels=args.vspw_labels == "raw")
    print(format_table(metrics))
    if args.out:
        write_metrics(metrics, args.out)
        print(f"metrics written to {args.out}")
    return 0


# --- segment ----------------------------------------------------------------------------------------------


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment a video with a checkpoint: overlay mp4 + prediction files")
    p.add_argument("source", metavar="SOURCE", help="video file, frame folder or image")
    p.add_argument("--weights", help="checkpoint directory of any stage (required until vidseg bundles a model)")
    p.add_argument("--task", choices=["vis", "vps", "vss"], help="default: the checkpoint's inference.task")
    p.add_argument("--mode", choices=["online", "offline"],
                   help="offline runs the DVIS++ refiner (refiner checkpoints; their default)")
    p.add_argument("--window", type=int, default=30, help="offline: frames per refiner window (default 30)")
    p.add_argument("--overlap", type=int, default=None,
                   help="offline: context frames on each side of a window (default window // 6)")
    p.add_argument("--out", default="vidseg_segment", help="output folder (default: ./vidseg_segment)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="CUDA autocast")
    p.add_argument("--on-error", choices=["skip", "stop"], default="skip",
                   help="unreadable frames: skip and report them (default) or stop")
    p.add_argument("--min-score", type=float, default=0.5,
                   help="overlay only: objects scoring below are not drawn (default 0.5; files keep all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_segment)


def _run_segment(args: argparse.Namespace) -> int:
    from vidseg.errors import ConfigError
    from vidseg.inference.predictor import VideoPredictor, default_weights
    from vidseg.inference.segment import segment_video
    from vidseg.io.video import open_video

    weights = args.weights or default_weights()
    if weights is None:
        raise ConfigError("--weights is required: vidseg bundles no trained model")
    video = open_video(args.source)  # a bad source fails before the model is loaded
    predictor = VideoPredictor.from_checkpoint(
        weights, task=args.task, mode=args.mode, window=args.window, overlap=args.overlap, device=args.device,
        amp=args.amp,
    )
    summary = segment_video(predictor, video, args.out, on_error=args.on_error, progress=not args.no_progress,
                            min_score=args.min_score)
    state = "interrupted after" if summary.interrupted else "segmented"
    skipped = f", {len(summary.skipped_frames)} unreadable frames skipped" if summary.skipped_frames else ""
    print(f"{state} {summary.frames} frames ({summary.fps:.2f} frames/s, {summary.task}, {summary.mode}){skipped}; "
          f"outputs in {args.out}")
    return 130 if summary.interrupted else 0


# --- entry point ------------------------------------------------------------------------------------------

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_config,
    _add_data,
    _add_train,
    _add_convert_weights,
    _add_eval,
    _add_segment,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidseg", description="Universal video segmentation: VIS, VPS, VSS and image tasks."
    )
    parser.add_argument("--version", action="version", version=f"vidseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except VidsegError as e:
        print(f"vidseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vidseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
