"""The vocabularies every layer shares: task names, classification heads, dataset categories, class info.

Two kinds of task, one name each:

* `VideoTask` — what a video is segmented into, and the submission format written for it: "vis" (instance
  tracks, YouTube-VIS / OVIS), "vps" (panoptic, VIPSeg), "vss" (semantic, VSPW).
* `FrameTask` — what one frame is segmented into: "instance", "panoptic", "semantic" (image
  post-processing, training targets).
* `EVAL_TASKS` — the benchmarks `vidseg eval` scores ("ovis" is a benchmark, not a task of its own).

`inference.task` in a config may name either (`TaskName`); `VIDEO_TASK` and `FRAME_TASK` map any task name
to its video and frame counterpart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

VideoTask = Literal["vis", "vps", "vss"]
FrameTask = Literal["instance", "panoptic", "semantic"]
TaskName = Literal["vis", "vps", "vss", "instance", "panoptic", "semantic"]
VIDEO_TASKS: tuple[VideoTask, ...] = ("vis", "vps", "vss")

# Any task name -> the video task it stands for.
VIDEO_TASK: dict[str, VideoTask] = {
    "vis": "vis", "vps": "vps", "vss": "vss", "instance": "vis", "panoptic": "vps", "semantic": "vss",
}
# Any task name -> the per-frame task its frames need.
FRAME_TASK: dict[str, FrameTask] = {
    "vis": "instance", "vps": "panoptic", "vss": "semantic",
    "instance": "instance", "panoptic": "panoptic", "semantic": "semantic",
}

# What `vidseg eval --task` scores: the video benchmarks ("ovis": YouTube-VIS-format results with OVIS's
# occlusion metrics too) and COCO PQ, DAVIS J&F, Cityscapes-VPS, image mIoU and COCO mask AP.
EVAL_TASKS = ("vis", "ovis", "vps", "vss", "pq", "davis", "cvps", "miou", "coco_ap")
# The eval tasks that score a video submission -> the video task whose submission format they read.
SUBMISSION_TASK: dict[str, VideoTask] = {"vis": "vis", "ovis": "vis", "vps": "vps", "vss": "vss"}

# The class head: softmax over K classes + no-object (Mask2Former), or K independent sigmoids (focal loss).
Classification = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class Category:
    """A dataset category: its id as written in the files, name and thing/stuff flag."""

    id: int
    name: str
    isthing: bool = True
    color: tuple[int, ...] | None = None  # RGB as the file gives it
    supercategory: str | None = None


@dataclass(frozen=True)
class ClassInfo:
    """What the K classes of a model are.

    Attributes:
        names: K class names (overlay labels).
        is_thing: K flags, True for thing classes (VPS merges stuff per class).
        category_ids: K dataset category ids written into submissions (None: the writers' defaults).
    """

    names: tuple[str, ...]
    is_thing: tuple[bool, ...]
    category_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        k = len(self.names)
        if len(self.is_thing) != k or (self.category_ids is not None and len(self.category_ids) != k):
            raise ValueError(f"ClassInfo: {k} names, {len(self.is_thing)} thing flags, "
                             f"{None if self.category_ids is None else len(self.category_ids)} category ids")

    @classmethod
    def generic(cls, num_classes: int) -> ClassInfo:
        """Names "class 0".."class K-1", all things (nothing is known about the classes)."""
        return cls(tuple(f"class {k}" for k in range(num_classes)), (True,) * num_classes)

    @classmethod
    def from_categories(cls, categories: Sequence[Category]) -> ClassInfo:
        """From a dataset's categories sorted by id (their position is the contiguous class index)."""
        return cls(tuple(c.name for c in categories), tuple(bool(c.isthing) for c in categories),
                   tuple(int(c.id) for c in categories))

    def to_json(self) -> dict[str, list | None]:
        """Plain lists, as stored with a checkpoint (`from_json` reads them back)."""
        ids = None if self.category_ids is None else list(self.category_ids)
        return {"names": list(self.names), "is_thing": list(self.is_thing), "category_ids": ids}

    @classmethod
    def from_json(cls, data: dict) -> ClassInfo:
        """Inverse of `to_json`; `ValueError`/`KeyError`/`TypeError` for anything else."""
        ids = data.get("category_ids")
        return cls(tuple(str(n) for n in data["names"]), tuple(bool(t) for t in data["is_thing"]),
                   None if ids is None else tuple(int(i) for i in ids))
