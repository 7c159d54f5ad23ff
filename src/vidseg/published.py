"""Published checkpoints -> vidseg checkpoint directories (`vidseg convert-weights`).

    convert_weights("dvis_plus", "DVIS_Plus_Online_R50_VIPSeg.pth", "models/dvis_vipseg", dataset="vipseg")

Sources: `detectron2` (Mask2Former model-zoo `.pkl`, MinVIS), `dvis_plus` (DVIS++ `.pth`, online, offline or
segmenter only) and `hf` (a saved `transformers` Mask2Former directory). The result is an ordinary checkpoint
directory (stage `segmenter`, `tracker` or `refiner`) that `vidseg segment --weights`,
`VideoPredictor.from_checkpoint` and `vidseg train --init` take as they are. The model config is read off
the tensors; `dataset` names the class vocabulary (names, thing flags, category ids) and sets the official
test-time settings of that dataset (test size, MAX_NUM). Everything is checked before anything is written.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

from torch import Tensor

from vidseg.config import DataConfig, ExperimentConfig, InferenceConfig, ModelConfig
from vidseg.errors import CheckpointError, ConfigError

Source = Literal["detectron2", "dvis_plus", "hf"]
SOURCES: tuple[str, ...] = ("detectron2", "dvis_plus", "hf")

# Official test-time settings per dataset (DVIS++ / Mask2Former configs): task, MIN_SIZE_TEST,
# MAX_SIZE_TEST, and MAX_NUM (video) or the instance top-k (images).
_DATASET_INFERENCE: dict[str, InferenceConfig] = {
    "coco_panoptic": InferenceConfig(task="panoptic", min_size=800, max_size=1333, test_topk=100),
    "coco_instance": InferenceConfig(task="instance", min_size=800, max_size=1333, test_topk=100),
    "ade20k": InferenceConfig(task="semantic", min_size=512, max_size=2048, test_topk=100),
    "cityscapes": InferenceConfig(task="semantic", min_size=1024, max_size=2048, test_topk=100),
    "ytvis19": InferenceConfig(task="vis", min_size=480, max_size=1333, test_topk=10),
    "ytvis21": InferenceConfig(task="vis", min_size=480, max_size=1333, test_topk=10),
    "ovis": InferenceConfig(task="vis", min_size=720, max_size=1333, test_topk=20),
    "vipseg": InferenceConfig(task="vps", min_size=720, max_size=1333, test_topk=20),
    "vspw": InferenceConfig(task="vss", min_size=480, max_size=1333, test_topk=20),
}
_STAGE_OF_METHOD = {"segmenter": "segmenter", "dvis_online": "tracker", "dvis_offline": "refiner"}


def read_published(source: str, path: str | Path) -> tuple[ModelConfig, dict[str, Tensor]]:
    """(model config, vidseg state dict) of a published checkpoint; nothing is written.

    The state dict is for a bare `Segmenter` when the config's method is "segmenter", else for a whole
    `VideoSegmentationModel`.
    """
    path = Path(path)
    if source == "hf":
        from vidseg.models.convert import read_hf_checkpoint

        return read_hf_checkpoint(path)
    if source not in SOURCES:
        raise ConfigError(f"--from: unknown {source!r}; expected one of {', '.join(SOURCES)}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; --from {source} reads one checkpoint file")
    from vidseg.models.official import (
        is_dvis,
        model_config_from_official,
        official_to_vidseg,
        read_official_file,
    )

    official = read_official_file(path)
    if source == "detectron2" and is_dvis(official):
        raise CheckpointError(f"{path}: a DVIS++ checkpoint (tracker.* keys); use --from dvis_plus")
    config = model_config_from_official(official, str(path))
    return config, official_to_vidseg(official, str(path))


def experiment_config(model: ModelConfig, dataset: str | None, name: str) -> ExperimentConfig:
    """The config stored with an imported model: its classes and the dataset's official test settings."""
    config = ExperimentConfig(name=name, model=model)
    if dataset is None:
        return config
    from vidseg.data.catalog import vocabulary

    vocab = vocabulary(dataset)
    if len(vocab.names) != model.num_classes:
        raise CheckpointError(f"{name}: the checkpoint has {model.num_classes} classes, --dataset {dataset} "
                              f"has {len(vocab.names)}")
    inference = _DATASET_INFERENCE.get(dataset, InferenceConfig())
    if model.method != "segmenter":
        # DVIS++'s inference_video_vps counts class k as a thing when k < number of thing classes.
        inference = replace(inference, thing_rule="first")
    return replace(config, data=DataConfig(vocabulary=dataset), inference=inference)


def convert_weights(source: str, src: str | Path, out: str | Path, dataset: str | None = None) -> Path:
    """Import a published checkpoint into the checkpoint directory `out`; returns `out`.

    Raises:
        CheckpointError / ConfigError: unreadable or unsafe file, wrong `source`, weights that do not fit
            the model they describe, a class count that differs from `dataset`'s, or an existing `out`
            that is not a checkpoint; nothing is written then.
    """
    from vidseg.models.model import build_model
    from vidseg.training.checkpoint import load_weights, save_checkpoint

    out = Path(out)
    if out.exists() and not (out.is_dir() and (out / "manifest.json").is_file()):
        raise CheckpointError(f"{out}: exists and is not a vidseg checkpoint; choose a new --out")
    model_config, state = read_published(source, src)
    config = experiment_config(model_config, dataset, str(src))
    model = build_model(model_config)
    target = model.segmenter if model_config.method == "segmenter" else model
    load_weights(target, state, src)
    return save_checkpoint(out, state, config, _STAGE_OF_METHOD[model_config.method], iteration=0)
