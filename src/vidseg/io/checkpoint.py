"""The checkpoint format: directories that never execute code when loaded (read by models, written by training).

A checkpoint is a directory, written under a temporary name and renamed into place (atomic on POSIX):

    model.safetensors    weights (safetensors), metadata: stage, iteration, vidseg version
    config.json          the ExperimentConfig
    trainer_state.pt     optimizer, scaler, RNG states, data position (the lr schedule is a function of the iteration)
                         (tensors and plain containers only: read with torch.load(weights_only=True))
    manifest.json        stage, iteration, the model's classes (names, thing flags, dataset category ids; absent
                         in checkpoints of older versions), and the sha256 of every file above

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
from vidseg.types import ClassInfo

_FILES = ("model.safetensors", "config.json", "trainer_state.pt")


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: the checkpoint directory.
        stage: the training stage that wrote it (`vidseg.models.methods.STAGE_NAMES`).
        iteration: training iterations done when it was written.
        config: the experiment config it was trained with.
        state_dict: model weights.
        trainer_state: optimizer/scaler/RNG/data state, or None if not loaded.
        classes: the model's classes, None when the checkpoint does not say (written before they were stored,
            or with a dataset unknown at training).
    """

    path: Path
    stage: str
    iteration: int
    config: ExperimentConfig
    state_dict: dict[str, torch.Tensor]
    trainer_state: dict[str, Any] | None = None
    classes: ClassInfo | None = None


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
    classes: ClassInfo | None = None,
) -> Path:
    """Write a checkpoint directory atomically (temp dir + rename); returns its path. `classes` (the model's
    class names, thing flags and dataset ids) are stored for the predictor."""
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
    if classes is not None:
        manifest["classes"] = classes.to_json()
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
    return Checkpoint(path, stage, iteration, config, state_dict, trainer_state, _classes(manifest, manifest_path))


def read_classes(path: str | Path) -> ClassInfo | None:
    """The classes stored with a checkpoint (its manifest alone is read); None when it stores none."""
    path = Path(path)
    manifest_path = (path.parent if path.is_file() else path) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{manifest_path}: cannot read ({e})") from None
    return _classes(manifest, manifest_path)


def _classes(manifest: dict[str, Any], manifest_path: Path) -> ClassInfo | None:
    if manifest.get("classes") is None:
        return None
    try:
        return ClassInfo.from_json(manifest["classes"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{manifest_path}: corrupt classes ({e})") from None


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
