"""Official-parity evaluation: YouTube-VIS/OVIS AP, VIPSeg VPQ/STQ, VSPW mIoU/mVC, COCO PQ, DAVIS J&F.

Each metric has a streaming evaluator (feed videos one at a time, keep per-video statistics only) and a
file-based `evaluate_*` function reading the official formats (videos spread over worker processes).
"""

from vidseg.evaluation.davis import DavisEvaluator, DavisMetrics, evaluate_davis
from vidseg.evaluation.pq import PanopticEvaluator, PanopticMetrics, evaluate_coco_panoptic
from vidseg.evaluation.report import evaluate_task, format_table, write_metrics
from vidseg.evaluation.stq import StqEvaluator, StqMetrics, stq_from_label_maps
from vidseg.evaluation.submission import (
    SubmissionWriter,
    VideoKey,
    VipsegSubmissionWriter,
    VspwSubmissionWriter,
    YtvisSubmissionWriter,
    writer_for,
)
from vidseg.evaluation.vipseg import VipsegEvaluator, VipsegGroundTruth, VipsegMetrics, evaluate_vipseg
from vidseg.evaluation.vpq import VpqEvaluator, VpqMetrics
from vidseg.evaluation.vspw import VspwEvaluator, VspwMetrics, evaluate_vspw
from vidseg.evaluation.ytvis import YtvisEvaluator, YtvisGroundTruth, YtvisMetrics, evaluate_ytvis

__all__ = [
    "DavisEvaluator",
    "DavisMetrics",
    "PanopticEvaluator",
    "PanopticMetrics",
    "StqEvaluator",
    "StqMetrics",
    "SubmissionWriter",
    "VipsegEvaluator",
    "VipsegGroundTruth",
    "VipsegMetrics",
    "VipsegSubmissionWriter",
    "VideoKey",
    "VpqEvaluator",
    "VpqMetrics",
    "VspwEvaluator",
    "VspwMetrics",
    "VspwSubmissionWriter",
    "YtvisEvaluator",
    "YtvisGroundTruth",
    "YtvisMetrics",
    "YtvisSubmissionWriter",
    "evaluate_coco_panoptic",
    "evaluate_davis",
    "evaluate_task",
    "evaluate_vipseg",
    "evaluate_vspw",
    "evaluate_ytvis",
    "format_table",
    "stq_from_label_maps",
    "write_metrics",
    "writer_for",
]
