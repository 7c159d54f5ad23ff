"""Overlays of segmentation results on frames, written as mp4 and/or PNG frames.

Each track keeps one colour for the whole video (derived from its id, not from its position in a
frame), masks are alpha-blended with a solid contour, and a label with the class name and score sits at
the top-left corner of the object's box so a still frame reads on its own.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidseg.io.video import VideoWriter
from vidseg.structures import FrameResult, decode_rle

_GOLDEN = 0.618033988749895


def track_color(track_id: int) -> tuple[int, int, int]:
    """A saturated RGB colour for a track id; neighbouring ids get well-separated hues."""
    hue = (track_id * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def class_color(class_id: int) -> tuple[int, int, int]:
    """A muted RGB colour for a stuff/semantic class (distinct from the bright track colours)."""
    hue = (class_id * _GOLDEN + 0.31) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.45, 0.75)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def _boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of `mask` within `width` px of its border (binary erosion by a square, in numpy)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask & ~inner


def draw_frame(
    frame: np.ndarray,
    result: FrameResult,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.5,
    contours: bool = True,
    show_scores: bool = True,
) -> np.ndarray:
    """Overlay of `result` on `frame`.

    Args:
        frame: [H, W, 3] uint8 RGB; the result's masks are resized (nearest) if their size differs.
        result: objects (masks with track ids), and optionally a semantic map.
        class_names: name of each class index, for the labels.
        alpha: opacity of the mask fill.
        contours: draw a solid outline around each object.
        show_scores: append the score to each label.

    Returns:
        [H, W, 3] uint8 RGB.
    """
    h, w = frame.shape[:2]
    out = frame.astype(np.float32)
    if result.semantic is not None:
        sem = _fit(result.semantic, h, w)
        labelled = sem >= 0
        classes, index = np.unique(sem[labelled], return_inverse=True)
        colors = np.array([class_color(int(c)) for c in classes], np.int64).reshape(-1, 3)
        out[labelled] = (1 - alpha * 0.6) * out[labelled] + alpha * 0.6 * colors[index]
    labels: list[tuple[int, int, str, tuple[int, int, int]]] = []
    line = max(1, round(min(h, w) / 240))
    for rle, tid, cid, score in zip(result.masks, result.track_ids, result.class_ids, result.scores):
        mask = _fit(decode_rle(rle), h, w)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not rows.size:
            continue
        # Work on the object's box, grown by the contour width so the erosion sees the same neighbours.
        y0, x0 = max(0, rows[0] - line), max(0, cols[0] - line)
        y1, x1 = min(h, rows[-1] + 1 + line), min(w, cols[-1] + 1 + line)
        inside, part = mask[y0:y1, x0:x1], out[y0:y1, x0:x1]
        rgb = track_color(int(tid))
        color = np.array(rgb, np.float32)
        part[inside] = (1 - alpha) * part[inside] + alpha * color
        if contours:
            part[_boundary(inside, line)] = color
        name = class_names[int(cid)] if class_names is not None and 0 <= cid < len(class_names) else f"class {cid}"
        text = f"#{int(tid)} {name}" + (f" {float(score):.2f}" if show_scores else "")
        labels.append((int(cols[0]), int(rows[0]), text, rgb))
    image = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    if labels:
        draw = ImageDraw.Draw(image)
        font = _font(max(10, round(min(h, w) / 28)))
        for x, y, text, rgb in labels:
            left, top, right, bottom = draw.textbbox((x, y), text, font=font)
            # Keep the label inside the frame so objects at the top edge stay labelled.
            dy = min(0, h - bottom) - min(0, top - 2)
            dx = min(0, w - right)
            box = (left + dx - 2, top + dy - 2, right + dx + 2, bottom + dy + 2)
            draw.rectangle(box, fill=rgb)
            draw.text((x + dx, y + dy), text, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def _fit(array: np.ndarray, h: int, w: int) -> np.ndarray:
    if array.shape == (h, w):
        return array
    mode = "L" if array.dtype == bool else "I"
    image = Image.fromarray(array.astype(np.uint8 if array.dtype == bool else np.int32), mode=mode)
    return np.asarray(image.resize((w, h), Image.Resampling.NEAREST)).astype(array.dtype)


class OverlayWriter:
    """Draws results on frames and writes them to `out_dir` as `overlay.mp4` and/or `frames/NNNNNN.png`.

    A context manager: on exit (also through Ctrl-C) the mp4 is finalised with every frame written.
    """

    def __init__(
        self,
        out_dir: str | Path,
        fps: float | None = 30.0,
        class_names: Sequence[str] | None = None,
        write_mp4: bool = True,
        write_png: bool = False,
        mp4_name: str = "overlay.mp4",
    ):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.class_names = class_names
        self.mp4_path = self.out_dir / mp4_name if write_mp4 else None
        self.png_dir = self.out_dir / "frames" if write_png else None
        if self.png_dir is not None:
            self.png_dir.mkdir(exist_ok=True)
        self._video = VideoWriter(self.mp4_path, fps=fps or 30.0) if self.mp4_path else None
        self.frames_written = 0

    def write(self, frame: np.ndarray, result: FrameResult) -> np.ndarray:
        """Draw and write one frame; returns the drawn [H, W, 3] uint8 image."""
        drawn = draw_frame(frame, result, self.class_names)
        if self._video is not None:
            self._video.write(drawn)
        if self.png_dir is not None:
            Image.fromarray(drawn).save(self.png_dir / f"{self.frames_written:06d}.png")
        self.frames_written += 1
        return drawn

    def close(self) -> None:
        if self._video is not None:
            self._video.close()

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
