"""Every script in `benchmarks/` runs with its smallest settings (`--smoke`) and prints valid JSON.

Benchmarks rot because nothing runs them (issue 21: `segmenter_latency.py` imported a function that no
longer existed). Each script runs as a user runs it, in a subprocess; the last JSON object on stdout must
parse. Scripts that need training runs or datasets generate tiny synthetic ones (and train for an iteration or
two) under `--smoke`; `test_every_script_is_covered` fails when a script is not in the smoke run or has no
`--smoke` flag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidseg.bundled import DEMO_MODEL

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# Seconds each takes on 2 shared cores; the heavier ones are `slow`.
SMOKE = {
    "ablation_mvc_oma.py": [],
    "bundled_speed.py": ["--peer", str(DEMO_MODEL)],  # the bundled model as its own peer
    "data_throughput.py": [],
    "davis_run_b.py": [],
    "eval_speed.py": [],
    "gpu_pipeline.py": [],
    "l2g_comparison.py": [],
    "l2g_latency.py": [],
    "make_demo_assets.py": [],
    "parity_table.py": [],
    "segment_memory.py": [],
    "segment_throughput.py": [],
    "segmenter_latency.py": ["--threads", "1"],
    "segmenter_learning.py": [],
    "train_throughput.py": [],
    "video_overhead.py": [],
    "video_pipeline_eval.py": [],
    "vit_latency.py": [],
}
SLOW = {"segmenter_latency.py", "vit_latency.py",  # transformers models: ~5-20 s each
        "gpu_pipeline.py",  # on the CPU: a DVIS++ model with 100 queries, ~15 s
        "segment_memory.py",  # six `vidseg segment` runs: ~40 s
        "segment_throughput.py",  # the bundled model on 12 frames, three times: ~15 s
        "bundled_speed.py",  # three models on 4 frames: ~15 s
        "ablation_mvc_oma.py",  # eleven 1-iteration trainings, five rows scored: ~15 s
        "l2g_comparison.py",  # six 1-iteration trainings, four models scored: ~10 s
        "video_pipeline_eval.py",  # three 1-iteration trainings, three rows scored on every task: ~15 s
        "parity_table.py",  # every golden model built and run once: ~11 s
        "segmenter_learning.py",  # a 2-iteration training and its evaluation: ~10 s
        "data_throughput.py"}  # data loading timed over several settings: ~9 s


def _best_track_bounds_top1(report: dict) -> None:
    """davis_run_b: the best-fitting track's J is at least the top-scoring one's (a choice among the same)."""
    for name, row in report["per_sequence"].items():
        assert row["J_top1"] <= row["J_best_track"] + 1e-9 <= 1 + 1e-9, name
    assert report["davis_best_track_J"] >= report["davis_top1"]["J_mean"] - 1e-9


# What a script's JSON must also satisfy, beyond being printed.
CHECKS = {"davis_run_b.py": _best_track_bounds_top1}


def _scripts() -> set[str]:
    return {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}


def last_json(stdout: str) -> object:
    """The last JSON object printed: the outermost `{...}` that ends the output (scripts may log lines
    before it, or print it indented)."""
    text = stdout.rstrip()
    decoder = json.JSONDecoder()
    for start in [i for i, ch in enumerate(text) if ch == "{"]:
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if end == len(text) and isinstance(obj, dict):
            return obj
    raise AssertionError(f"no JSON object on stdout:\n{stdout[-2000:]}")


def test_every_script_is_covered():
    scripts = _scripts()
    assert scripts == set(SMOKE), "add the new script to SMOKE (with a --smoke flag)"
    for name in SMOKE:
        assert "--smoke" in (BENCHMARKS / name).read_text(), f"{name} has no --smoke flag"


def test_last_json_takes_the_final_object():
    assert last_json('log {"a": 1}\n{\n  "b": {"c": 2}\n}\n') == {"b": {"c": 2}}
    with pytest.raises(AssertionError):
        last_json("no json here {")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(SMOKE)]
)
def test_smoke_run_prints_json(name):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), "--smoke", *SMOKE[name]],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=BENCHMARKS.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = last_json(proc.stdout)
    assert isinstance(report, dict)
    CHECKS.get(name, lambda _: None)(report)
