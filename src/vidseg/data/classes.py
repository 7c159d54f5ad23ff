"""The classes a config's data names: stored with every checkpoint, so a model knows its class names.

Training and `vidseg convert-weights` resolve them once and write them into the checkpoint
(`vidseg.io.checkpoint`); the predictor reads them back, and resolves them here only for a checkpoint
written before vidseg stored them.
"""

from __future__ import annotations

from pathlib import Path

from vidseg.config import DataConfig
from vidseg.errors import DataFormatError
from vidseg.types import Category, ClassInfo


def dataset_classes(data: DataConfig, num_classes: int) -> ClassInfo | None:
    """The classes `data` names: its packaged vocabulary `data.vocabulary` when set, else the categories
    of the dataset files it names when they are on this machine and number `num_classes`; None otherwise
    (a config moved to another machine has no dataset beside it).
    """
    if data.vocabulary:
        from vidseg.data.catalog import vocabulary

        vocab = vocabulary(data.vocabulary)
        return ClassInfo(vocab.names, vocab.is_thing, vocab.category_ids)
    categories = _dataset_categories(data)
    if categories is None or len(categories) != num_classes:
        return None
    return ClassInfo.from_categories(categories)


def _dataset_categories(data: DataConfig) -> list[Category] | None:
    """The categories of the dataset files `data` names (val first), None when none can be read."""
    from vidseg.data.formats.davis import OBJECT
    from vidseg.data.formats.vspw import read_vspw_categories
    from vidseg.data.formats.ytvis import read_categories
    from vidseg.io.jsonio import load_json

    if data.format == "davis":
        return [OBJECT]
    roots = [Path(r) for r in (data.val_root, data.train_root) if r]
    if data.format == "vspw":
        found = [r for r in roots if r.is_dir()]
        return read_vspw_categories(found[0]) if found else None
    candidates = [Path(a) for a in (data.val_annotations, data.train_annotations) if a]
    if data.format == "vipseg":
        candidates += [r / f"panoptic_gt_VIPSeg_{s}.json" for r in roots for s in ("val", "train")]
    for path in candidates:
        if path.is_file():
            try:
                data_json = load_json(path)
                return read_categories(data_json, path) if isinstance(data_json, dict) else None
            except DataFormatError:
                return None
    return None
