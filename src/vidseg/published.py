"""Published checkpoints -> vidseg checkpoint directories (`vidseg convert-weights`).

    convert_weights("dvis_plus", "DVIS_Plus_Online_R50_VIPSeg.pth", "models/dvis_vipseg", dataset="vipseg")

Sources: `detectron2` (Mask2Former model-zoo `.pkl`, MinVIS), `dvis_plus` (DVIS++ `.pth`, online, offline or
segmenter only) and `hf` (a saved `transformers` Mask2Former directory). The result is an ordinary checkpoint
directory (stage `segmenter`, `tracker` or `refiner`) that `vidseg segment --weights`,
`VideoPredictor.from_checkpoint` and `vidseg train --init` take as they are. The model config is read off
the tensors; `dataset` names the class vocabulary (names, thing flags, category ids) and sets the official
test-time settings of that dataset (test size, MAX_NUM). Everything is checked before anything is written.

A Video Mask2Former checkpoint (Mask2Former's `mask2former_video/`, e.g. `model_final_34112b.pkl`) has exactly
the keys of an image Mask2Former, so the tensors cannot tell them apart: `model="video_mask2former"` says
it (`vidseg convert-weights --from detectron2 ... --model video_mask2former`), and the result is a
`video_mask2former` checkpoint whose decoder attends over whole clips (`vidseg.models.video_mask2former`).
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
# Models whose checkpoints have the image Mask2Former's keys and must be named (`model=`).
MODELS: tuple[str, ...] = ("video_mask2former",)

# Official test-time settings per dataset (DVIS++ / Mask2Former configs): task, MIN_SIZE_TEST,
# MAX_SIZE_TEST, and MAX_NUM (video) or the instance top-k (images).
OFFICIAL_TEST_SETTINGS: dict[str, InferenceConfig] = {
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
# Video Mask2Former's official test settings (`mask2former_video`): MIN_SIZE_TEST 360 / MAX 1333 in the
# YouTube-VIS configs, and 10 results per video hard-coded in `inference_video` whatever the dataset. The
# project ships no OVIS config; the OVIS test size stays the one above.
_VIDEO_M2F_MIN_SIZE = {"ytvis19": 360, "ytvis21": 360}
_VIDEO_M2F_TOPK = 10


def read_published(
    source: str, path: str | Path, model: str | None = None
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """(model config, vidseg state dict) of a published checkpoint; nothing is written.

    The state dict is for a bare `Segmenter` when the config's method is "segmenter", else for a whole
    `VideoSegmentationModel`. `model` names a model the tensors cannot tell (`MODELS`).
    """
    path = Path(path)
    if model is not None and model not in MODELS:
        raise ConfigError(f"--model: unknown {model!r}; expected one of {', '.join(MODELS)}")
    config, state = _read_published(source, path)
    if model is None:
        return config, state
    if config.method != "segmenter" or config.reid_head:
        raise CheckpointError(f"{path}: --model {model} takes a Mask2Former-layout checkpoint; this one is "
                              f"{'DVIS++ / CTVIS (re-id head)' if config.reid_head else config.method}")
    return replace(config, method=model), {"segmenter." + k: v for k, v in state.items()}  # type: ignore[arg-type]


def _read_published(source: str, path: Path) -> tuple[ModelConfig, dict[str, Tensor]]:
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
    inference = OFFICIAL_TEST_SETTINGS.get(dataset, InferenceConfig())
    if model.method == "video_mask2former":
        min_size = _VIDEO_M2F_MIN_SIZE.get(dataset, inference.min_size)
        inference = replace(inference, task="vis", test_topk=_VIDEO_M2F_TOPK, min_size=min_size)
    if model.method != "segmenter":
        # DVIS++'s inference_video_vps counts class k as a thing when k < number of thing classes.
        inference = replace(inference, thing_rule="first")
    return replace(config, data=DataConfig(vocabulary=dataset), inference=inference)


def convert_weights(
    source: str, src: str | Path, out: str | Path, dataset: str | None = None, model: str | None = None
) -> Path:
    """Import a published checkpoint into the checkpoint directory `out`; returns `out`.

    `model="video_mask2former"` imports a Video Mask2Former checkpoint (same keys as Mask2Former's).

    Raises:
        CheckpointError / ConfigError: unreadable or unsafe file, wrong `source`, weights that do not fit
            the model they describe, a class count that differs from `dataset`'s, or an existing `out`
            that is not a checkpoint; nothing is written then.
    """
    from vidseg.data.classes import dataset_classes
    from vidseg.io.checkpoint import load_weights, save_checkpoint
    from vidseg.models.methods import METHODS
    from vidseg.models.model import build_model

    out = Path(out)
    if out.exists() and not (out.is_dir() and (out / "manifest.json").is_file()):
        raise CheckpointError(f"{out}: exists and is not a vidseg checkpoint; choose a new --out")
    model_config, state = read_published(source, src, model)
    config = experiment_config(model_config, dataset, str(src))
    built = build_model(model_config)
    method = METHODS[model_config.method]
    target = built.segmenter if method.bare_segmenter else built
    load_weights(target, state, src)
    classes = dataset_classes(config.data, model_config.num_classes)  # the --dataset vocabulary, if any
    return save_checkpoint(out, state, config, method.stage, iteration=0, classes=classes)
