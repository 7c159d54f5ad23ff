"""Class vocabularies of the standard datasets, shipped as data (`<name>.json` next to this module).

Each vocabulary lists its classes in contiguous-class order (the order a model's class logits use) with the
dataset's own category id and thing/stuff flag, e.g. for giving an imported official checkpoint its class
names (`vidseg convert-weights --dataset NAME`). The `coco_to_*` files hold the COCO → YouTube-VIS / OVIS
category maps used for COCO joint training (VITA, MinVIS, CTVIS, DVIS++).

    >>> vocabulary("ytvis19").names[0]
    'person'
    >>> class_map("coco_to_ytvis19")[3]   # COCO car -> YouTube-VIS 2019 sedan
    6
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from vidseg.errors import ConfigError

__all__ = ["DatasetVocabulary", "class_map", "class_map_names", "vocabulary", "vocabulary_names"]

_MAP_PREFIX = "coco_to_"


@dataclass(frozen=True)
class DatasetVocabulary:
    """One dataset's classes in contiguous order: index k is class k of a model trained on it."""

    name: str
    names: tuple[str, ...]
    is_thing: tuple[bool, ...]
    category_ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_things(self) -> int:
        """How many classes are things."""
        return sum(self.is_thing)

    def contiguous_id(self, category_id: int) -> int:
        """Contiguous class index of a dataset category id (`KeyError` if the id is not in the vocabulary)."""
        try:
            return self.category_ids.index(category_id)
        except ValueError:
            raise KeyError(category_id) from None


def _json_names() -> list[str]:
    root = resources.files(__name__)
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def vocabulary_names() -> list[str]:
    """Names accepted by `vocabulary`, sorted."""
    return [n for n in _json_names() if not n.startswith(_MAP_PREFIX)]


def class_map_names() -> list[str]:
    """Names accepted by `class_map`, sorted (e.g. `coco_to_ytvis19`)."""
    return [n for n in _json_names() if n.startswith(_MAP_PREFIX)]


def _load(name: str, known: list[str], kind: str) -> dict[str, Any]:
    if name not in known:
        raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(known)}")
    return json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8"))


@cache
def vocabulary(name: str) -> DatasetVocabulary:
    """The class vocabulary of dataset `name` (one of `vocabulary_names()`); `ConfigError` if unknown."""
    cats = _load(name, vocabulary_names(), "dataset vocabulary")["categories"]
    return DatasetVocabulary(
        name=name,
        names=tuple(str(c["name"]) for c in cats),
        is_thing=tuple(bool(c["isthing"]) for c in cats),
        category_ids=tuple(int(c["id"]) for c in cats),
    )


def class_map(name: str) -> dict[int, int]:
    """A COCO category id -> dataset category id map; `ConfigError` if unknown.

    `name` is one of `class_map_names()` (`"coco_to_ovis"`) or its target dataset alone (`"ovis"`). COCO classes
    absent from the map have no counterpart in the target dataset and are dropped in joint training.
    """
    known = class_map_names()
    if name not in known and _MAP_PREFIX + name in known:
        name = _MAP_PREFIX + name
    data = _load(name, known, "class map")
    return {int(k): int(v) for k, v in data["map"].items()}
