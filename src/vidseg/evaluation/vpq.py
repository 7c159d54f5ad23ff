"""VIPSeg video panoptic quality (VPQ), number for number as `eval_vpq_vspw.py`.

For each window size `nframes` in (1, 2, 4, 6, 8), every run of `nframes` consecutive frames of a video
(`idx = 0 .. T - nframes`; shorter videos give none) is matched as one spatio-temporal volume (see
`pq.match_window`). TP/FP/FN and IoU sums are accumulated per category over all windows of all videos,
separately per window size; videos are added in GT order and summed in that order (as the official
sequential loop, so float sums are identical).

`VPQ = mean over window sizes of 100 * PQ_all` (0-100), likewise `VPQ_thing` and `VPQ_stuff`. The
official printout labels the window sizes k = (nframes - 1) * 5 = 0, 5, 15, 25, 35.

Streaming: a video keeps only the reduced pair tables of its last 8 frames.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vidseg.evaluation.pq import ClassPQ, FramePairs, PQStats, add_stats, match_window, pq_average
from vidseg.types import Category

WINDOW_SIZES = (1, 2, 4, 6, 8)


class VpqVideoAccumulator:
    """Windows of one video, evaluated as frames arrive; memory: the last max(window) frame tables."""

    def __init__(self, window_sizes: Sequence[int] = WINDOW_SIZES, name: str = "<video>"):
        self.window_sizes = tuple(window_sizes)
        self.name = name
        self._recent: deque[FramePairs] = deque(maxlen=max(self.window_sizes))
        self.stats: dict[int, PQStats] = {n: {} for n in self.window_sizes}
        self.num_frames = 0

    def add_frame(self, frame: FramePairs) -> None:
        self._recent.append(frame)
        self.num_frames += 1
        recent = list(self._recent)
        for n in self.window_sizes:
            if len(recent) >= n:  # the window that ends on this frame
                match_window(recent[-n:], self.stats[n], f"{self.name} frame {self.num_frames - 1}")

    def finish(self) -> dict[int, PQStats]:
        return self.stats


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@dataclass
class WindowPQ:
    """PQ of one window size (0-1 scale, as `pq_average` returns) and its per-class table."""

    nframes: int
    pq_all: float
    pq_thing: float
    pq_stuff: float
    sq_all: float
    rq_all: float
    per_class: dict[int, ClassPQ]


@dataclass
class VpqMetrics:
    """VPQ, VPQ_thing, VPQ_stuff on the official 0-100 scale, and the per-window values."""

    VPQ: float
    VPQ_thing: float
    VPQ_stuff: float
    windows: list[WindowPQ]
    category_names: dict[int, str] = field(default_factory=dict)
    num_videos: int = 0

    def per_class_vpq(self) -> dict[str, float]:
        """Per category: mean over window sizes of 100 * PQ_c (NaN for a category never seen)."""
        out = {}
        for cid, name in self.category_names.items():
            vals = [
                100 * w.per_class[cid].pq
                for w in self.windows
                if cid in w.per_class and w.per_class[cid].tp + w.per_class[cid].fp + w.per_class[cid].fn > 0
            ]
            out[name] = sum(vals) / len(vals) if vals else math.nan
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "VPQ": _num(self.VPQ),
            "VPQ_thing": _num(self.VPQ_thing),
            "VPQ_stuff": _num(self.VPQ_stuff),
            "windows": {
                str(w.nframes): {
                    "k": (w.nframes - 1) * 5,
                    "VPQ": _num(100 * w.pq_all),
                    "VPQ_thing": _num(100 * w.pq_thing),
                    "VPQ_stuff": _num(100 * w.pq_stuff),
                    "per_class": {self.category_names.get(c, str(c)): vars(v) for c, v in w.per_class.items()},
                }
                for w in self.windows
            },
            "per_class": {k: _num(v) for k, v in self.per_class_vpq().items()},
            "num_videos": self.num_videos,
        }


class VpqEvaluator:
    """Streaming VPQ: add each video's window statistics in GT order, then `summarize`."""

    def __init__(self, categories: Sequence[Category], window_sizes: Sequence[int] = WINDOW_SIZES):
        self.categories = list(categories)
        self.window_sizes = tuple(window_sizes)
        self.stats: dict[int, PQStats] = {n: {} for n in self.window_sizes}
        self.num_videos = 0

    def video(self, name: str = "<video>") -> VpqVideoAccumulator:
        return VpqVideoAccumulator(self.window_sizes, name)

    def add_stats(self, video_stats: dict[int, PQStats]) -> None:
        for n in self.window_sizes:
            add_stats(self.stats[n], video_stats[n])
        self.num_videos += 1

    def summarize(self) -> VpqMetrics:
        windows = []
        for n in self.window_sizes:
            all_, per_class = pq_average(self.stats[n], self.categories, None)
            th, _ = pq_average(self.stats[n], self.categories, True)
            st, _ = pq_average(self.stats[n], self.categories, False)
            windows.append(WindowPQ(n, all_.pq, th.pq, st.pq, all_.sq, all_.rq, per_class))
        vpq_all = [100 * w.pq_all for w in windows]
        vpq_thing = [100 * w.pq_thing for w in windows]
        vpq_stuff = [100 * w.pq_stuff for w in windows]
        return VpqMetrics(
            VPQ=sum(vpq_all) / len(vpq_all),
            VPQ_thing=sum(vpq_thing) / len(vpq_thing),
            VPQ_stuff=sum(vpq_stuff) / len(vpq_stuff),
            windows=windows,
            category_names={c.id: c.name for c in self.categories},
            num_videos=self.num_videos,
        )
