"""Clip loading throughput: 5-frame clips at 360x640 from the synthetic benchmark with DataLoader workers.

Generates a small synthetic YouTube-VIS dataset in a temporary folder, then times a DataLoader over
`ClipDataset` (random sampling, short-side resize to 360 with the long side capped at 640, flip) and prints
one JSON object with clips/s. Usage: python benchmarks/data_throughput.py [--workers 2] [--clips 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vidseg.data.clips import ClipDataset, collate_clips
from vidseg.data.formats.ytvis import read_ytvis
from vidseg.data.sources import InstanceSource
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.data.transforms import ClipAugment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clips", type=int, default=64, help="clips to time (after one warm-up batch)")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--task", default="instance", choices=["instance", "panoptic", "semantic"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (tests that the script runs)")
    args = parser.parse_args()
    if args.smoke:
        args.workers, args.clips, args.frames, args.batch_size = 0, 2, 2, 1
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_synthetic_dataset(tmp, num_videos=8, num_frames=20, height=360, width=640, formats=["ytvis"], seed=0)
        gen_s = time.perf_counter() - t0
        source = InstanceSource(read_ytvis(Path(tmp) / "ytvis" / "train" / "instances.json"))
        ds = ClipDataset(source, args.frames, args.task, sampling="random", sampling_range=5,
                         augment=ClipAugment(min_sizes=(360,), max_size=640, flip_prob=0.5), seed=0)
        sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=args.clips + args.batch_size,
                                                 generator=torch.Generator().manual_seed(0))
        loader = DataLoader(ds, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                            collate_fn=collate_clips, persistent_workers=False)
        it = iter(loader)
        next(it)  # warm-up: worker start and first batch are not throughput
        t0 = time.perf_counter()
        n = 0
        shape = None
        for batch in it:
            n += batch.frames.shape[0]
            shape = list(batch.frames.shape)
        elapsed = time.perf_counter() - t0
    print(json.dumps({
        "benchmark": "data_throughput",
        "clips_per_s": round(n / elapsed, 2),
        "frames_per_s": round(n * args.frames / elapsed, 1),
        "clips": n,
        "clip_frames": args.frames,
        "batch_shape": shape,
        "workers": args.workers,
        "task": args.task,
        "dataset_generation_s": round(gen_s, 2),
    }))


if __name__ == "__main__":
    main()
