"""Conversions between the three COCO-style segmentation encodings.

On disk a segmentation is a polygon list, an uncompressed RLE (`counts` is a list of run lengths, what the
real YouTube-VIS GT uses) or a compressed RLE (`counts` is a string). In memory vidseg keeps the compressed
form with str counts (`vidseg.structures.RLE`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from vidseg.errors import DataFormatError
from vidseg.structures import RLE, decode_rle


def to_compressed_rle(seg: Any, height: int, width: int, path: Path | None, field: str) -> RLE:
    """Any on-disk segmentation -> compressed RLE [height, width]; `DataFormatError` if malformed."""
    try:
        if isinstance(seg, list):
            polys = [p for p in seg if isinstance(p, list)]
            if len(polys) != len(seg) or any(len(p) < 6 or len(p) % 2 for p in polys):
                raise ValueError("polygons must be lists of ≥ 3 (x, y) pairs")
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
        elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
            size = [int(s) for s in seg["size"]]
            if size != [height, width]:
                raise DataFormatError(
                    path, f"RLE size {size} differs from the video size [{height}, {width}]", field=field
                )
            if isinstance(seg["counts"], list):
                if sum(int(c) for c in seg["counts"]) != height * width:
                    raise ValueError("uncompressed RLE counts do not sum to height*width")
                rle = mask_utils.frPyObjects(seg, height, width)
            elif isinstance(seg["counts"], (str, bytes)):
                counts = seg["counts"].encode("ascii") if isinstance(seg["counts"], str) else seg["counts"]
                rle = {"size": size, "counts": counts}
                mask_utils.area(rle)  # fails on corrupt counts before the mask is ever used
            else:
                raise ValueError(f"RLE counts of type {type(seg['counts']).__name__}")
        else:
            raise ValueError(f"unsupported segmentation of type {type(seg).__name__}")
    except DataFormatError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise DataFormatError(path, f"malformed segmentation ({e})", field=field) from e
    counts = rle["counts"]
    return {"size": [height, width], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def to_uncompressed_rle(rle: RLE) -> dict:
    """Compressed RLE -> uncompressed `{"size": [H, W], "counts": [runs...]}` (column-major, zeros first)."""
    h, w = rle["size"]
    flat = decode_rle(rle).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(h), int(w)], "counts": [int(c) for c in counts]}


def rle_bbox(rle: RLE) -> list[float]:
    """[x, y, w, h] of a compressed RLE (zeros for an empty mask)."""
    r = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return [float(v) for v in mask_utils.toBbox(r)]


def mask_bbox(mask: np.ndarray) -> list[float]:
    """[x, y, w, h] of a binary mask [H, W] (COCO convention: w = x_max - x_min + 1)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
