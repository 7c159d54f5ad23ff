"""Copy-paste for instance clips: the instances of another clip pasted over a clip.

Simple Copy-Paste (Ghiasi et al., CVPR 2021) carried over to clips: with probability `prob` a training clip
gets every instance of another clip of the same dataset pasted on top, frame t onto frame t, scaled by one
factor and placed at one offset for the whole clip, so pasted objects move as they moved in their own video.
Pasted pixels occlude what was there: the clip's own masks lose them (and stop being ignored there).

It makes frames with several objects out of data that has one object per video (DAVIS-2016), which is what
teaches separate queries for separate objects.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vidseg.data.clips import Clip, FrameTarget

_TAG = 0xC0B7  # separates the copy-paste draws from the clip's own draws of the same (seed, epoch, index)
MIN_SCALE = 0.5  # of the largest scale at which the donor fits the clip


class ClipSource(Protocol):
    """What `CopyPasteClips` wraps: a `ClipDataset` or `MixedClipDataset`."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: int | tuple[int, int]) -> Clip: ...

    def set_epoch(self, epoch: int) -> None: ...

    @property
    def class_names(self) -> list[str]: ...


class CopyPasteClips(Dataset):
    """`dataset`'s clips, each with probability `prob` with another clip's instances pasted over it.

    The draw (whether, which donor, scale, offset) comes from a generator seeded by (seed, epoch, index), so
    it does not depend on the number of DataLoader workers.
    """

    def __init__(self, dataset: ClipSource, prob: float, seed: int = 0):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"copy-paste probability must be in [0, 1], got {prob}")
        self.dataset = dataset
        self.prob = prob
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> Clip:
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        clip = self.dataset[(index, epoch)]
        rng = np.random.default_rng([self.seed, _TAG, epoch, index])
        if len(self) < 2 or rng.random() >= self.prob:
            return clip
        other = int(rng.integers(len(self) - 1))
        donor = self.dataset[(other + (other >= index), epoch)]  # any clip but this one
        return paste_clip(clip, donor, rng)


def paste_clip(clip: Clip, donor: Clip, rng: np.random.Generator) -> Clip:
    """`clip` with `donor`'s instances pasted over it (both T frames; sizes may differ).

    The donor is resized by one factor in [MIN_SCALE, 1] x the largest that fits and placed at a random
    offset; its entries are appended after the clip's, with instance ids moved past the clip's.
    """
    num_frames, _, height, width = clip.frames.shape
    if donor.frames.shape[0] != num_frames:
        raise ValueError(f"donor clip has {donor.frames.shape[0]} frames, the clip {num_frames}")
    dh, dw = donor.frames.shape[-2:]
    scale = rng.uniform(MIN_SCALE, 1.0) * min(height / dh, width / dw)
    ph, pw = max(1, round(dh * scale)), max(1, round(dw * scale))
    y0, x0 = int(rng.integers(height - ph + 1)), int(rng.integers(width - pw + 1))
    rows, cols = slice(y0, y0 + ph), slice(x0, x0 + pw)
    pixels = F.interpolate(donor.frames.float(), size=(ph, pw), mode="bilinear", align_corners=False)
    pixels = pixels.round().clamp(0, 255).to(torch.uint8)
    frames = clip.frames.clone()
    id_offset = 1 + max((int(t.instance_ids.max()) for t in clip.targets if t.instance_ids.numel()), default=0)
    targets = []
    for t, (own, pasted) in enumerate(zip(clip.targets, donor.targets)):
        masks = torch.zeros(pasted.masks.shape[0], height, width, dtype=torch.bool)
        if pasted.masks.shape[0]:
            small = F.interpolate(pasted.masks[None].float(), size=(ph, pw), mode="nearest")[0] > 0.5
            masks[:, rows, cols] = small
        cover = masks.any(dim=0)
        frames[t, :, rows, cols] = torch.where(cover[rows, cols], pixels[t], frames[t, :, rows, cols])
        kept = own.masks & ~cover
        targets.append(
            FrameTarget(
                class_ids=torch.cat([own.class_ids, pasted.class_ids]),
                instance_ids=torch.cat([own.instance_ids, pasted.instance_ids + id_offset]),
                masks=torch.cat([kept, masks]),
                present=torch.cat([kept.flatten(1).any(dim=1), masks.flatten(1).any(dim=1)]),
                ignore=own.ignore & ~cover,
            )
        )
    return Clip(frames, targets, clip.video_index, clip.frame_indices)
