"""Every script in `benchmarks/` runs with its smallest settings (`--smoke`) and prints valid JSON.

Benchmarks rot because nothing runs them (issue 21: `segmenter_latency.py` imported a function that no
longer existed). Each script runs as a user runs it, in a subprocess; the last JSON object on stdout must
parse. Scripts that need training runs or real data and have no `--smoke` path yet are listed in
`NO_SMOKE_YET`; `test_every_script_is_covered` fails when a script is neither covered nor listed, or when a
listed one gains `--smoke` (then it belongs in the smoke run).
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

# Still without a tiny synthetic path (they train models or read real datasets); issue 21 follow-up.
NO_SMOKE_YET = {
    "ablation_mvc_oma.py",
    "davis_run_b.py",
    "l2g_comparison.py",
    "make_demo_assets.py",
    "segmenter_learning.py",
    "train_throughput.py",
    "video_pipeline_eval.py",
}
# Seconds each takes on 2 shared cores; the heavier ones are `slow`.
SMOKE = {
    "bundled_speed.py": ["--peer", str(DEMO_MODEL)],  # the bundled model as its own peer
    "data_throughput.py": [],
    "eval_speed.py": [],
    "gpu_pipeline.py": [],
    "l2g_latency.py": [],
    "parity_table.py": [],
    "segment_memory.py": [],
    "segment_throughput.py": [],
    "segmenter_latency.py": ["--threads", "1"],
    "video_overhead.py": [],
    "vit_latency.py": [],
}
SLOW = {"segmenter_latency.py", "vit_latency.py",  # transformers models: ~5-20 s each
        "gpu_pipeline.py",  # on the CPU: a DVIS++ model with 100 queries, ~15 s
        "segment_memory.py",  # six `vidseg segment` runs: ~40 s
        "segment_throughput.py",  # the bundled model on 12 frames, three times: ~15 s
        "bundled_speed.py"}  # three models on 4 frames: ~15 s


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
    assert scripts == set(SMOKE) | NO_SMOKE_YET, "add the new script to SMOKE (with a --smoke flag) or NO_SMOKE_YET"
    for name in SMOKE:
        assert "--smoke" in (BENCHMARKS / name).read_text(), f"{name} has no --smoke flag"
    gained = [n for n in NO_SMOKE_YET if "--smoke" in (BENCHMARKS / n).read_text()]
    assert not gained, f"{gained} have --smoke now: move them to SMOKE"


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
    assert isinstance(last_json(proc.stdout), dict)
