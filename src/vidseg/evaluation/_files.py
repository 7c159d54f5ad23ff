"""What the file-based evaluators share: the prediction-size check and an ordered worker pool.

The evaluators read the official formats themselves (as the official scripts do), through the readers of
`vidseg.io` (JSON, label and panoptic PNGs, with errors that name the file), not the dataset readers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vidseg.errors import DataFormatError

T = TypeVar("T")
R = TypeVar("R")


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
