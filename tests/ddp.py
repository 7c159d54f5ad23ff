"""Two-process DDP tests on the CPU (gloo): a free port, the environment torchrun would set, and the `torchrun`
command itself for `vidseg train`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_rank_env(rank: int, world: int, port: int) -> None:
    """What torchrun exports for process `rank` of `world`, in a `torch.multiprocessing.spawn` worker."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def torchrun_vidseg(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m vidseg.cli ARGS` (gloo on the CPU, one thread per rank)."""
    script = Path(sys.executable).with_name("torchrun")
    runner = [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]
    command = [*runner, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "vidseg.cli", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr[-8000:]}"
    return proc
