"""`DataConfig` -> `ClipDataset`: the one place the experiment config meets the data code.

DAVIS sequence splits: for `format: davis` the `train_annotations` / `val_annotations` fields (unused by a
DAVIS folder otherwise) name the sequences of each split, so a preset states its split explicitly:

* a comma-separated list of sequence names (`"bmx-trees,camel"`), or
* a `.txt` file with one sequence name per line, like DAVIS's own `ImageSets/2016/train.txt`; a relative
  path is looked up in the working directory first, then under the dataset root;
* empty: every sequence under the root.
"""

from __future__ import annotations

from pathlib import Path

from vidseg.config import DataConfig
from vidseg.data.clips import ClipDataset, Task
from vidseg.data.formats.davis import read_davis
from vidseg.data.sources import InstanceSource, open_source
from vidseg.data.transforms import ClipAugment
from vidseg.errors import ConfigError, DataFormatError


def davis_sequences(spec: str, root: str | Path, field: str) -> list[str] | None:
    """Sequence names of a DAVIS split (see the module docstring); None = all. `field` names the config key."""
    spec = spec.strip()
    if not spec:
        return None
    if spec.endswith(".txt"):
        path = Path(spec)
        if not path.is_file() and not path.is_absolute() and (Path(root) / spec).is_file():
            path = Path(root) / spec
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise DataFormatError(path, f"cannot read the sequence list ({e.strerror})", field=field) from None
        names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        source = path
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        source = None
    if not names:
        raise DataFormatError(source, "the sequence list is empty", field=field)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataFormatError(source, f"sequence {dupes[0]!r} is listed twice", field=field)
    return names


def build_clip_dataset(cfg: DataConfig, task: Task, *, train: bool = True, seed: int = 0) -> ClipDataset:
    """The training (or validation) clip dataset described by `cfg`.

    Training clips use random sampling within `sampling_range`, `reverse_prob`, a random short side from
    `min_size`, `crop_size`, `flip_prob` and `color_jitter`; validation clips are consecutive, resized to
    the largest `min_size`, without crop, flip or colour jitter. `format: coco`/`coco_panoptic` images become
    pseudo-videos.
    """
    split = "train" if train else "val"
    root = cfg.train_root if train else cfg.val_root
    annotations = cfg.train_annotations if train else cfg.val_annotations
    if not root:
        raise ConfigError(f"data.{split}_root is empty")
    crop = None
    if cfg.crop_size:
        if len(cfg.crop_size) not in (1, 2):
            raise ConfigError(f"data.crop_size must be [size] or [h, w], got {list(cfg.crop_size)}")
        crop = (cfg.crop_size[0], cfg.crop_size[-1])
    if train:
        try:
            augment = ClipAugment(tuple(cfg.min_size), cfg.max_size, crop, cfg.flip_prob,
                                  tuple(cfg.color_jitter) or None)
        except ValueError as err:  # only the colour jitter is validated there
            raise ConfigError(f"data.{err}") from None
    else:
        augment = ClipAugment((max(cfg.min_size),) if cfg.min_size else (), cfg.max_size, None, 0.0)
    if cfg.format == "davis":
        sequences = davis_sequences(annotations, root, f"data.{split}_annotations")
        source = InstanceSource(read_davis(root, sequences))
    else:
        source = open_source(cfg.format, root, annotations, split=split)
    if train:
        return ClipDataset(source, cfg.num_frames, task, sampling="random", sampling_range=cfg.sampling_range,
                           reverse_prob=cfg.reverse_prob, augment=augment, seed=seed)
    return ClipDataset(source, cfg.num_frames, task, sampling="consecutive", augment=augment, seed=seed)
