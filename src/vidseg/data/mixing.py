"""Joint training: extra datasets (COCO images as pseudo-videos, another VIS set) mixed into the main one.

The recipes of VITA, MinVIS, CTVIS, DVIS++, MVC and Local2Global train YouTube-VIS 2019/2021 and OVIS
together with COCO images turned into pseudo-videos, COCO classes mapped to the video dataset's classes by the
official maps (`vidseg.data.catalog.class_map`); COCO classes without a counterpart are dropped.

* **Classes** (`remap_classes`): the map is applied to the extra source's records before they become
  targets: each instance's category id becomes the main dataset's category id, instances of unmapped
  classes are dropped, and so are images (videos) left without instances. The remapped dataset carries the
  main dataset's categories, so class index k means the same class in every source.
* **Sampling** (`MixedClipDataset`): one epoch holds `len(main)` main samples (each once) and
  `round(len(main) * ratio_i / train_ratio)` samples of extra source i, so every clip comes from source i
  with probability ratio_i / sum(ratios) (exactly, per epoch, up to rounding). Sample j of extra source i in
  epoch e is item `perm(e, i, j // n_i)[j % n_i]` of that source (a seeded permutation), so an epoch visits
  a fresh subset of a large COCO, without repeats while the source has items left. Everything is a function
  of (seed, epoch, index): the training engine's resumable sampler passes `(index, epoch)` keys, so results
  do not depend on DataLoader workers and are the same after `--resume`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from torch.utils.data import Dataset

from vidseg.config import MixSource
from vidseg.data.annotations import VisDataset
from vidseg.data.catalog import class_map, vocabulary, vocabulary_names
from vidseg.data.clips import Clip, ClipDataset
from vidseg.errors import ConfigError
from vidseg.types import Category

__all__ = ["MixedClipDataset", "mix_counts", "remap_classes", "resolve_class_map"]

_MAP_PREFIX = "coco_to_"
# Tag mixed into the permutation seeds so they differ from the clip generators' (seed, epoch, index).
_PERM_TAG = 0x6D6978


def _same_name(a: str, b: str) -> bool:
    return a.lower().replace("_", " ").strip() == b.lower().replace("_", " ").strip()


def resolve_class_map(mix: MixSource, source: Sequence[Category], target: Sequence[Category],
                      key: str) -> dict[int, int]:
    """The source category id -> main category id map of one extra source.

    With `mix.class_map` set, the packaged map; every target id must be a category of the main dataset, and
    where the map's target vocabulary is packaged (`coco_to_ytvis19` -> `ytvis19`) with the same name there.
    Empty: categories are matched by id, and every source category must exist in the main dataset.

    Args:
        mix: the extra source's config.
        source: its categories (as read from its file).
        target: the main dataset's categories.
        key: the config key of `mix` (`data.mix[0]`), named in errors.

    Raises:
        ConfigError: unknown map name, or a map (or id match) that does not fit the main dataset.
    """
    names = {c.id: c.name for c in target}
    if not mix.class_map:
        for c in source:
            if c.id not in names:
                raise ConfigError(f"{key}.class_map: empty, so categories are matched by id, but the training data "
                                  f"has no category id {c.id} ({c.name!r}); name a class map (e.g. coco_to_ytvis19)")
        return {c.id: c.id for c in source}
    try:
        mapping = class_map(mix.class_map)
    except ConfigError as e:
        raise ConfigError(f"{key}.class_map: {e}") from None
    full = mix.class_map if mix.class_map.startswith(_MAP_PREFIX) else _MAP_PREFIX + mix.class_map
    vocab_name = full[len(_MAP_PREFIX):]
    vocab = vocabulary(vocab_name) if vocab_name in vocabulary_names() else None
    for coco_id, target_id in sorted(mapping.items()):
        if target_id not in names:
            raise ConfigError(f"{key}.class_map: {full!r} maps COCO category {coco_id} to category id {target_id}, "
                              f"which the training data does not have (is it {vocab_name}?)")
    if vocab is not None:
        for target_id in sorted(set(mapping.values())):
            expected = vocab.names[vocab.contiguous_id(target_id)]
            if not _same_name(expected, names[target_id]):
                raise ConfigError(f"{key}.class_map: {full!r} maps to {vocab_name} category {target_id} "
                                  f"{expected!r}, but the training data's category {target_id} is "
                                  f"{names[target_id]!r} (is it {vocab_name}?)")
    return mapping


def remap_classes(dataset: VisDataset, mapping: dict[int, int], target: Sequence[Category]) -> VisDataset:
    """`dataset` with category ids mapped by `mapping` into the categories `target`.

    Instances of categories absent from `mapping` are dropped, and videos (images) left without instances
    are dropped too. The input is not modified.
    """
    videos = []
    for v in dataset.videos:
        kept = [replace(tr, category_id=mapping[tr.category_id]) for tr in v.instances if tr.category_id in mapping]
        if kept:
            videos.append(replace(v, instances=kept))
    return VisDataset(list(target), videos, dataset.source, list(dataset.problems))


def mix_counts(main_length: int, ratios: Sequence[float]) -> list[int]:
    """Samples per epoch of each dataset: `main_length` for the main one (`ratios[0]`), and
    `round(main_length * ratio_i / ratios[0])` (at least 1) for extra dataset i."""
    if main_length < 1:
        raise ValueError("the main training dataset is empty")
    if any(r <= 0 for r in ratios):
        raise ValueError(f"mixing ratios must be > 0, got {list(ratios)}")
    return [main_length] + [max(1, round(main_length * r / ratios[0])) for r in ratios[1:]]


class MixedClipDataset(Dataset):
    """Clip datasets sampled by ratio (see the module docstring).

    Args:
        datasets: the main clip dataset first, then the extra ones (same task, same classes).
        ratios: one sampling weight per dataset.
        seed: seeds the per-epoch permutations of the extra datasets.
    """

    def __init__(self, datasets: Sequence[ClipDataset], ratios: Sequence[float], seed: int = 0):
        if len(datasets) != len(ratios) or not datasets:
            raise ValueError(f"{len(datasets)} datasets but {len(ratios)} ratios")
        for i, d in enumerate(datasets):
            if len(d) == 0:
                raise ValueError(f"mixed dataset {i} is empty")
        self.datasets = list(datasets)
        self.ratios = [float(r) for r in ratios]
        self.counts = mix_counts(len(datasets[0]), self.ratios)
        self.starts = np.cumsum([0, *self.counts[:-1]]).tolist()
        self.seed = seed
        self.epoch = 0
        self._perms: dict[tuple[int, int, int], np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def class_names(self) -> list[str]:
        return self.datasets[0].class_names

    def __len__(self) -> int:
        return sum(self.counts)

    def locate(self, index: int, epoch: int) -> tuple[int, int]:
        """(dataset, item) that sample `index` of `epoch` reads."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of a mixed dataset of {len(self)}")
        part = bisect.bisect_right(self.starts, index) - 1
        j = index - self.starts[part]
        if part == 0:  # the main dataset: each item once per epoch (the engine's sampler shuffles)
            return 0, j
        n = len(self.datasets[part])
        key = (epoch, part, j // n)
        if key not in self._perms:  # keep the current epoch's permutations only
            self._perms = {k: v for k, v in self._perms.items() if k[0] == epoch}
            self._perms[key] = np.random.default_rng([self.seed, _PERM_TAG, *key]).permutation(n)
        return part, int(self._perms[key][j % n])

    def __getitem__(self, key: int | tuple[int, int]) -> Clip:
        """The clip of sample `index` in the current epoch, or in `epoch` for a key `(index, epoch)`."""
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        part, item = self.locate(index, epoch)
        return self.datasets[part][(item, epoch)]
