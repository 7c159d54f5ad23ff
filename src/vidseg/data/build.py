"""`DataConfig` -> `ClipDataset`: the one place the experiment config meets the data code.

DAVIS sequence splits: for `format: davis` the `train_annotations` / `val_annotations` fields (unused by a
DAVIS folder otherwise) name the sequences of each split, so a preset states its split explicitly:

* a comma-separated list of sequence names (`"bmx-trees,camel"`), or
* a `.txt` file with one sequence name per line, like DAVIS's own `ImageSets/2016/train.txt`; a relative
  path is looked up in the working directory first, then under the dataset root;
* empty: every sequence under the root.

Joint training (`data.mix`, training only): each extra source is read, its classes mapped into the main
dataset's (`vidseg.data.mixing.remap_classes`), made a clip dataset with the same sampling and augmentation
(COCO images become pseudo-videos) and sampled with the main one by ratio (`MixedClipDataset`).
"""

from __future__ import annotations

from pathlib import Path

from vidseg.config import DataConfig, MixSource
from vidseg.data.clips import ClipDataset
from vidseg.data.copy_paste import CopyPasteClips
from vidseg.data.formats.davis import read_davis
from vidseg.data.mixing import MixedClipDataset, remap_classes, resolve_class_map
from vidseg.data.sources import InstanceSource, PanopticSource, SemanticSource, open_source
from vidseg.data.transforms import ClipAugment
from vidseg.errors import ConfigError, DataFormatError
from vidseg.types import FrameTask

# Formats read as an `InstanceSource`, which joint training (`data.mix`) maps the extra sources' classes into.
_INSTANCE_FORMATS = ("ytvis", "ovis", "coco", "davis")


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


def mix_source(mix: MixSource, main: InstanceSource, key: str) -> InstanceSource:
    """An extra training source with its classes mapped into `main`'s (see `vidseg.data.mixing`).

    Raises:
        ConfigError: empty root/annotations, a bad or unknown class map, or no instance left after the map
            (naming `key`, e.g. `data.mix[0]`).
    """
    for name in ("root", "annotations"):
        if not getattr(mix, name):
            raise ConfigError(f"{key}.{name} is empty")
    source = open_source(mix.format, mix.root, mix.annotations, split="train")
    assert isinstance(source, InstanceSource)  # every `MixSource.format` is an instance format
    target = main.dataset.categories
    mapping = resolve_class_map(mix, source.dataset.categories, target, key)
    remapped = remap_classes(source.dataset, mapping, target)
    if not remapped.videos:
        raise ConfigError(f"{key}: no image or video of {mix.annotations} keeps an instance after the class map "
                          f"{mix.class_map or '(by id)'!r}")
    return InstanceSource(remapped)


def build_clip_dataset(cfg: DataConfig, task: FrameTask, *, train: bool = True,
                       seed: int = 0) -> ClipDataset | MixedClipDataset | CopyPasteClips:
    """The training (or validation) clip dataset described by `cfg`.

    Training clips use random sampling within `sampling_range`, `reverse_prob`, a random short side from
    `min_size`, `crop_size`, `flip_prob` and `color_jitter`; validation clips are consecutive, resized to
    the largest `min_size`, without crop, flip or colour jitter. `format: coco`/`coco_panoptic` images become
    pseudo-videos. With `data.mix`, the training dataset is a `MixedClipDataset` of the main dataset
    (weight `train_ratio`) and the extra sources (dataset i+1 seeded `seed + i + 1`); with `data.copy_paste`
    its clips get other clips' instances pasted over them (`CopyPasteClips`).
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
    if train and cfg.copy_paste and task != "instance":
        raise ConfigError(f"data.copy_paste: pasting instances needs instance training, not {task}")
    if train and cfg.mix and cfg.format not in _INSTANCE_FORMATS:
        raise ConfigError(f"data.mix: joint training needs an instance dataset ({', '.join(_INSTANCE_FORMATS)}) as "
                          f"data.format, got {cfg.format!r}")
    source: InstanceSource | PanopticSource | SemanticSource
    if cfg.format == "davis":
        sequences = davis_sequences(annotations, root, f"data.{split}_annotations")
        source = InstanceSource(read_davis(root, sequences))
    else:
        source = open_source(cfg.format, root, annotations, split=split)
    if train:
        def clips(src: InstanceSource | PanopticSource | SemanticSource, clip_seed: int) -> ClipDataset:
            return ClipDataset(src, cfg.num_frames, task, sampling="random", sampling_range=cfg.sampling_range,
                               reverse_prob=cfg.reverse_prob, augment=augment, seed=clip_seed)

        main = clips(source, seed)
        dataset: ClipDataset | MixedClipDataset = main
        if cfg.mix:
            assert isinstance(source, InstanceSource)  # checked above
            extra = [mix_source(m, source, f"data.mix[{i}]") for i, m in enumerate(cfg.mix)]
            parts = [main] + [clips(src, seed + i + 1) for i, src in enumerate(extra)]
            dataset = MixedClipDataset(parts, [cfg.train_ratio, *(m.ratio for m in cfg.mix)], seed=seed)
        return CopyPasteClips(dataset, cfg.copy_paste, seed) if cfg.copy_paste else dataset
    return ClipDataset(source, cfg.num_frames, task, sampling="consecutive", augment=augment, seed=seed)
