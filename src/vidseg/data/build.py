"""`DataConfig` -> `ClipDataset`: the one place the experiment config meets the data code."""

from __future__ import annotations

from vidseg.config import DataConfig
from vidseg.data.clips import ClipDataset, Task
from vidseg.data.sources import open_source
from vidseg.data.transforms import ClipAugment
from vidseg.errors import ConfigError


def build_clip_dataset(cfg: DataConfig, task: Task, *, train: bool = True, seed: int = 0) -> ClipDataset:
    """The training (or validation) clip dataset described by `cfg`.

    Training clips use random sampling within `sampling_range`, `reverse_prob`, a random short side from
    `min_size`, `crop_size` and `flip_prob`; validation clips are consecutive, resized to the largest
    `min_size`, without crop or flip. `format: coco`/`coco_panoptic` images become pseudo-videos.
    """
    root = cfg.train_root if train else cfg.val_root
    annotations = cfg.train_annotations if train else cfg.val_annotations
    if not root:
        raise ConfigError(f"data.{'train' if train else 'val'}_root is empty")
    crop = None
    if cfg.crop_size:
        if len(cfg.crop_size) not in (1, 2):
            raise ConfigError(f"data.crop_size must be [size] or [h, w], got {list(cfg.crop_size)}")
        crop = (cfg.crop_size[0], cfg.crop_size[-1])
    source = open_source(cfg.format, root, annotations, split="train" if train else "val")
    if train:
        augment = ClipAugment(tuple(cfg.min_size), cfg.max_size, crop, cfg.flip_prob)
        return ClipDataset(source, cfg.num_frames, task, sampling="random", sampling_range=cfg.sampling_range,
                           reverse_prob=cfg.reverse_prob, augment=augment, seed=seed)
    augment = ClipAugment((max(cfg.min_size),) if cfg.min_size else (), cfg.max_size, None, 0.0)
    return ClipDataset(source, cfg.num_frames, task, sampling="consecutive", augment=augment, seed=seed)
