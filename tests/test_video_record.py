"""The per-frame record behind the official whole-video results: disk spill and refiner windows."""

from __future__ import annotations

import pytest
import torch

from vidseg.inference.spill import SpillFile
from vidseg.inference.video_record import refine_spans


def test_spill_file_round_trips_frames_in_order_and_checks_shape() -> None:
    spill = SpillFile()
    frames = [torch.randn(3, 4, 5) for _ in range(4)]
    for f in frames:
        spill.append(f)
    assert len(spill) == 4 and spill.shape == (3, 4, 5)
    assert all(torch.equal(spill[i], frames[i]) for i in (2, 0, 3, 1))
    spill.append(torch.zeros(3, 4, 5))  # appending after a read re-maps the file
    assert torch.equal(spill[4], torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="shape"):
        spill.append(torch.zeros(2, 4, 5))
    with pytest.raises(IndexError):
        spill[5]
    spill.close()


@pytest.mark.parametrize(("frames", "window"), [(5, 10), (10, 10), (11, 10), (100, 12), (37, 6), (7, 1)])
def test_refine_spans_emit_every_frame_once_inside_its_window(frames: int, window: int) -> None:
    spans = refine_spans(frames, window)
    emitted = [t for _, _, a, b in spans for t in range(a, b)]
    assert emitted == list(range(frames))
    for start, stop, a, b in spans:
        assert 0 <= start <= a < b <= stop <= frames and stop - start <= window
    if frames <= window:
        assert spans == [(0, frames, 0, frames)]  # one pass: exactly the official refinement
    else:  # every window is full, and inner frames keep context on both sides
        assert all(stop - start == window for start, stop, _, _ in spans)
        context = window // 6
        assert all(a - start >= context or start == 0 for start, _, a, _ in spans)
