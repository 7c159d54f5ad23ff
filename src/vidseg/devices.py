"""Device names given by users (`--device`, `device=`): checked up front, errors as one line."""

from __future__ import annotations

import torch

from vidseg.errors import ConfigError


def resolve_device(device: torch.device | str | None) -> torch.device:
    """`device` as a `torch.device`; None picks CUDA when available, else the CPU.

    Raises `ConfigError` for a name torch does not know (`tpu`) or a CUDA device this machine does not
    have (a CPU-only torch build, no GPU visible, `cuda:3` on a one-GPU machine), instead of the
    RuntimeError / AssertionError that torch raises when the model is first moved there.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {str(device)!r}: unknown; expected cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(device)!r}: CUDA is not available (CPU-only torch build or no GPU "
                              "visible); use cpu")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"device {str(device)!r}: this machine has {count} CUDA device(s)")
    elif resolved.type != "cpu":
        raise ConfigError(f"device {str(device)!r}: not supported; expected cpu, cuda or cuda:N")
    return resolved
