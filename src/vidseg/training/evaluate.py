"""Evaluate a segmenter frame by frame on a VIPSeg-format split through the official metric code path.

Predictions are written as a VIPSeg submission (`pan_pred/` + `pred.json`) and scored with the same
evaluator as `vidseg eval --task vps`. Frames are segmented independently (no tracking), so the 1-frame
window of VPQ is the image PQ of the segmenter; longer windows also measure whether ids happen to agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidseg.config import ExperimentConfig
from vidseg.evaluation.submission import writer_for
from vidseg.evaluation.vipseg import VipsegMetrics, evaluate_vipseg
from vidseg.inference.image import ImagePostprocessor
from vidseg.inference.predict_split import read_split
from vidseg.io.video import resized_shape
from vidseg.models.segmenter import Segmenter


@torch.no_grad()
def predict_vipseg_split(model: Segmenter, config: ExperimentConfig, root: str | Path, split: str,
                         out_dir: str | Path) -> Path:
    """Write the panoptic predictions of every frame of `root`'s `split` as a VIPSeg submission."""
    data = read_split("vps", Path(root) / f"panoptic_gt_VIPSeg_{split}.json")
    categories = data.dataset.categories
    thing = {i for i, c in enumerate(categories) if c.isthing}
    post = ImagePostprocessor.from_config(config.inference, config.model.classification, thing, task="panoptic")
    model.eval()
    with writer_for("vps", out_dir, [c.id for c in categories]) as writer:
        for video in data.dataset.videos:
            for t in range(len(video)):
                image = video.load_frame(t)
                h, w = image.shape[:2]
                rh, rw = resized_shape(h, w, config.inference.min_size)
                if (rh, rw) != (h, w):
                    image = np.asarray(Image.fromarray(image).resize((rw, rh), Image.Resampling.BILINEAR))
                batch = model.frames_to_batch([image])
                output = model(batch)
                d = model.size_divisibility
                padded = (-(-rh // d) * d, -(-rw // d) * d)  # what `normalize` pads the batch to
                result = post(output, padded, [(rh, rw)], [(h, w)], [t])[0]
                writer.add_frame(data.video_key(video), result, data.frame_file(video, t))
    return Path(out_dir)


def evaluate_segmenter_vps(model: Segmenter, config: ExperimentConfig, root: str | Path, split: str,
                           out_dir: str | Path) -> VipsegMetrics:
    """VPQ/STQ metrics (official scales) of per-frame predictions on `root`'s `split`."""
    predict_vipseg_split(model, config, root, split, out_dir)
    return evaluate_vipseg(Path(root) / f"panoptic_gt_VIPSeg_{split}.json", out_dir, workers=1)
