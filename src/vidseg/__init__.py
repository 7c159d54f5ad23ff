"""vidseg: universal video segmentation (Mask2Former, DVIS++ with MVC/OMA, Local2Global).

Public API (imported on first use, so `import vidseg` and `vidseg --version` stay fast):

* `VideoPredictor`: stream a video through a trained model (`VideoPredictor.from_checkpoint(path)`).
* `build_model(config)`: a `VideoSegmentationModel` for an `ExperimentConfig` / `ModelConfig`.
* `load_model(path)`: a checkpoint of any stage as a ready model; `load_checkpoint(path)`: its raw contents.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "VideoPredictor": "vidseg.inference.predictor",
    "build_model": "vidseg.models.model",
    "load_model": "vidseg.models.model",
    "load_checkpoint": "vidseg.io.checkpoint",
}

__all__ = ["VideoPredictor", "__version__", "build_model", "load_checkpoint", "load_model"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidseg' has no attribute {name!r}")
