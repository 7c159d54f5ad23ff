"""Clip-level augmentation: one set of parameters for every frame of a clip.

Images are resized bilinearly with PIL; masks are resampled by nearest neighbour through the same
output-to-input pixel mapping, so masks and pixels stay aligned. Colour jitter (optional) changes pixels
only, with the same factors on every frame so that an object keeps its appearance through the clip. For
COCO pseudo-videos, `random_affine_path` gives a smooth sequence of affine maps (one per frame) applied the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class AugParams:
    """Parameters drawn once per clip.

    Attributes:
        size: (h, w) after the short-side resize.
        crop: (y0, x0, h, w) window inside the resized image, or None.
        flip: horizontal flip after cropping.
        color: (brightness, contrast, saturation) factors and a hue shift in turns, or None.
    """

    size: tuple[int, int]
    crop: tuple[int, int, int, int] | None
    flip: bool
    color: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class ClipAugment:
    """Short-side resize (random choice of `min_sizes`, long side ≤ `max_size`), random crop, flip, colour.

    Args:
        min_sizes: candidate short sides; empty keeps the original size.
        max_size: cap on the long side after resizing.
        crop_size: (h, w) random crop after resizing (clamped to the image), or None.
        flip_prob: probability of a horizontal flip.
        color_jitter: (brightness, contrast, saturation, hue) strengths as torchvision's `ColorJitter`
            takes them: factors drawn from [1 - s, 1 + s] (clamped at 0) and a hue shift from [-hue, hue]
            turns (hue <= 0.5); None: no colour change.
    """

    min_sizes: tuple[int, ...] = ()
    max_size: int = 10**9
    crop_size: tuple[int, int] | None = None
    flip_prob: float = 0.0
    color_jitter: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        jitter = self.color_jitter
        if jitter is not None and (len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5):
            raise ValueError(
                "color_jitter must be 4 non-negative strengths (brightness, contrast, saturation, hue), "
                f"hue <= 0.5; got {list(jitter)}"
            )

    def sample(self, rng: np.random.Generator, height: int, width: int) -> AugParams:
        size = (height, width)
        if self.min_sizes:
            short = int(self.min_sizes[int(rng.integers(len(self.min_sizes)))])
            scale = short / min(height, width)
            if max(height, width) * scale > self.max_size:
                scale = self.max_size / max(height, width)
            size = (max(1, int(round(height * scale))), max(1, int(round(width * scale))))
        crop = None
        if self.crop_size is not None:
            ch, cw = min(self.crop_size[0], size[0]), min(self.crop_size[1], size[1])
            y0 = int(rng.integers(0, size[0] - ch + 1))
            x0 = int(rng.integers(0, size[1] - cw + 1))
            crop = (y0, x0, ch, cw)
        flip = bool(rng.random() < self.flip_prob)
        color = None
        if self.color_jitter is not None:  # drawn only when on, so clips without jitter keep their draws
            b, c, s, h = self.color_jitter
            factors = [max(0.0, float(rng.uniform(1 - v, 1 + v))) for v in (b, c, s)]
            color = (factors[0], factors[1], factors[2], float(rng.uniform(-h, h)))
        return AugParams(size, crop, flip, color)


def _index_maps(params: AugParams, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Source row [h'] and column [w'] index of every output pixel (nearest neighbour, pixel centres)."""
    oh, ow = params.size
    rows = np.minimum(((np.arange(oh) + 0.5) * height / oh).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(ow) + 0.5) * width / ow).astype(np.int64), width - 1)
    if params.crop is not None:
        y0, x0, ch, cw = params.crop
        rows, cols = rows[y0 : y0 + ch], cols[x0 : x0 + cw]
    if params.flip:
        cols = cols[::-1]
    return rows, cols


def apply_image(image: np.ndarray, params: AugParams) -> np.ndarray:
    """[H, W, 3] uint8 -> [h', w', 3] uint8."""
    h, w = image.shape[:2]
    if params.size != (h, w):
        image = np.asarray(Image.fromarray(image).resize((params.size[1], params.size[0]), Image.Resampling.BILINEAR))
    if params.crop is not None:
        y0, x0, ch, cw = params.crop
        image = image[y0 : y0 + ch, x0 : x0 + cw]
    if params.flip:
        image = image[:, ::-1]
    if params.color is not None:
        image = jitter_color(image, *params.color)
    return np.ascontiguousarray(image)


def _gray(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] float RGB -> [H, W, 1] luma (ITU-R 601, as PIL's "L")."""
    return (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]


def jitter_color(image: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float) -> np.ndarray:
    """[H, W, 3] uint8 -> [H, W, 3] uint8: brightness, contrast and saturation factors (1 keeps the image),
    then a hue rotation by `hue` turns (0 keeps it). Each step clips to [0, 255], as torchvision does."""
    out = image.astype(np.float32)
    if brightness != 1.0:
        out = np.clip(out * brightness, 0, 255)
    if contrast != 1.0:
        mean = float(_gray(out).mean())
        out = np.clip(mean + (out - mean) * contrast, 0, 255)
    if saturation != 1.0:
        gray = _gray(out)
        out = np.clip(gray + (out - gray) * saturation, 0, 255)
    out = np.round(out).astype(np.uint8)
    if hue != 0.0:
        hsv = np.array(Image.fromarray(out).convert("HSV"))
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + round(hue * 256)) % 256
        out = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
    return out


def apply_masks(masks: np.ndarray, params: AugParams) -> np.ndarray:
    """[..., H, W] (bool or labels) -> [..., h', w'] by nearest neighbour."""
    if params.size == masks.shape[-2:] and params.crop is None:  # no resampling needed
        return np.ascontiguousarray(masks[..., ::-1]) if params.flip else masks
    rows, cols = _index_maps(params, masks.shape[-2], masks.shape[-1])
    return masks[..., rows[:, None], cols[None, :]]


# --------------------------------------------------------------------------------------------------------
# Pseudo-video motion


def random_affine_path(
    rng: np.random.Generator,
    num_frames: int,
    height: int,
    width: int,
    max_rotation: float = 10.0,
    scale_range: tuple[float, float] = (0.85, 1.15),
    max_translation: float = 0.1,
) -> list[np.ndarray]:
    """[T] 2x3 affine maps (output pixel -> input pixel) moving smoothly from one random pose to another.

    The maps are about the image centre: rotation in degrees, isotropic scale, translation as a fraction
    of the image size; a small per-frame jitter keeps the motion from being perfectly linear.
    """

    def pose() -> np.ndarray:
        return np.array([
            rng.uniform(-max_rotation, max_rotation),
            rng.uniform(*scale_range),
            rng.uniform(-max_translation, max_translation) * width,
            rng.uniform(-max_translation, max_translation) * height,
        ])

    a, b = pose(), pose()
    cx, cy = width / 2, height / 2
    maps = []
    for t in range(num_frames):
        f = t / max(num_frames - 1, 1)
        rot, scale, tx, ty = a + (b - a) * f + rng.normal(0, [0.3, 0.005, 0.3, 0.3])
        th = math.radians(rot)
        # forward: p' = s R (p - c) + c + t ; inverse maps output p' back to input p
        c, s = math.cos(th) / scale, math.sin(th) / scale
        inv = np.array([[c, s, 0.0], [-s, c, 0.0]])
        ox, oy = cx + tx, cy + ty
        inv[0, 2] = cx - (c * ox + s * oy)
        inv[1, 2] = cy - (-s * ox + c * oy)
        maps.append(inv)
    return maps


def warp_image(image: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 warped by an output->input 2x3 map (bilinear, zeros outside)."""
    h, w = image.shape[:2]
    # PIL samples at pixel centres with the same coefficients convention (x_in = a x + b y + c)
    im = Image.fromarray(image).transform(
        (w, h), Image.Transform.AFFINE, tuple(inverse.ravel()), Image.Resampling.BILINEAR
    )
    return np.asarray(im)


def warp_masks(masks: np.ndarray, inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[M, H, W] masks warped by nearest neighbour; also [H, W] bool pixels that map outside the image."""
    h, w = masks.shape[-2:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    src_x = inverse[0, 0] * (xs + 0.5) + inverse[0, 1] * (ys + 0.5) + inverse[0, 2]
    src_y = inverse[1, 0] * (xs + 0.5) + inverse[1, 1] * (ys + 0.5) + inverse[1, 2]
    ix, iy = np.floor(src_x).astype(np.int64), np.floor(src_y).astype(np.int64)
    outside = (ix < 0) | (ix >= w) | (iy < 0) | (iy >= h)
    ix, iy = np.clip(ix, 0, w - 1), np.clip(iy, 0, h - 1)
    out = masks[:, iy, ix]
    out[:, outside] = False
    return out, outside
