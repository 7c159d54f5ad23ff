"""The `vidseg` command line: parse, call the library, print.

Every subcommand is registered by an `_add_<name>` function below and runs through a `_run_<name>`
handler. User errors (`VidsegError`) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from vidseg import __version__
from vidseg.errors import VidsegError
from vidseg.types import EVAL_TASKS, SUBMISSION_TASK, VIDEO_TASKS

if TYPE_CHECKING:  # the CLI imports its commands' modules lazily, to start fast
    from vidseg.config import ExperimentConfig

Handler = Callable[[argparse.Namespace], int]


# --- checks shared by the handlers ------------------------------------------------------------------------
# They run before the torch-heavy modules are imported (4-40 s), so a typo fails in a fraction of a second.


def _require_path(path: str | None, flag: str) -> None:
    """A missing input file or folder, reported before anything slow happens."""
    from vidseg.errors import DataFormatError

    if path is not None and not os.path.exists(path):
        raise DataFormatError(path, "no such file or directory", field=flag)


def _default_threads() -> int:
    """Half the CPUs, at most 4: the frame-by-frame models are small, and on a shared or busy machine
    more intra-op threads than free cores spin against each other (2 threads on 2 shared cores ran a clip
    at 0.5-1.4 frames/s, 1 thread at 2.1-3.3 frames/s; README "Command line")."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for the model (default: half the CPUs, at most 4)")


def _set_threads(threads: int | None) -> None:
    from vidseg.errors import ConfigError

    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads or _default_threads())


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="--out holds an earlier run's outputs: delete them first (other files are never deleted)")


# --- demo -------------------------------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment a short real clip with the bundled model and write an overlay mp4")
    p.add_argument("--source", help="video file, frame folder or image (default: the bundled clip)")
    p.add_argument("--weights", help="checkpoint directory (default: the bundled DINOv2-S DVIS++ model)")
    p.add_argument("--out", default="vidseg_demo", help="output folder (default: ./vidseg_demo)")
    p.add_argument("--frames", type=int, default=None, help="segment at most this many frames (default: all)")
    p.add_argument("--min-score", type=float, default=0.5, help="draw tracks scoring at least this (default 0.5)")
    _add_threads(p)
    _add_overwrite(p)
    p.set_defaults(handler=_run_demo)


# The demo writes one file: a rerun replaces it and leaves nothing stale, so it may reuse its folder.
_DEMO_OUTPUTS = frozenset({"overlay.mp4"})


def _run_demo(args: argparse.Namespace) -> int:
    from vidseg.errors import ConfigError
    from vidseg.io.outdir import check_out_dir

    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    _require_path(args.source, "--source")
    _require_path(args.weights, "--weights")
    check_out_dir(args.out, overwrite=args.overwrite, reusable=_DEMO_OUTPUTS)
    _set_threads(args.threads)
    from vidseg.demo import run_demo

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
    _add_overwrite(s)
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
    from vidseg.io.outdir import check_out_dir, clean_out_dir

    h, w = _parse_size(args.size)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--formats: unknown {bad or formats}; choose from {','.join(FORMATS)}")
    if args.videos < 1 or args.frames < 1:
        raise ConfigError("--videos and --frames must be ≥ 1")
    # An earlier run's format folders and synthetic.json are its own; a rerun with fewer videos or other
    # formats would leave stale ones.
    owned = lambda out: {*FORMATS, "synthetic.json"}  # noqa: E731
    check_out_dir(args.out, overwrite=args.overwrite, owned=owned)
    clean_out_dir(args.out, owned=owned)
    roots = write_synthetic_dataset(args.out, args.videos, args.frames, h, w, formats, args.seed)
    for fmt, root in roots.items():
        print(f"{fmt}: {root}")
    return 0


def _run_data_validate(args: argparse.Namespace) -> int:
    from vidseg.errors import DataFormatError

    _require_path(args.path, "path")
    from vidseg.data.validate import validate_dataset

    report = validate_dataset(args.path, args.format, skip_bad=args.skip_bad)
    print(report.summary())
    if not report.usable:  # the problems are listed above, on stdout; the error line says where to look
        raise DataFormatError(args.path, f"dataset not usable ({len(report.problems)} problem(s), listed above)")
    return 0


def _run_data_convert(args: argparse.Namespace) -> int:
    from vidseg.data.convert import convert_to_ytvis
    from vidseg.errors import DataFormatError
    from vidseg.io.jsonio import load_json

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
    p = sub.add_parser("convert-weights", help="import a published Mask2Former / MinVIS / DVIS++ checkpoint")
    p.add_argument("--from", dest="source_format", choices=["detectron2", "dvis_plus", "hf"], required=True,
                   help="detectron2: a Mask2Former / MinVIS model-zoo .pkl; dvis_plus: a DVIS++ .pth (online, "
                        "offline or segmenter only); hf: a saved transformers Mask2Former directory")
    p.add_argument("src", help="checkpoint file (.pkl / .pth) or, for hf, directory")
    p.add_argument("--dataset", default=None,
                   help="class vocabulary and official test settings: coco_panoptic, coco_instance, ade20k, "
                        "cityscapes, ytvis19, ytvis21, ovis, vipseg, vspw (default: generic class names)")
    p.add_argument("--model", default=None, choices=["video_mask2former"],
                   help="a model the tensors cannot tell: video_mask2former = a Video Mask2Former checkpoint "
                        "(the image Mask2Former's keys; its decoder attends over whole clips)")
    p.add_argument("--out", required=True, help="output vidseg checkpoint directory")
    p.set_defaults(handler=_run_convert_weights)


def _run_convert_weights(args: argparse.Namespace) -> int:
    from vidseg.published import convert_weights

    path = convert_weights(args.source_format, args.src, args.out, dataset=args.dataset, model=args.model)
    print(f"wrote {path}")
    return 0


# --- train ----------------------------------------------------------------------------------------------


class _StageNames:
    """The `--stage` choices, read from the method registry only when a value is checked or the choices are
    listed: the registry imports torch, which building the parser must not (see the checks above)."""

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    @staticmethod
    def _names() -> tuple[str, ...]:
        from vidseg.models.methods import STAGE_NAMES

        return STAGE_NAMES


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a stage (single process, or every rank under torchrun)")
    p.add_argument("config", help="preset name (see `vidseg config list`) or YAML path")
    p.add_argument("--stage", choices=_StageNames(), default="segmenter", metavar="STAGE",
                   help="what to train, one of %(choices)s: segmenter -> tracker -> refiner (DVIS++), l2g "
                        "(Local2Global), or video_mask2former (clip-level; --init a segmenter checkpoint, e.g. "
                        "COCO Mask2Former)")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="checkpoint of the previous stage to start from (tracker: a segmenter checkpoint, "
                        "refiner: a tracker checkpoint; optional for segmenter and l2g)")
    p.add_argument("--init-skip-mismatched", action="store_true",
                   help="with --init: re-initialise tensors whose shape differs (class head of another K) or "
                        "that the checkpoint lacks (re-id head), listed in one log line "
                        "(= --set optim.init_skip_mismatched=true)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, log.jsonl)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from vidseg.config import apply_overrides, load_preset_or_file
    from vidseg.io.outdir import check_writable_dir

    # A bad config, --set, --init or --out fails here, before torch and the data are loaded.
    if args.init_skip_mismatched:
        args.overrides.append("optim.init_skip_mismatched=true")
    apply_overrides(load_preset_or_file(args.config), args.overrides)
    _require_path(args.init, "--init")
    check_writable_dir(args.out)  # an existing run folder is fine: --resume continues it
    if args.device is not None:
        from vidseg.devices import resolve_device

        resolve_device(args.device)
    from vidseg.training.run import train

    summary = train(args.config, args.stage, args.out, overrides=args.overrides, resume=args.resume,
                    device=args.device, checkpoint_every=args.checkpoint_every, init=args.init)
    state = "interrupted at" if summary.interrupted else "finished"
    print(f"{state} iteration {summary.iteration}; checkpoint: {summary.last_checkpoint}")
    return 0


# --- eval -------------------------------------------------------------------------------------------------


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="official-parity metrics of predictions against ground truth")
    p.add_argument("--task", required=True,
                   choices=EVAL_TASKS,
                   help="vis/ovis: YouTube-VIS/OVIS AP; vps: VIPSeg VPQ+STQ; vss: VSPW mIoU+mVC; "
                        "pq: COCO panoptic PQ; davis: DAVIS J&F; cvps: Cityscapes-VPS VPQ; "
                        "miou: image mIoU (ADE20K/Cityscapes); coco_ap: COCO mask AP")
    p.add_argument("--gt", required=True,
                   help="GT json (vis, ovis, pq, coco_ap, cvps) or dataset folder (vps, vss, davis, cvps), "
                        "folder of label PNGs (miou)")
    p.add_argument("--pred", required=True,
                   help="results.json or submission zip (vis, ovis), submission folder (vps, vss, davis, cvps), "
                        "prediction json (pq), results json (coco_ap), folder of label PNGs (miou)")
    p.add_argument("--out", help="write the metrics as JSON (full precision) to this file")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPUs)")
    p.add_argument("--vspw-labels", choices=["raw", "remapped"], default="raw",
                   help="VSPW GT PNG labels: raw as shipped (0 others, 1..124, 255) or already remapped (0..123)")
    p.add_argument("--reduce-zero-label", action="store_true",
                   help="miou: GT label 0 is 'other' (ADE20K as released): ignore it and shift the classes down")
    p.set_defaults(handler=_run_eval)


def _check_eval_out(out: str) -> None:
    """Fail before a long evaluation, not after it, when `--out` cannot be written (the file is opened
    for appending, so an existing file is left as it is; one created here is removed again)."""
    from pathlib import Path

    from vidseg.errors import ConfigError

    path = Path(out)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    if not existed:
        path.unlink()


def _run_eval(args: argparse.Namespace) -> int:
    from vidseg.evaluation.report import evaluate_task, format_table, write_metrics

    if args.out:
        _check_eval_out(args.out)
    metrics = evaluate_task(args.task, args.gt, args.pred, workers=args.workers,
                            vspw_raw_labels=args.vspw_labels == "raw", reduce_zero_label=args.reduce_zero_label)
    print(format_table(metrics))
    if args.out:
        write_metrics(metrics, args.out)
        print(f"metrics written to {args.out}")
    return 0


# --- segment ----------------------------------------------------------------------------------------------


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment a video with a checkpoint: overlay mp4 + prediction files")
    p.add_argument("source", metavar="SOURCE", help="video file, frame folder or image")
    p.add_argument("--weights", help="checkpoint directory of any stage (default: the bundled demo model)")
    p.add_argument("--task", choices=VIDEO_TASKS, help="default: the checkpoint's inference.task")
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
    _add_threads(p)
    _add_overwrite(p)
    p.set_defaults(handler=_run_segment)


def _run_segment(args: argparse.Namespace) -> int:
    from vidseg.errors import ConfigError
    from vidseg.io.outdir import check_out_dir, clean_out_dir, recorded_outputs

    _require_path(args.source, "SOURCE")
    _require_path(args.weights, "--weights")
    check_out_dir(args.out, overwrite=args.overwrite, owned=recorded_outputs)
    _set_threads(args.threads)
    from vidseg.bundled import default_weights
    from vidseg.inference.predictor import VideoPredictor
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
    # Only now, with the source and the model good, are the earlier run's outputs deleted (--overwrite).
    clean_out_dir(args.out, owned=recorded_outputs)
    summary = segment_video(predictor, video, args.out, on_error=args.on_error, progress=not args.no_progress,
                            min_score=args.min_score)
    state = "interrupted after" if summary.interrupted else "segmented"
    skipped = f", {len(summary.skipped_frames)} unreadable frames skipped" if summary.skipped_frames else ""
    if summary.ended_early:
        skipped += f", video ended early (its header says {summary.expected_frames} frames)"
    print(f"{state} {summary.frames} frames ({summary.fps:.2f} frames/s, {summary.task}, {summary.mode}){skipped}; "
          f"outputs in {args.out}")
    if not summary.interrupted:
        return 0
    # The shell convention 128 + signal number: 130 for Ctrl-C, 143 for SIGTERM (kill, job schedulers).
    return 128 + (signal.Signals[summary.stop_signal] if summary.stop_signal else signal.SIGINT)


# --- predict ----------------------------------------------------------------------------------------------


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict a dataset split into an evaluable submission (torchrun: sharded)")
    p.add_argument("model", metavar="CONFIG_OR_CKPT",
                   help="checkpoint directory (its config names the dataset), or a preset / YAML with --weights")
    p.add_argument("--weights", default=None, help="checkpoint directory, when CONFIG_OR_CKPT is a config")
    p.add_argument("--split", default="val", help="train, val, or any split with --gt (default val)")
    p.add_argument("--task", choices=list(SUBMISSION_TASK), default=None,
                   help="submission format (default: from the config's data.format)")
    p.add_argument("--gt", default=None,
                   help="GT: YouTube-VIS/OVIS or VIPSeg JSON, VSPW root (default: the config's data paths)")
    p.add_argument("--out", required=True,
                   help="submission folder; videos whose part is in OUT/.parts are skipped (resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides (with a config, e.g. data.val_annotations=...)")
    p.add_argument("--mode", choices=["online", "offline"], help="offline runs the DVIS++ refiner (default)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda:LOCAL_RANK if available)")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="CUDA autocast")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads(p)
    p.set_defaults(handler=_run_predict)


_PREDICT_TASK = {"ytvis": "vis", "ovis": "ovis", "vipseg": "vps", "vspw": "vss"}


def _predict_gt(config: ExperimentConfig, task: str, split: str) -> str:
    """The split's GT from `config.data`: the annotation JSON (vis, ovis, vps) or the VSPW root (vss)."""
    from vidseg.errors import ConfigError

    data = config.data
    root = getattr(data, f"{split}_root", "")
    annotations = getattr(data, f"{split}_annotations", "")
    if task == "vss":
        gt = root
    elif task == "vps" and not annotations and root:
        gt = os.path.join(root, f"panoptic_gt_VIPSeg_{split}.json")
    else:
        gt = annotations
    if not gt:
        raise ConfigError(f"the config names no {split} data for --task {task}; pass --gt")
    return gt


def _run_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidseg.config import apply_overrides, load_preset_or_file
    from vidseg.errors import ConfigError
    from vidseg.io.outdir import check_writable_dir

    is_ckpt = (Path(args.model) / "manifest.json").is_file()
    if is_ckpt and args.weights:
        raise ConfigError("--weights is for a config; CONFIG_OR_CKPT is already a checkpoint")
    if not is_ckpt and not args.weights:
        raise ConfigError(f"{args.model} is no checkpoint directory: pass --weights CKPT with a config")
    weights = args.model if is_ckpt else args.weights
    _require_path(weights, "--weights")
    _require_path(args.gt, "--gt")
    check_writable_dir(args.out)
    if is_ckpt:
        from vidseg.io.checkpoint import load_checkpoint

        config = apply_overrides(load_checkpoint(weights).config, args.overrides)
    else:
        config = apply_overrides(load_preset_or_file(args.model), args.overrides)
    task = args.task or _PREDICT_TASK.get(config.data.format)
    if task is None:
        raise ConfigError(f"data.format {config.data.format!r} has no video submission format; pass --task")
    gt = args.gt or _predict_gt(config, task, args.split)
    _require_path(gt, "--gt")
    _set_threads(args.threads)
    import torch

    from vidseg.inference.predict_split import predict_split, read_split
    from vidseg.inference.predictor import VideoPredictor
    from vidseg.training.engine import init_distributed

    device = args.device
    if device is None and torch.cuda.is_available():
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    rank, world = init_distributed(device or "cpu")
    try:
        split = read_split(task, gt, args.split)
        predictor = VideoPredictor.from_checkpoint(weights, task=split.task, mode=args.mode, device=device,
                                                   amp=args.amp)
        submission = predict_split(predictor, split, args.out, rank=rank, world=world,
                                   progress=not args.no_progress)
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    if submission is not None:
        print(f"wrote {submission} ({len(split.dataset.videos)} videos); score it with:\n"
              f"  vidseg eval --task {task} --gt {gt} --pred {args.out}")
    return 0


# --- entry point ------------------------------------------------------------------------------------------

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_config,
    _add_data,
    _add_train,
    _add_convert_weights,
    _add_eval,
    _add_segment,
    _add_predict,
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
