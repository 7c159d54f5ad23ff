"""The one table of video segmentation methods: how each is built and which training stage produces it.

Everything that names methods or stages derives from `METHODS`: `build_model`, `load_model` (through
`METHOD_OF_STAGE`), the training stages (`vidseg.training.registry`, checked against `STAGE_NAMES`), the
`vidseg train --stage` choices, the converter's stage and the `model.method` choices of the config
(`vidseg.config.ModelMethod`, checked against `METHODS` by the tests). A new method is a module with its
`VideoModel` and builder, plus one line here (and its stage in `vidseg.training.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vidseg.config import ModelConfig, ModelMethod
from vidseg.models.dvis import build_dvis_offline, build_dvis_online
from vidseg.models.local2global import build_local2global
from vidseg.models.minvis import build_minvis
from vidseg.models.video import VideoModel
from vidseg.models.video_mask2former import build_video_mask2former


@dataclass(frozen=True)
class Method:
    """One method.

    Attributes:
        build: the video model on top of the segmenter for a model config (raises `ConfigError` for a config
            the method cannot run, e.g. the wrong class head). The state type differs per method, hence Any.
        stage: the training stage whose checkpoints hold this method's weights.
        restored: checkpoints of `stage` load as this method (exactly one method per stage).
        bare_segmenter: those checkpoints hold the bare segmenter (keys without the `segmenter.` prefix).
    """

    build: Callable[[ModelConfig], VideoModel[Any]]
    stage: str
    restored: bool = True
    bare_segmenter: bool = False


METHODS: dict[ModelMethod, Method] = {
    # The segmenter stage trains a bare Mask2Former; tracked, it is MinVIS, which its checkpoints load as.
    "segmenter": Method(build_minvis, "segmenter", restored=False, bare_segmenter=True),
    "minvis": Method(build_minvis, "segmenter", bare_segmenter=True),
    "dvis_online": Method(build_dvis_online, "tracker"),
    "dvis_offline": Method(build_dvis_offline, "refiner"),
    "l2g": Method(build_local2global, "l2g"),
    "video_mask2former": Method(build_video_mask2former, "video_mask2former"),
}

STAGE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(m.stage for m in METHODS.values()))
"""Every training stage, in training order."""

METHOD_OF_STAGE: dict[str, ModelMethod] = {m.stage: name for name, m in METHODS.items() if m.restored}
"""The method a checkpoint of each stage loads as."""
