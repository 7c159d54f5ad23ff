"""File reading shared by the evaluators: JSON, PNG and worker pools, with errors that name the file.

The evaluators read the official formats themselves (as the official scripts do) so that they do not
depend on the dataset readers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from vidseg.errors import DataFormatError

T = TypeVar("T")
R = TypeVar("R")


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; `DataFormatError` for a missing or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e


def field(obj: Any, key: str, path: str | Path, where: str) -> Any:
    """`obj[key]`, or a `DataFormatError` naming `where.key` when `obj` is not a dict or lacks `key`."""
    if not isinstance(obj, dict):
        raise DataFormatError(path, f"expected an object, got {type(obj).__name__}", field=where)
    if key not in obj:
        raise DataFormatError(path, "missing", field=f"{where}.{key}")
    return obj[key]


def read_png(path: str | Path) -> np.ndarray:
    """Pixel array of a PNG exactly as `np.array(Image.open(path))` gives it ([H, W] or [H, W, C])."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        with Image.open(path) as im:
            return np.array(im)
    except OSError as e:
        raise DataFormatError(path, f"cannot read image: {e}") from e


def read_label_png(path: str | Path) -> np.ndarray:
    """Single-channel label PNG (mode L or P) -> [H, W] array of its values (palette indices for P)."""
    arr = read_png(path)
    if arr.ndim != 2:
        raise DataFormatError(path, f"expected a single-channel label PNG, got shape {arr.shape}")
    return arr


def read_id_png(path: str | Path) -> np.ndarray:
    """RGB panoptic PNG -> [H, W] uint32 ids `R + 256 G + 256^2 B` (COCO panoptic / VIPSeg)."""
    arr = read_png(path)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise DataFormatError(path, f"expected an RGB panoptic PNG, got shape {arr.shape}")
    rgb = arr[..., :3].astype(np.uint32)
    return rgb[..., 0] + rgb[..., 1] * 256 + rgb[..., 2] * 65536


def check_same_size(pred: np.ndarray, gt_shape: tuple[int, ...], path: str | Path) -> None:
    """A prediction must have the size of its ground-truth frame (the official scripts crash otherwise)."""
    if pred.shape[:2] != tuple(gt_shape[:2]):
        raise DataFormatError(
            path,
            f"prediction is {pred.shape[1]}x{pred.shape[0]} (WxH), ground truth is {gt_shape[1]}x{gt_shape[0]}",
        )


def default_workers() -> int:
    """Worker processes for file-based evaluation: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map(fn, items)` in order, on `workers` processes when > 1.

    Results come back in input order, so accumulations that depend on order (float sums, stable sorts)
    are identical to the single-process run. Items should be light (paths, small metadata): the
    workers read the heavy data (PNG frames) themselves, so the parent never holds it.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    # An executor, not multiprocessing.Pool: leaving early (a malformed file) must cancel the queued items
    # and join the workers; Pool.terminate can deadlock on the task queue's lock held by an idle worker.
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    try:
        for out in pool.map(_Guarded(fn), items):
            if isinstance(out, _Failure):
                raise DataFormatError(out.path, out.reason, field=out.field)
            yield out
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class _Failure:
    """A `DataFormatError` raised in a worker, carried back as plain data (the exception does not pickle)."""

    path: str | None
    reason: str
    field: str | None


class _Guarded:
    def __init__(self, fn: Callable[[Any], Any]):
        self.fn = fn

    def __call__(self, item: Any) -> Any:
        try:
            return self.fn(item)
        except DataFormatError as e:
            return _Failure(e.path, e.reason, e.field)
