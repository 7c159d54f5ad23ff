"""Checkpoints that never execute code when loaded.

A checkpoint is a directory, written under a temporary name and renamed into place (atomic on POSIX):

    model.safetensors    weights (safetensors), metadata: stage, iteration, vidseg version
    config.json          the ExperimentConfig
    trainer_state.pt     optimizer, scaler, RNG states, data position (the lr schedule is a function of the iteration)
                         (tensors and plain containers only: read with torch.load(weights_only=True))
    manifest.json        stage, iteration, and the sha256 of every file above

Loading verifies the manifest hashes first, so a truncated or tampered file is a `CheckpointError` that
names it. A pickle that carries code is refused by `weights_only=True`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vidseg import __version__
from vidseg.config import ExperimentConfig, from_dict, to_dict
from vidseg.errors import CheckpointError, ConfigError

STAGES = ("segmenter", "tracker", "refiner", "l2g", "video_mask2former")
_FILES = ("model.safetensors", "config.json", "trainer_state.pt")


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: the checkpoint directory.
        stage: one of `STAGES`.
        iteration: training iterations done when it was written.
        config: the experiment config it was trained with.
        state_dict: model weights.
        trainer_state: optimizer/scaler/RNG/data state, or None if not loaded.
    """

    path: Path
    stage: str
    iteration: int
    config: ExperimentConfig
    state_dict: dict[str, torch.Tensor]
    trainer_state: dict[str, Any] | None = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    path: str | Path,
    model_state: dict[str, torch.Tensor],
    config: ExperimentConfig,
    stage: str,
    iteration: int,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (temp dir + rename); returns its path."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    # safetensors refuses tensors that share memory; a contiguous copy of each is always safe to store.
    weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in model_state.items()}
    meta = {"stage": stage, "iteration": str(iteration), "vidseg_version": __version__}
    save_file(weights, str(tmp / "model.safetensors"), metadata=meta)
    (tmp / "config.json").write_text(json.dumps(to_dict(config), indent=1))
    torch.save(trainer_state or {}, tmp / "trainer_state.pt")
    manifest = {
        "stage": stage,
        "iteration": iteration,
        "vidseg_version": __version__,
        "sha256": {name: _sha256(tmp / name) for name in _FILES},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for f in tmp.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    if path.exists():
        old = path.with_name(path.name + ".old")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)
    return path


def load_checkpoint(
    path: str | Path,
    expected_stage: str | tuple[str, ...] | None = None,
    with_trainer_state: bool = False,
) -> Checkpoint:
    """Load and verify a checkpoint directory (or its `model.safetensors`).

    Raises:
        CheckpointError: missing/corrupt/tampered file, unsafe pickle, or a stage other than expected.
    """
    path = Path(path)
    if path.is_file() and path.name == "model.safetensors":
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        stage, iteration, hashes = manifest["stage"], int(manifest["iteration"]), manifest["sha256"]
    except FileNotFoundError:
        raise CheckpointError(f"{manifest_path}: missing (not a vidseg checkpoint?)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{manifest_path}: corrupt manifest ({e})") from None
    if expected_stage is not None:
        allowed = (expected_stage,) if isinstance(expected_stage, str) else expected_stage
        if stage not in allowed:
            raise CheckpointError(
                f"{path}: checkpoint is from stage {stage!r}, expected {' or '.join(map(repr, allowed))}"
            )
    needed = ["model.safetensors", "config.json"] + (["trainer_state.pt"] if with_trainer_state else [])
    for name in needed:
        file = path / name
        if not file.exists():
            raise CheckpointError(f"{file}: missing")
        if _sha256(file) != hashes.get(name):
            raise CheckpointError(f"{file}: contents do not match manifest.json (corrupt or modified)")
    try:
        state_dict = load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path / 'model.safetensors'}: cannot read weights ({e})") from None
    try:
        config = from_dict(ExperimentConfig, json.loads((path / "config.json").read_text()),
                           source=str(path / "config.json"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path / 'config.json'}: invalid JSON ({e})") from None
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    trainer_state = None
    if with_trainer_state:
        try:
            trainer_state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            reason = str(e).splitlines()[0]
            raise CheckpointError(f"{path / 'trainer_state.pt'}: refused to load ({reason})") from None
    return Checkpoint(path, stage, iteration, config, state_dict, trainer_state)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint `ckpt_<iteration>` in a run directory, or None."""
    found = []
    for p in Path(run_dir).glob("ckpt_*"):
        if p.is_dir() and p.name[5:].isdigit() and (p / "manifest.json").exists():
            found.append((int(p.name[5:]), p))
    return max(found)[1] if found else None


def load_weights(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """`module.load_state_dict(strict=True)`, with missing/unexpected/mis-shaped keys as a one-line error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with the wrong shape (e.g. {k}: {tuple(state_dict[k].shape)} in the file, "
                f"{tuple(own[k].shape)} in the model)"
            )
        raise CheckpointError(f"{source}: model.safetensors: weights do not fit the model: " + "; ".join(parts))
    module.load_state_dict(state_dict)


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
