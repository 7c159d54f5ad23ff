"""Helpers shared by the multi-run benchmark scripts (ablations and comparisons over seeds)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from vidseg.training.checkpoint import latest_checkpoint
from vidseg.training.run import train

# --smoke: tiny frames, few loss points and one clip a batch, so a preset trains and evaluates in seconds.
SMOKE_SIZES = [
    "data.min_size=[64]", "data.max_size=96", "data.num_workers=0", "loss.num_points=64", "optim.batch_size=1",
    "inference.min_size=64", "inference.max_size=96",
]


def cached_stage(out: Path, preset: str, stage: str, init: Path | None, overrides: list[str], iters: int) -> Path:
    """Train `stage` for `iters` iterations into `out` unless a checkpoint that far along is already there.

    An unfinished run is resumed, so a killed script picks up where it stopped. The step schedule drops the
    lr at 80 % of `iters`.
    """
    done = latest_checkpoint(out)
    if done is not None and int(done.name[5:]) >= iters:
        return done
    summary = train(preset, stage, out, overrides=[*overrides, f"optim.max_iters={iters}",
                                                   f"optim.steps=[{int(iters * 0.8)}]"],
                    init=init, checkpoint_every=iters, resume=done is not None)
    assert summary.last_checkpoint is not None
    return summary.last_checkpoint


def cached_scores(path: Path, score: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The scores saved at `path`, or `score()` saved there (evaluation is minutes a run on CPU)."""
    if path.exists():
        return json.loads(path.read_text())
    scores = score()
    path.write_text(json.dumps(scores))
    return scores


def mean_std_table(results: dict[str, dict[int, dict[str, float]]], metrics: list[str]) -> tuple[list[str], dict]:
    """Markdown rows `| row | mean ± std | ... |` over seeds, and the same numbers as a dict."""
    table = ["| row | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for row, per_seed in results.items():
        cells, summary[row] = [], {}
        for metric in metrics:
            values = [s[metric] for s in per_seed.values()]
            mean = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[row][metric] = {"mean": mean, "std": std}
            cells.append(f"{mean:.1f} ± {std:.1f}")
        table.append(f"| {row} | " + " | ".join(cells) + " |")
    return table, summary
