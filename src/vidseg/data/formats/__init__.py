"""One module per on-disk format: ytvis (also OVIS), vipseg, vspw, coco, davis; shared panoptic/json helpers."""

from vidseg.data.formats.coco import read_coco_instances, read_coco_panoptic, write_coco_instances, write_coco_panoptic
from vidseg.data.formats.davis import read_davis, read_davis_sequence, write_davis_sequence
from vidseg.data.formats.vipseg import read_vipseg, write_vipseg
from vidseg.data.formats.vspw import read_vspw, write_vspw_meta, write_vspw_video
from vidseg.data.formats.ytvis import read_ytvis, write_ytvis

__all__ = [
    "read_coco_instances", "read_coco_panoptic", "write_coco_instances", "write_coco_panoptic", "read_davis",
    "read_davis_sequence", "write_davis_sequence", "read_vipseg", "write_vipseg", "read_vspw",
    "write_vspw_meta", "write_vspw_video", "read_ytvis", "write_ytvis",
]
