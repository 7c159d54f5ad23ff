"""A re-id-head segmenter stage under 2-process DDP (gloo, CPU): every parameter gets a gradient (issue 17:
the untrained re-id head made DDP fail with "Expected to have finished reduction in the prior iteration")."""

from __future__ import annotations

import json

import torch
import torch.multiprocessing as mp
from ddp import free_port, set_rank_env

from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.training.run import train

TINY = [
    "model.pixel_decoder.hidden_dim=32", "model.pixel_decoder.mask_dim=32", "model.pixel_decoder.ffn_dim=64",
    "model.pixel_decoder.num_layers=1", "model.decoder.hidden_dim=32", "model.decoder.ffn_dim=64",
    "model.decoder.num_queries=8", "model.decoder.num_layers=2", "loss.num_points=256", "data.min_size=[64]",
    "data.max_size=96", "data.num_workers=0", "data.num_frames=2", "optim.batch_size=2", "optim.max_iters=2",
    "model.reid_head=true",
]



def _worker(rank, world, port, root, out_dir):
    set_rank_env(rank, world, port)
    roots = [f"data.train_root={root}", f"data.val_root={root}"]
    train("mask2former/synthetic_tiny", "segmenter", out_dir, overrides=TINY + roots, device="cpu",
          checkpoint_every=100)
    torch.distributed.destroy_process_group()


def test_reid_segmenter_stage_runs_two_iterations_under_two_process_ddp(tmp_path):
    write_synthetic_dataset(tmp_path / "synth", 2, 4, 64, 96, formats=("vipseg",), seed=3)
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, free_port(), tmp_path / "synth" / "vipseg", out), nprocs=2, join=True)
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss_reid" in r]
    assert steps and all(torch.isfinite(torch.tensor(r["loss_reid"])) for r in steps)
