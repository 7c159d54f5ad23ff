"""Training clips: T frames of a video (or a COCO image moved by random affine maps) with per-frame targets.

A clip is sampled and augmented from a per-item generator seeded by (seed, epoch, index), so results do
not depend on the number of DataLoader workers and `set_epoch` changes the draw between epochs.

Targets follow the task:

* instance: non-crowd thing segments; crowd pixels become `ignore`.
* panoptic: non-crowd thing and stuff segments; crowd pixels become `ignore`.
* semantic: one entry per class present in the clip (crowd pixels count for their class).

Every frame of a clip lists the same N entries in the same order (the union over the clip), so the entry
index is the clip-level identity; `present` tells where an entry is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from vidseg.data.sources import FrameLabels, LabelSource
from vidseg.data.transforms import ClipAugment, apply_image, apply_masks, random_affine_path, warp_image, warp_masks
from vidseg.types import FrameTask


@dataclass
class FrameTarget:
    """Targets of one frame of a clip.

    Attributes:
        class_ids: [N] int64 contiguous class index.
        instance_ids: [N] int64 source id (track / segment id; class index for semantic), the same N ids in
            the same order on every frame of the clip.
        masks: [N, H, W] bool (all False where the entry is absent).
        present: [N] bool, mask non-empty in this frame.
        ignore: [H, W] bool pixels excluded from the loss (void, crowd, padding).
    """

    class_ids: torch.Tensor
    instance_ids: torch.Tensor
    masks: torch.Tensor
    present: torch.Tensor
    ignore: torch.Tensor

    def to(self, device: torch.device | str) -> FrameTarget:
        return FrameTarget(*(t.to(device) for t in (self.class_ids, self.instance_ids, self.masks, self.present,
                                                     self.ignore)))


@dataclass
class Clip:
    """One training sample.

    Attributes:
        frames: [T, 3, H, W] uint8 RGB.
        targets: [T] per-frame targets.
        video_index: index of the source video.
        frame_indices: [T] source frame index of each clip frame (repeats for pseudo-videos).
    """

    frames: torch.Tensor
    targets: list[FrameTarget]
    video_index: int
    frame_indices: list[int]


@dataclass
class ClipBatch:
    """Clips padded to a common size (bottom/right).

    Attributes:
        frames: [B, T, 3, Hp, Wp] uint8 (zeros in the padding).
        image_sizes: [B, 2] int64 (h, w) of each clip before padding.
        padding: [B, Hp, Wp] bool, True on padded pixels.
        targets: [B][T] targets with masks [N, Hp, Wp] and ignore [Hp, Wp] (padding ignored).
    """

    frames: torch.Tensor
    image_sizes: torch.Tensor
    padding: torch.Tensor
    targets: list[list[FrameTarget]]

    def to(self, device: torch.device | str) -> ClipBatch:
        """The batch with every tensor on `device` (the training engine calls this)."""
        return ClipBatch(self.frames.to(device, non_blocking=True), self.image_sizes.to(device),
                         self.padding.to(device), [[t.to(device) for t in clip] for clip in self.targets])


def sample_frame_indices(
    rng: np.random.Generator,
    frames: list[int],
    num_frames: int,
    mode: Literal["consecutive", "random"] = "random",
    sampling_range: int = 20,
    reverse_prob: float = 0.0,
) -> list[int]:
    """Pick `num_frames` of the (annotated) `frames`.

    consecutive: a run of consecutive list entries. random: a reference frame plus others drawn without
    replacement within ± `sampling_range` list entries, kept in time order. Short videos repeat frames.
    With probability `reverse_prob` the clip plays backwards.
    """
    n = len(frames)
    if n == 0:
        raise ValueError("video has no annotated frames")
    if n <= num_frames:
        picks = sorted(rng.choice(n, num_frames - n, replace=True).tolist() + list(range(n)))
    elif mode == "consecutive":
        start = int(rng.integers(0, n - num_frames + 1))
        picks = list(range(start, start + num_frames))
    else:
        ref = int(rng.integers(0, n))
        lo, hi = max(0, ref - sampling_range), min(n, ref + sampling_range + 1)
        if hi - lo < num_frames:  # widen the window to fit the clip
            lo, hi = max(0, min(lo, n - num_frames)), max(hi, min(n, lo + num_frames))
        pool = [i for i in range(lo, hi) if i != ref]
        picks = sorted([ref, *rng.choice(pool, num_frames - 1, replace=False).tolist()])
    out = [frames[i] for i in picks]
    if rng.random() < reverse_prob:
        out.reverse()
    return out


def _targets(labels: list[FrameLabels], task: FrameTask, thing_classes: list[bool]) -> list[FrameTarget]:
    """Per-frame targets with one common entry list for the clip."""
    h, w = labels[0].void.shape
    entries: dict[int, int] = {}  # key -> class index, in order of first appearance
    per_frame = []
    for lab in labels:
        ignore = lab.void.copy()
        items: dict[int, np.ndarray] = {}
        for k in range(len(lab.ids)):
            cls = int(lab.class_ids[k])
            if task == "semantic":
                key = cls
            else:
                if lab.is_crowd[k] or (task == "instance" and not thing_classes[cls]):
                    if lab.is_crowd[k]:
                        ignore |= lab.masks[k]
                    continue
                key = int(lab.ids[k])
            if not lab.masks[k].any():
                continue
            entries.setdefault(key, cls)
            items[key] = items[key] | lab.masks[k] if key in items else lab.masks[k]
        per_frame.append((items, ignore))
    keys = list(entries)
    out = []
    for items, ignore in per_frame:
        masks = np.stack([items[k] if k in items else np.zeros((h, w), bool) for k in keys]) if keys else \
            np.zeros((0, h, w), bool)
        out.append(
            FrameTarget(
                class_ids=torch.tensor([entries[k] for k in keys], dtype=torch.int64),
                instance_ids=torch.tensor(keys, dtype=torch.int64),
                masks=torch.from_numpy(masks),
                present=torch.tensor([k in items for k in keys], dtype=torch.bool),
                ignore=torch.from_numpy(ignore),
            )
        )
    return out


class ClipDataset(Dataset):
    """T-frame clips of a `LabelSource` with clip-consistent augmentation.

    Args:
        source: a `sources.InstanceSource` / `PanopticSource` / `SemanticSource` (or any `LabelSource`).
        num_frames: T.
        task: which targets to build (see the module docstring).
        sampling: `consecutive` or `random` within ± `sampling_range` annotated frames.
        reverse_prob: probability of playing a clip backwards.
        augment: resize/crop/flip drawn once per clip (None: no augmentation).
        pseudo_video: turn every item into a T-frame clip of its first annotated frame moved by a smooth
            random affine path (COCO images; `None` = automatically for 1-frame videos).
        seed: base seed of the per-item generators.
    """

    def __init__(
        self,
        source: LabelSource,
        num_frames: int,
        task: FrameTask = "instance",
        *,
        sampling: Literal["consecutive", "random"] = "random",
        sampling_range: int = 20,
        reverse_prob: float = 0.0,
        augment: ClipAugment | None = None,
        pseudo_video: bool | None = None,
        seed: int = 0,
    ):
        if num_frames < 1:
            raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
        self.source = source
        self.num_frames = num_frames
        self.task = task
        self.sampling = sampling
        self.sampling_range = sampling_range
        self.reverse_prob = reverse_prob
        self.augment = augment
        self.pseudo_video = pseudo_video
        self.seed = seed
        self.epoch = 0
        self._frames = [source.annotated_frames(v) for v in range(len(source))]
        self._keep = [v for v, f in enumerate(self._frames) if f]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    def __len__(self) -> int:
        return len(self._keep)

    def __getitem__(self, key: int | tuple[int, int]) -> Clip:
        """The clip of sample `index` in the current epoch, or in `epoch` for a key `(index, epoch)` (what
        the training engine's sampler passes, so every epoch draws new frames and augmentation)."""
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        video = self._keep[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        frames_avail = self._frames[video]
        pseudo = self.pseudo_video if self.pseudo_video is not None else len(frames_avail) == 1
        if pseudo:
            t0 = frames_avail[int(rng.integers(len(frames_avail)))]
            indices = [t0] * self.num_frames
            image, lab = self.source.load_frame(video, t0), self.source.load_labels(video, t0)
            h, w = image.shape[:2]
            images, labels = [], []
            for inv in random_affine_path(rng, self.num_frames, h, w):
                masks, outside = warp_masks(lab.masks, inv)
                void, _ = warp_masks(lab.void[None], inv)
                images.append(warp_image(image, inv))
                labels.append(FrameLabels(lab.ids, lab.class_ids, masks, lab.is_thing, lab.is_crowd,
                                          void[0] | outside))
        else:
            indices = sample_frame_indices(
                rng, frames_avail, self.num_frames, self.sampling, self.sampling_range, self.reverse_prob
            )
            images = [self.source.load_frame(video, t) for t in indices]
            labels = [self.source.load_labels(video, t) for t in indices]
        if self.augment is not None:
            params = self.augment.sample(rng, *images[0].shape[:2])
            images = [apply_image(im, params) for im in images]
            labels = [
                FrameLabels(lab.ids, lab.class_ids, apply_masks(lab.masks, params), lab.is_thing, lab.is_crowd,
                            apply_masks(lab.void, params))
                for lab in labels
            ]
        frames = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        return Clip(frames, _targets(labels, self.task, self.source.thing_classes), video, indices)


def collate_clips(clips: list[Clip], size_divisibility: int = 32) -> ClipBatch:
    """Pad clips (bottom/right) to the largest size, rounded up to `size_divisibility`."""
    t = {c.frames.shape[0] for c in clips}
    if len(t) != 1:
        raise ValueError(f"clips of different lengths {sorted(t)} cannot be batched")
    hs = [c.frames.shape[2] for c in clips]
    ws = [c.frames.shape[3] for c in clips]
    d = max(1, size_divisibility)
    hp, wp = -(-max(hs) // d) * d, -(-max(ws) // d) * d
    b, tt = len(clips), t.pop()
    frames = torch.zeros(b, tt, 3, hp, wp, dtype=torch.uint8)
    padding = torch.ones(b, hp, wp, dtype=torch.bool)
    targets = []
    for i, c in enumerate(clips):
        h, w = hs[i], ws[i]
        frames[i, :, :, :h, :w] = c.frames
        padding[i, :h, :w] = False
        padded = []
        for tg in c.targets:
            masks = torch.zeros(tg.masks.shape[0], hp, wp, dtype=torch.bool)
            masks[:, :h, :w] = tg.masks
            ignore = torch.ones(hp, wp, dtype=torch.bool)
            ignore[:h, :w] = tg.ignore
            padded.append(FrameTarget(tg.class_ids, tg.instance_ids, masks, tg.present, ignore))
        targets.append(padded)
    sizes = torch.tensor([[h, w] for h, w in zip(hs, ws)], dtype=torch.int64)
    return ClipBatch(frames, sizes, padding, targets)
