"""Datasets: official-format readers/writers, the synthetic benchmark, training clips.

* `formats/` — YouTube-VIS/OVIS, VIPSeg, VSPW, COCO, DAVIS readers and writers (typed records).
* `synthetic` — the embedded benchmark (`generate_video`, `write_synthetic_dataset`).
* `sources`, `clips`, `transforms`, `build` — per-frame labels, T-frame clips, clip augmentation.
* `validate`, `convert` — `vidseg data validate` and `vidseg data convert`.
"""

from vidseg.data.annotations import (
    InstanceTrack,
    PanopticDataset,
    PanopticFrame,
    PanopticVideo,
    SegmentInfo,
    SemanticDataset,
    SemanticVideo,
    VideoAnnotation,
    VisDataset,
)
from vidseg.data.build import build_clip_dataset
from vidseg.data.clips import Clip, ClipBatch, ClipDataset, FrameTarget, collate_clips, sample_frame_indices
from vidseg.data.convert import convert_to_ytvis
from vidseg.data.sources import FrameLabels, InstanceSource, PanopticSource, SemanticSource, open_source
from vidseg.data.synthetic import SyntheticVideo, generate_video, write_synthetic_dataset
from vidseg.data.transforms import ClipAugment
from vidseg.data.validate import ValidationReport, validate_dataset
from vidseg.types import Category

__all__ = [
    "Category", "InstanceTrack", "PanopticDataset", "PanopticFrame", "PanopticVideo", "SegmentInfo",
    "SemanticDataset", "SemanticVideo", "VideoAnnotation", "VisDataset", "build_clip_dataset", "Clip",
    "ClipBatch", "ClipDataset", "FrameTarget", "collate_clips", "sample_frame_indices", "convert_to_ytvis",
    "FrameLabels", "InstanceSource", "PanopticSource", "SemanticSource", "open_source", "SyntheticVideo",
    "generate_video", "write_synthetic_dataset", "ClipAugment", "ValidationReport", "validate_dataset",
]
