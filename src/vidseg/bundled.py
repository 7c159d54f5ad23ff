"""What the package ships besides code: the demo model and clip (`vidseg/assets`, licences in `LICENSES.md`).

A low-level module (paths only), so that the predictor can find the bundled model without importing the
demo that runs it.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
DEMO_MODEL = ASSETS / "demo_model"
DEMO_CLIP = ASSETS / "demo_clip.mp4"


def default_weights() -> Path | None:
    """The checkpoint `vidseg segment` uses without `--weights`: the bundled DINOv2-S DVIS++ model (None if absent)."""
    return DEMO_MODEL if (DEMO_MODEL / "manifest.json").is_file() else None
