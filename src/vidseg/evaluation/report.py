"""One entry point per task for the CLI (`vidseg eval`), and readable tables of the results."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

from vidseg.errors import DataFormatError
from vidseg.evaluation.cityscapes_vps import evaluate_cityscapes_vps
from vidseg.evaluation.coco_ap import CocoApMetrics, evaluate_coco_ap
from vidseg.evaluation.davis import DavisMetrics, evaluate_davis
from vidseg.evaluation.image_miou import ImageMiouMetrics, evaluate_image_miou
from vidseg.evaluation.pq import PanopticMetrics, evaluate_coco_panoptic
from vidseg.evaluation.vipseg import VipsegMetrics, evaluate_vipseg
from vidseg.evaluation.vpq import VpqMetrics
from vidseg.evaluation.vspw import VspwMetrics, evaluate_vspw
from vidseg.evaluation.ytvis import YtvisMetrics, evaluate_ytvis
from vidseg.types import EVAL_TASKS

Metrics = (YtvisMetrics | VipsegMetrics | VspwMetrics | PanopticMetrics | DavisMetrics | VpqMetrics | ImageMiouMetrics
           | CocoApMetrics)


def _results(pred: Path) -> Path | list:
    """A YouTube-VIS prediction: `results.json`, a folder holding it, or a submission zip (read in memory)."""
    if pred.is_dir():
        pred = pred / "results.json"
    if pred.suffix != ".zip":
        return pred
    try:
        with zipfile.ZipFile(pred) as z:
            names = [n for n in z.namelist() if n.endswith(".json")]
            if not names:
                raise DataFormatError(pred, "no .json inside the zip")
            return json.loads(z.read(names[0]))
    except (zipfile.BadZipFile, json.JSONDecodeError, FileNotFoundError) as e:
        raise DataFormatError(pred, f"cannot read the submission zip: {e}") from e


def evaluate_task(
    task: str, gt: str | Path, pred: str | Path, workers: int | None = None, vspw_raw_labels: bool = True,
    reduce_zero_label: bool = False,
) -> Metrics:
    """Run the official-parity evaluation of `task` on files (`reduce_zero_label`: miou, ADE20K GT)."""
    gt, pred = Path(gt), Path(pred)
    if task in ("vis", "ovis"):
        return evaluate_ytvis(gt, _results(pred), ovis=task == "ovis", workers=workers)
    if task == "vps":
        return evaluate_vipseg(gt, pred, workers=workers)
    if task == "vss":
        return evaluate_vspw(gt, pred, raw_gt_labels=vspw_raw_labels, workers=workers)
    if task == "pq":
        return evaluate_coco_panoptic(gt, pred, workers=workers)
    if task == "davis":
        return evaluate_davis(gt, pred, workers=workers)
    if task == "cvps":
        return evaluate_cityscapes_vps(gt, pred, workers=workers)
    if task == "miou":
        return evaluate_image_miou(gt, pred, reduce_zero_label=reduce_zero_label, workers=workers)
    if task == "coco_ap":
        return evaluate_coco_ap(gt, pred)
    raise ValueError(f"unknown task {task!r}; one of {', '.join(EVAL_TASKS)}")


def metrics_json(metrics: Metrics) -> str:
    """Full-precision JSON (floats as `repr`, NaN as null)."""
    return json.dumps(metrics.to_json(), indent=2, allow_nan=False)


def write_metrics(metrics: Metrics, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(metrics_json(metrics) + "\n", encoding="utf-8")


def _fmt(x: Any, scale: float = 1.0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "   nan"
    if x == -1:  # the official "no GT in this setting"
        return "     -"
    return f"{x * scale:6.2f}"


def _rows(title: str, rows: list[tuple[str, list[Any]]], header: list[str]) -> list[str]:
    width = max([len(title)] + [len(r[0]) for r in rows])
    out = [f"{title:<{width}} | " + " ".join(f"{h:>6}" for h in header), "-" * (width + 3 + 7 * len(header))]
    out += [f"{name:<{width}} | " + " ".join(vals) for name, vals in rows]
    return out


def format_table(metrics: Metrics) -> str:
    """Overall numbers, then one row per class (x100 where the official scale is 0-1)."""
    lines: list[str] = []
    if isinstance(metrics, YtvisMetrics):
        keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"]
        vals = [getattr(metrics, k) for k in keys]
        if metrics.occlusion:
            keys += list(metrics.occlusion)
            vals += list(metrics.occlusion.values())
        lines += _rows("YouTube-VIS (x100)", [("all", [_fmt(v, 100) for v in vals])], keys)
        lines += [""] + _rows("class", [(k, [_fmt(v, 100)]) for k, v in metrics.per_class_ap.items()], ["AP"])
    elif isinstance(metrics, VipsegMetrics):
        if metrics.vpq is not None:
            v = metrics.vpq
            rows = [
                (f"nframes={w.nframes}", [_fmt(w.pq_all, 100), _fmt(w.pq_thing, 100), _fmt(w.pq_stuff, 100)])
                for w in v.windows
            ]
            rows.append(("VPQ (mean)", [_fmt(v.VPQ), _fmt(v.VPQ_thing), _fmt(v.VPQ_stuff)]))
            lines += _rows("VIPSeg VPQ (0-100)", rows, ["VPQ", "thing", "stuff"])
            lines += [""] + _rows("class", [(k, [_fmt(x)]) for k, x in v.per_class_vpq().items()], ["VPQ"])
        if metrics.stq is not None:
            s = metrics.stq
            lines += [""] + _rows(
                "VIPSeg STQ (x100)",
                [("all", [_fmt(s.STQ, 100), _fmt(s.AQ, 100), _fmt(s.SQ, 100)])],
                ["STQ", "AQ", "SQ"],
            )
    elif isinstance(metrics, VspwMetrics):
        lines += _rows(
            "VSPW (x100)",
            [("all", [_fmt(metrics.mIoU, 100), _fmt(metrics.mVC8, 100), _fmt(metrics.mVC16, 100)])],
            ["mIoU", "mVC8", "mVC16"],
        )
        rows = [(str(c), [_fmt(x, 100)]) for c, x in enumerate(metrics.per_class_iou) if not math.isnan(x)]
        lines += [""] + _rows("class", rows, ["IoU"])
    elif isinstance(metrics, PanopticMetrics):
        rows = [
            ("All", [_fmt(metrics.PQ, 100), _fmt(metrics.SQ, 100), _fmt(metrics.RQ, 100)]),
            ("Things", [_fmt(metrics.things.pq, 100), _fmt(metrics.things.sq, 100), _fmt(metrics.things.rq, 100)]),
            ("Stuff", [_fmt(metrics.stuff.pq, 100), _fmt(metrics.stuff.sq, 100), _fmt(metrics.stuff.rq, 100)]),
        ]
        lines += _rows("COCO panoptic (x100)", rows, ["PQ", "SQ", "RQ"])
        lines += [""] + _rows(
            "class",
            [(k, [_fmt(c.pq, 100), _fmt(c.sq, 100), _fmt(c.rq, 100)]) for k, c in metrics.per_class.items()],
            ["PQ", "SQ", "RQ"],
        )
    elif isinstance(metrics, VpqMetrics):  # Cityscapes-VPS
        rows = [
            (f"k={(w.nframes - 1) * 5}", [_fmt(w.pq_all, 100), _fmt(w.pq_thing, 100), _fmt(w.pq_stuff, 100)])
            for w in metrics.windows
        ]
        rows.append(("VPQ (mean)", [_fmt(metrics.VPQ), _fmt(metrics.VPQ_thing), _fmt(metrics.VPQ_stuff)]))
        lines += _rows("Cityscapes-VPS VPQ (0-100)", rows, ["VPQ", "thing", "stuff"])
        lines += [""] + _rows("class", [(k, [_fmt(x)]) for k, x in metrics.per_class_vpq().items()], ["VPQ"])
    elif isinstance(metrics, ImageMiouMetrics):
        lines += _rows("image mIoU (x100)", [("all", [_fmt(x, 100) for x in (metrics.mIoU, metrics.fwIoU,
                                                                              metrics.mACC, metrics.pACC)])],
                       ["mIoU", "fwIoU", "mACC", "pACC"])
        lines += [""] + _rows("class", [(str(c), [_fmt(x, 100)]) for c, x in metrics.per_class_iou.items()], ["IoU"])
    elif isinstance(metrics, CocoApMetrics):
        keys = list(metrics.stats)[:6]
        lines += _rows("COCO mask AP (x100)", [("all", [_fmt(metrics.stats[k], 100) for k in keys])], keys)
        lines += [""] + _rows("class", [(k, [_fmt(v, 100)]) for k, v in metrics.per_class_ap.items()], ["AP"])
    elif isinstance(metrics, DavisMetrics):
        m = metrics
        lines += _rows(
            "DAVIS (x100)",
            [
                (
                    "all",
                    [
                        _fmt(x, 100)
                        for x in (m.JF_mean, m.J_mean, m.J_recall, m.J_decay, m.F_mean, m.F_recall, m.F_decay)
                    ],
                )
            ],
            ["J&F", "J-M", "J-R", "J-D", "F-M", "F-R", "F-D"],
        )
        lines += [""] + _rows(
            "object", [(k, [_fmt(o.J[0], 100), _fmt(o.F[0], 100)]) for k, o in m.per_object.items()], ["J-M", "F-M"]
        )
    return "\n".join(lines)
