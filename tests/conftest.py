"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests run on 2-core machines next to DataLoader workers and subprocesses; intra-op threads that spin
# while another process holds the other core make small ops up to 100x slower.
torch.set_num_threads(1)


def _shared_data_dir() -> Path | None:
    env = os.environ.get("VIDSEG_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (real DAVIS sequences and videos), or skip where a checkout has none beside it."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is not beside this checkout (set VIDSEG_SHARED_DATA)")
    return path
