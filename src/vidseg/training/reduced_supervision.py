"""Local2Global "reduced supervision": compute the loss on only some frames of a training clip.

L2G §3.2: "with a five-frame clip, we randomly skip loss computation for one or multiple frames from the
first to the fourth frame, while always computing the loss for at least two frames, including the last".

Policy (the paper gives no distribution; this is the plainest one that matches the sentence): for a clip of
T frames, the last frame is always supervised; the number of skipped frames s is uniform on
{1, ..., T - min_frames} (at least one skipped, "one or multiple"), and the s skipped frames are a uniform
random subset of frames 0..T-2. Clips with T <= min_frames skip nothing. The whole clip is still unrolled
(the model runs on every frame) and Hungarian matching still happens at each instance's first appearance;
only the loss terms of skipped frames are dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["supervised_frames"]


def supervised_frames(
    num_frames: int,
    *,
    enabled: bool = True,
    min_frames: int = 2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Which frames of a clip get a loss: bool [num_frames] (True = supervised).

    Disabled -> all True. Always True at the last frame, and at least min(min_frames, num_frames) True.
    """
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    if min_frames < 1:
        raise ValueError(f"min_frames must be >= 1 (the last frame is always kept), got {min_frames}")
    keep = torch.ones(num_frames, dtype=torch.bool)
    max_skip = num_frames - min_frames
    if not enabled or max_skip < 1:
        return keep
    device = generator.device if generator is not None else torch.device("cpu")
    num_skip = int(torch.randint(1, max_skip + 1, (1,), generator=generator, device=device))
    skipped = torch.randperm(num_frames - 1, generator=generator, device=device)[:num_skip].cpu()
    keep[skipped] = False
    return keep
