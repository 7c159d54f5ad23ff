"""Per-frame tensors kept on disk, so whole-video results need memory for one frame, not for the video.

The official video models choose their results only once the video has ended (class logits averaged over
every frame, one refiner pass over all frames), so every frame's mask logits (or mask features) are needed
at the end. `SpillFile` appends one fixed-shape float32 array per frame to a temporary file and reads any
frame back; the file is deleted on `close()`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


class SpillFile:
    """Append-only float32 frames of one shape on disk, read back by index.

    Args:
        directory: where the temporary file goes (default: the system temp folder).
    """

    def __init__(self, directory: str | Path | None = None):
        self._file = tempfile.NamedTemporaryFile(prefix="vidseg-", suffix=".f32", dir=directory)  # noqa: SIM115
        self._shape: tuple[int, ...] | None = None
        self._count = 0

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Shape of one frame (None before the first `append`)."""
        return self._shape

    def __len__(self) -> int:
        return self._count

    def append(self, frame: Tensor) -> None:
        """Store one frame (any float tensor; kept as float32)."""
        array = frame.detach().to("cpu", torch.float32).contiguous().numpy()
        if self._shape is None:
            self._shape = array.shape
        elif array.shape != self._shape:
            raise ValueError(f"SpillFile: frame of shape {array.shape}, earlier frames {self._shape}")
        self._file.write(array.tobytes())
        self._count += 1

    def __getitem__(self, index: int) -> Tensor:
        """Frame `index` as a float32 tensor (a copy)."""
        if not 0 <= index < self._count:
            raise IndexError(f"frame {index} of {self._count}")
        assert self._shape is not None
        self._file.flush()
        # pread, not a memory map: pages of a mapped file stay in the process's resident memory once read,
        # which would make reading a whole video grow with its length.
        size = int(np.prod(self._shape)) * 4
        data = os.pread(self._file.fileno(), size, index * size)
        return torch.from_numpy(np.frombuffer(data, dtype=np.float32).reshape(self._shape).copy())

    def close(self) -> None:
        self._file.close()
