"""`vidseg.malloc.release_free_memory`: an offline refinement of 2000 frames gives its memory back."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import sys, torch
from vidseg.config import apply_overrides, load_preset_or_file
from vidseg.malloc import release_free_memory
from vidseg.models.dvis import tracker_width
from vidseg.models.model import build_model

torch.set_num_threads(1)
cfg = apply_overrides(load_preset_or_file("mask2former/synthetic_tiny"), [
    "model.method=dvis_offline", "model.decoder.num_queries=8", "model.refiner.num_layers=1",
    "model.refiner.num_heads=2", "model.refiner.ffn_dim=64", "model.tracker.num_layers=1", "model.reid_head=true"])
refiner = build_model(cfg).eval().video.window_refiner
def rss_mb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
width = tracker_width(cfg.model)
with torch.no_grad():
    small = torch.randn(1, 50, 8, width)
    refiner.refine_embeddings(small, small)  # lazy one-off allocations (thread pools, kernels) before `base`
    x = torch.randn(1, 2000, 8, width)
    base = rss_mb()
    for _ in range(2):
        out = refiner.refine_embeddings(x, x.clone())
        del out
    if sys.argv[1] == "trim":
        assert release_free_memory()
print(rss_mb() - base)
"""


def _retained_mb(mode: str) -> float:
    run = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""})
    return float(run.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_returns_freed_refiner_memory():
    # Untrimmed, glibc kept 64-125 MB of the freed activations resident here; trimmed, 2.5 MB.
    assert _retained_mb("trim") < 30
