"""Checkpoint helpers only training needs: the newest checkpoint of a run (resume) and lenient loading
(`--init` with `optim.init_skip_mismatched`). The format itself is `vidseg.io.checkpoint`."""

from __future__ import annotations

from pathlib import Path

import torch

from vidseg.errors import CheckpointError


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint `ckpt_<iteration>` in a run directory, or None."""
    found = []
    for p in Path(run_dir).glob("ckpt_*"):
        if p.is_dir() and p.name[5:].isdigit() and (p / "manifest.json").exists():
            found.append((int(p.name[5:]), p))
    return max(found)[1] if found else None


def load_weights_skipping(
    module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path
) -> list[str]:
    """Load the tensors of `state_dict` that fit `module`; those whose shape differs or that the file lacks
    keep the module's values. Returns their names (sorted).

    Raises:
        CheckpointError: the file has tensors the module does not (another architecture, not a re-shaped head).
    """
    own = module.state_dict()
    unexpected = sorted(set(state_dict) - set(own))
    if unexpected:
        raise CheckpointError(
            f"{source}: model.safetensors: {len(unexpected)} tensors the model does not have (e.g. {unexpected[0]})"
        )
    skipped = sorted(k for k in own if k not in state_dict or own[k].shape != state_dict[k].shape)
    module.load_state_dict({**own, **{k: v for k, v in state_dict.items() if k not in skipped}})
    return skipped
