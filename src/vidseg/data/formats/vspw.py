"""VSPW semantic videos: reader and writer.

Layout (official):

    <root>/data/<video>/origin/<frame>.jpg
    <root>/data/<video>/mask/<frame>.png     single-channel raw labels: 0 = others, 1..124 = classes, 255 = void
    <root>/train.txt, val.txt, test.txt      video names, one per line, each newline-terminated
    <root>/label_num_dic_final.json          {class name: raw label} (optional here)

Training and evaluation use remapped labels (`vidseg.structures.remap_raw_vspw_labels`): others and void →
255, class c → c - 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidseg.data.annotations import ProblemLog, SemanticDataset, SemanticVideo
from vidseg.errors import DataFormatError
from vidseg.io.imageio import image_size, write_jpeg, write_png
from vidseg.io.jsonio import dump_json, load_json, read_lines, write_lines
from vidseg.types import Category

LABELS_FILE = "label_num_dic_final.json"
VOID = 255


def read_vspw_categories(root: Path) -> list[Category]:
    """Categories from `label_num_dic_final.json` (index k = raw label k + 1); 124 generic names if absent."""
    path = root / LABELS_FILE
    if not path.is_file():
        return [Category(k, f"class_{k + 1}", isthing=False) for k in range(124)]
    data = load_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise DataFormatError(path, "expected an object {name: raw label}", field="<json>")
    pairs = sorted((v, k) for k, v in data.items() if v not in (0, VOID))
    if [v for v, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise DataFormatError(path, "raw labels must be 1..K without gaps", field="<json>")
    return [Category(v - 1, name, isthing=False) for v, name in pairs]


def _read_video(root: Path, name: str, need_masks: bool, check_sizes: bool) -> SemanticVideo:
    vdir = root / "data" / name
    origin, mask_dir = vdir / "origin", vdir / "mask"
    if not origin.is_dir():
        raise DataFormatError(origin, "frame folder not found", field=f"video {name}")
    frames = sorted(p for p in origin.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not frames:
        raise DataFormatError(origin, "no frames", field=f"video {name}")
    masks: list[Path] = []
    if need_masks:
        for f in frames:
            m = mask_dir / f"{f.stem}.png"
            if not m.is_file():
                raise DataFormatError(m, "mask file not found", field=f"video {name} frame {f.stem}")
            masks.append(m)
    h, w = image_size(frames[0], field=f"video {name} frame 0")
    if check_sizes:
        for t, (f, m) in enumerate(zip(frames, masks)):
            for p, kind in ((f, "frame"), (m, "mask")):
                if image_size(p, field=f"video {name} {kind} {t}") != (h, w):
                    got = image_size(p)
                    raise DataFormatError(
                        p, f"{kind} is {got[1]}x{got[0]} (WxH) but {w}x{h} expected", field=f"video {name} {kind} {t}"
                    )
    return SemanticVideo(name, frames, masks, h, w)


def read_vspw(
    root: str | Path,
    split: str = "train",
    *,
    skip_bad: bool = False,
    need_masks: bool = True,
    check_sizes: bool = False,
) -> SemanticDataset:
    """Read the videos listed in `<root>/<split>.txt`; frames and masks are read lazily.

    Args:
        need_masks: every frame must have `mask/<stem>.png` (False for the test split).
        check_sizes: read every file header now (otherwise sizes are checked when a file is loaded).
    """
    root = Path(root)
    names = read_lines(root / f"{split}.txt")
    log = ProblemLog(skip_bad)
    videos = []
    for name in names:
        try:
            videos.append(_read_video(root, name, need_masks, check_sizes))
        except DataFormatError as e:
            log.report(e)
    return SemanticDataset(read_vspw_categories(root), videos, root / f"{split}.txt", log.problems)


def write_vspw_video(
    root: str | Path, name: str, frames: list[np.ndarray], raw_masks: list[np.ndarray], stems: list[str] | None = None
) -> SemanticVideo:
    """Write frames ([H, W, 3] uint8) as `origin/*.jpg` and raw label maps ([H, W] uint8) as `mask/*.png`."""
    root = Path(root)
    stems = stems or [f"{t:05d}" for t in range(len(frames))]
    vdir = root / "data" / name
    fpaths, mpaths = [], []
    for stem, frame, mask in zip(stems, frames, raw_masks):
        fpaths.append(vdir / "origin" / f"{stem}.jpg")
        mpaths.append(vdir / "mask" / f"{stem}.png")
        write_jpeg(fpaths[-1], frame)
        write_png(mpaths[-1], mask.astype(np.uint8))
    h, w = frames[0].shape[:2]
    return SemanticVideo(name, fpaths, mpaths, h, w)


def write_vspw_meta(root: str | Path, categories: list[Category], splits: dict[str, list[str]]) -> None:
    """Write `label_num_dic_final.json` (others = 0, class k = k + 1) and the `<split>.txt` lists."""
    root = Path(root)
    labels = {"others": 0, **{c.name: k + 1 for k, c in enumerate(categories)}}
    dump_json(root / LABELS_FILE, labels)
    for split, names in splits.items():
        write_lines(root / f"{split}.txt", names)
