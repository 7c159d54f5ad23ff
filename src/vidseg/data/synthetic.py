"""The synthetic video-segmentation benchmark: generated in memory or written in official formats.

Classes (7, small on purpose so a tiny model can learn them on a CPU):

* things (contiguous index 0..3): `disc` (concentric-ring texture), `box` (rotating, checkered),
  `triangle` (rotating, dotted), `ring` (annulus with a hole, angular stripes). Each object has the class
  base colour jittered per object, so colour alone does not separate classes from the background.
* stuff (semantic index 4..6): `sky` (gradient + clouds), `wall` (bricks), `grass` (noisy strokes), laid out
  as wavy horizontal bands in a world wider than the frame; the camera pans across it.

What makes it non-trivial: 3-6 objects per video whose straight paths pass near a common point, so they
cross and occlude one another (fixed depth order); objects enter from outside the frame and leave it
mid-video; several objects share a class (identity must come from tracking, not class); the ring's hole
shows the background; a crowd cluster of small same-class shapes (`iscrowd` = 1) in some videos; a
screen-fixed noise patch (a "logo") whose pixels are void; pixel noise on every frame.

Label conventions of the in-memory `SyntheticVideo`: semantic index 0..6 over `CLASS_NAMES`, 255 void;
panoptic ids 0 void, stuff `k + 1`, things and crowd `1000 (k + 1) + track_id`. Writers map these to
YouTube-VIS (category ids 1..4, things only, crowd as `iscrowd` tracks, OVIS occlusion levels from the
visible fraction), VIPSeg (category ids 0..6, things first) and VSPW (raw label k + 1, 255 void).

Everything is a function of the seed: the same seed gives byte-identical files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidseg.data.annotations import (
    Category,
    PanopticDataset,
    PanopticFrame,
    PanopticVideo,
    SegmentInfo,
    VideoAnnotation,
    VisDataset,
)
from vidseg.data.formats.panoptic import segments_from_panoptic, write_panoptic_png
from vidseg.data.formats.vipseg import write_vipseg
from vidseg.data.formats.vspw import write_vspw_meta
from vidseg.data.formats.ytvis import make_track, write_ytvis
from vidseg.io.imageio import JPEG_QUALITY, write_png
from vidseg.io.jsonio import dump_json, write_lines
from vidseg.structures import encode_rle

THING_CLASSES = ("disc", "box", "triangle", "ring")
STUFF_CLASSES = ("sky", "wall", "grass")
CLASS_NAMES = THING_CLASSES + STUFF_CLASSES
NUM_THINGS = len(THING_CLASSES)
VOID = 255
FORMATS = ("ytvis", "vipseg", "vspw")

_THING_COLORS = np.array([[210, 60, 50], [60, 100, 210], [225, 195, 40], [150, 60, 195]], np.float32)
_CATEGORY_COLORS = [(220, 20, 60), (0, 80, 230), (250, 200, 0), (150, 40, 200), (135, 206, 235), (150, 80, 60),
                    (60, 170, 60)]


@dataclass
class SyntheticVideo:
    """One generated video with every label the benchmark formats need.

    Attributes:
        frames: [T] [H, W, 3] uint8 RGB.
        instance_masks: [T] [N_t, H, W] bool, the visible pixels of the (non-crowd) objects in frame t.
        track_ids: [T] [N_t] int64 identity (≥ 1), stable over the video.
        class_ids: [T] [N_t] int64 contiguous thing class index (into `class_names`).
        class_names: thing class names.
        semantic: [T] [H, W] uint8 index into `semantic_names` (things then stuff), 255 void.
        panoptic: [T] [H, W] int32 segment ids (0 void; stuff k + 1; things/crowd 1000 (k + 1) + track id).
        segments: [T] segments of `panoptic` (category_id = semantic index, iscrowd, area, bbox).
        crowd_masks: [T] [M_t, H, W] bool crowd regions; crowd_class_ids / crowd_track_ids: [T] [M_t] int64.
        void_masks: [T] [H, W] bool void pixels.
        occlusion: [T] [N_t] float32 fraction of each object's in-frame area hidden by other objects or the
            void patch (leaving through the frame border is not occlusion).
        semantic_names: names of the semantic indices 0..6.
    """

    frames: list[np.ndarray]
    instance_masks: list[np.ndarray]
    track_ids: list[np.ndarray]
    class_ids: list[np.ndarray]
    class_names: list[str]
    semantic: list[np.ndarray]
    panoptic: list[np.ndarray]
    segments: list[list[SegmentInfo]]
    crowd_masks: list[np.ndarray]
    crowd_class_ids: list[np.ndarray]
    crowd_track_ids: list[np.ndarray]
    void_masks: list[np.ndarray]
    occlusion: list[np.ndarray]
    semantic_names: list[str]

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class _Object:
    cls: int
    track_id: int
    radius: float
    color: np.ndarray  # [3] float32
    start: np.ndarray  # [2] (x, y) screen position at t = 0
    velocity: np.ndarray  # [2] px / frame
    angle: float
    spin: float
    period: float  # texture period in px


# --------------------------------------------------------------------------------------------------------
# Rendering


def _shape_and_texture(obj: _Object, t: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Local mask [S, S] bool, texture [S, S, 3] uint8 and the window's top-left (x0, y0) at frame t."""
    cx, cy = obj.start + obj.velocity * t
    r = obj.radius
    half = int(math.ceil(r)) + 1
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    coords = np.arange(-half, half + 1, dtype=np.float32)
    dx = coords[None, :] + (x0 + half - cx)
    dy = coords[:, None] + (y0 + half - cy)
    ang = obj.angle + obj.spin * t
    ca, sa = math.cos(ang), math.sin(ang)
    xr, yr = ca * dx + sa * dy, -sa * dx + ca * dy
    d2 = dx * dx + dy * dy
    p = obj.period
    if obj.cls == 0:  # disc with concentric rings
        mask = d2 <= r * r
        pattern = (np.floor(np.sqrt(d2) / p) % 2).astype(np.float32)
    elif obj.cls == 1:  # rotating checkered box
        s = 0.72 * r
        mask = (np.abs(xr) <= s) & (np.abs(yr) <= s)
        pattern = ((np.floor(xr / p) + np.floor(yr / p)) % 2).astype(np.float32)
    elif obj.cls == 2:  # rotating dotted triangle (circumradius r, inradius r / 2)
        mask = np.ones_like(d2, bool)
        for k in range(3):
            phi = ang + 2 * math.pi * k / 3
            mask &= dx * math.cos(phi) + dy * math.sin(phi) <= r / 2
        u, v = (xr % p) - p / 2, (yr % p) - p / 2
        pattern = (u * u + v * v < (p / 3) ** 2).astype(np.float32)
    else:  # ring with angular stripes
        mask = (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
        pattern = (np.floor((np.arctan2(yr, xr) + math.pi) * 8 / math.pi) % 2).astype(np.float32)
    shade = 0.6 + 0.4 * pattern
    tex = np.clip(obj.color[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)
    return mask, tex, x0, y0


def _paste(
    mask: np.ndarray, x0: int, y0: int, height: int, width: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Frame and window slices of a local window placed at (x0, y0), or None if fully outside."""
    s = mask.shape[0]
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + s, width), min(y0 + s, height)
    if fx0 >= fx1 or fy0 >= fy1:
        return None
    return (slice(fy0, fy1), slice(fx0, fx1)), (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """[H, W] float32 in [0, 1): value noise, bilinear upsampling of a coarse random grid."""
    gh, gw = height // cell + 2, width // cell + 2
    grid = (rng.random((gh, gw)) * 255).astype(np.uint8)
    up = Image.fromarray(grid).resize((gw * cell, gh * cell), Image.Resampling.BILINEAR)
    return np.asarray(up, np.float32)[:height, :width] / 255.0


def _background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """World image [H, W', 3] uint8 and semantic map [H, W'] uint8 (stuff indices 4..6)."""
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)[:, None]
    def wavy(level: float) -> np.ndarray:
        amp = rng.uniform(0.02, 0.06) * height
        freq = rng.uniform(1.0, 3.0) * 2 * math.pi / width
        return level * height + amp * np.sin(xs * freq + rng.uniform(0, 2 * math.pi))

    sky_end = wavy(rng.uniform(0.25, 0.4))
    grass_start = wavy(rng.uniform(0.62, 0.78))
    has_wall = rng.random() < 0.7
    sem = np.full((height, width), NUM_THINGS + 2, np.uint8)  # grass
    if has_wall:
        sem[ys < grass_start[None, :]] = NUM_THINGS + 1
    sem[ys < sky_end[None, :]] = NUM_THINGS
    if not has_wall:
        sem[(ys >= sky_end[None, :]) & (ys < grass_start[None, :])] = NUM_THINGS + 2

    img = np.empty((height, width, 3), np.float32)
    clouds = _smooth_noise(rng, height, width, max(8, height // 6))
    grad = (ys / height)[..., None] * np.float32(1.0)
    sky = np.array([90, 150, 235], np.float32) + grad * np.array([80, 60, 10], np.float32)
    sky = sky + (clouds[..., None] > 0.6) * 70.0
    brick_h = max(4, height // 24)
    brick_w = 2 * brick_h + 2
    row = (np.arange(height)[:, None] // brick_h)
    offs = (row % 2) * (brick_w // 2)
    col = (np.arange(width)[None, :] + offs) // brick_w
    mortar = ((np.arange(height)[:, None] % brick_h) == 0) | (((np.arange(width)[None, :] + offs) % brick_w) == 0)
    brick_jit = ((row * 7919 + col * 104729) % 17).astype(np.float32) / 17.0
    wall = np.array([150, 75, 55], np.float32) + brick_jit[..., None] * 40
    wall[mortar] = (200, 195, 185)
    strokes = rng.random((1, width)).astype(np.float32)
    grass_noise = _smooth_noise(rng, height, width, 3)
    grass = np.array([50, 150, 50], np.float32) + (grass_noise[..., None] - 0.5) * 70 + strokes[..., None] * 25
    img[:] = grass
    img[sem == NUM_THINGS] = np.broadcast_to(sky, (height, width, 3))[sem == NUM_THINGS]
    img[sem == NUM_THINGS + 1] = wall[sem == NUM_THINGS + 1]
    return np.clip(img, 0, 255).astype(np.uint8), sem


def _make_objects(rng: np.random.Generator, num_frames: int, height: int, width: int) -> list[_Object]:
    """3-6 objects whose straight paths pass near a common point (crossings and occlusions)."""
    n = int(rng.integers(3, 7))
    short = min(height, width)
    meet = np.array([width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.65)])
    objs = []
    for k in range(n):
        cls = int(rng.integers(0, NUM_THINGS))
        r = float(rng.uniform(0.07, 0.15) * short)
        # start inside (first two always, so frame 0 has objects) or outside (enters mid-video)
        outside = k >= 2 and rng.random() < 0.4
        if outside:
            side = rng.integers(0, 4)
            pos = rng.uniform(0.1, 0.9)
            start = [
                np.array([-r * 1.5 - rng.uniform(0, 0.3) * width, pos * height]),
                np.array([width + r * 1.5 + rng.uniform(0, 0.3) * width, pos * height]),
                np.array([pos * width, -r * 1.5 - rng.uniform(0, 0.3) * height]),
                np.array([pos * width, height + r * 1.5 + rng.uniform(0, 0.3) * height]),
            ][side]
        else:
            start = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height])
        target = meet + rng.normal(0, 0.08 * short, 2)
        # reach the meeting point somewhere in the middle of the video; some keep going and leave
        t_meet = rng.uniform(0.3, 0.7) * max(num_frames - 1, 1)
        velocity = (target - start) / t_meet * rng.uniform(0.8, 1.6)
        color = np.clip(_THING_COLORS[cls] + rng.uniform(-30, 30, 3), 0, 255).astype(np.float32)
        objs.append(
            _Object(cls, k + 1, r, color, start, velocity, float(rng.uniform(0, 2 * math.pi)),
                    float(rng.uniform(-0.08, 0.08)), float(max(3.0, r / rng.uniform(2.0, 3.5))))
        )
    return objs


def _crowd_layer(
    rng: np.random.Generator, height: int, width: int
) -> tuple[int, np.ndarray, np.ndarray] | None:
    """A cluster of small same-class shapes in world coordinates: (class, mask [H, W'], image [H, W', 3])."""
    if rng.random() >= 0.6:
        return None
    cls = int(rng.integers(0, NUM_THINGS))
    short = min(height, width)
    center = np.array([rng.uniform(0.15, 0.85) * width, rng.uniform(0.3, 0.8) * height])
    mask = np.zeros((height, width), bool)
    img = np.zeros((height, width, 3), np.uint8)
    for _ in range(int(rng.integers(6, 12))):
        r = float(rng.uniform(0.025, 0.045) * short)
        color = np.clip(_THING_COLORS[cls] + rng.uniform(-30, 30, 3), 0, 255).astype(np.float32)
        pos = center + rng.normal(0, 0.07 * short, 2)
        obj = _Object(cls, 0, r, color, pos, np.zeros(2), float(rng.uniform(0, 6.3)), 0.0, max(2.0, r / 2))
        m, tex, x0, y0 = _shape_and_texture(obj, 0)
        sl = _paste(m, x0, y0, height, width)
        if sl is None:
            continue
        (fs, ls) = sl
        mm = m[ls]
        mask[fs] |= mm
        img[fs][mm] = tex[ls][mm]
    if not mask.any():
        return None
    return cls, mask, img


def generate_video(seed: int, num_frames: int, height: int, width: int) -> SyntheticVideo:
    """Generate one synthetic video deterministically from `seed` (see the module docstring)."""
    if num_frames < 1 or height < 16 or width < 16:
        raise ValueError(f"need ≥ 1 frame of at least 16x16, got {num_frames} frames of {height}x{width}")
    rng = np.random.default_rng(seed)
    pan_speed = rng.uniform(-1.5, 1.5) * width / 320
    pan_total = int(math.ceil(abs(pan_speed) * (num_frames - 1))) + 1
    world_w = width + pan_total
    bg_img, bg_sem = _background(rng, height, world_w)
    crowd = _crowd_layer(rng, height, world_w)
    objects = _make_objects(rng, num_frames, height, width)
    crowd_tid = len(objects) + 1
    has_logo = rng.random() < 0.7
    lh, lw = max(4, int(0.1 * height)), max(4, int(0.14 * width))
    ly = int(rng.integers(0, 2)) * (height - lh - 2) + 1
    lx = int(rng.integers(0, 2)) * (width - lw - 2) + 1
    stuff_lut = np.zeros(256, np.int32)
    stuff_lut[NUM_THINGS : len(CLASS_NAMES)] = np.arange(NUM_THINGS, len(CLASS_NAMES)) + 1

    out = SyntheticVideo([], [], [], [], list(THING_CLASSES), [], [], [], [], [], [], [], [], list(CLASS_NAMES))
    for t in range(num_frames):
        ox = int(round(pan_total - 1 - pan_speed * t)) if pan_speed > 0 else int(round(-pan_speed * t))
        ox = min(max(ox, 0), pan_total - 1)
        img = bg_img[:, ox : ox + width].copy()
        sem = bg_sem[:, ox : ox + width].copy()
        owner = np.full((height, width), -1, np.int16)  # index into `objects`, len(objects) = crowd
        if crowd is not None:
            cm = crowd[1][:, ox : ox + width]
            img[cm] = crowd[2][:, ox : ox + width][cm]
            sem[cm] = crowd[0]
            owner[cm] = len(objects)
        full_area = np.zeros(len(objects), np.int64)
        for k, obj in enumerate(objects):
            m, tex, x0, y0 = _shape_and_texture(obj, t)
            sl = _paste(m, x0, y0, height, width)
            if sl is None:
                continue
            fs, ls = sl
            mm = m[ls]
            full_area[k] = int(mm.sum())
            img[fs][mm] = tex[ls][mm]
            sem[fs][mm] = obj.cls
            owner[fs][mm] = k
        void = np.zeros((height, width), bool)
        if has_logo:
            void[ly : ly + lh, lx : lx + lw] = True
            img[void] = rng.integers(0, 256, (int(void.sum()), 3), dtype=np.uint8)
            sem[void] = VOID
            owner[void] = -1
        noise = rng.integers(-5, 6, img.shape, dtype=np.int16)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)

        pan = stuff_lut[sem]
        masks, tids, cids, occ = [], [], [], []
        for k, obj in enumerate(objects):
            m = owner == k
            area = int(m.sum())
            if area == 0:
                continue
            pan[m] = 1000 * (obj.cls + 1) + obj.track_id
            masks.append(m)
            tids.append(obj.track_id)
            cids.append(obj.cls)
            occ.append(1.0 - area / max(full_area[k], 1))
        cmasks, ccls, ctids = [], [], []
        if crowd is not None:
            m = owner == len(objects)
            if m.any():
                pan[m] = 1000 * (crowd[0] + 1) + crowd_tid
                cmasks.append(m)
                ccls.append(crowd[0])
                ctids.append(crowd_tid)
        category_of = {1000 * (c + 1) + tid: c for c, tid in zip(cids + ccls, tids + ctids)}
        category_of.update({k + 1: k for k in range(NUM_THINGS, len(CLASS_NAMES))})
        crowd_ids = {1000 * (c + 1) + tid for c, tid in zip(ccls, ctids)}

        out.frames.append(img)
        out.instance_masks.append(np.stack(masks) if masks else np.zeros((0, height, width), bool))
        out.track_ids.append(np.asarray(tids, np.int64))
        out.class_ids.append(np.asarray(cids, np.int64))
        out.semantic.append(sem)
        out.panoptic.append(pan.astype(np.int32))
        out.segments.append(segments_from_panoptic(pan, category_of, crowd_ids))
        out.crowd_masks.append(np.stack(cmasks) if cmasks else np.zeros((0, height, width), bool))
        out.crowd_class_ids.append(np.asarray(ccls, np.int64))
        out.crowd_track_ids.append(np.asarray(ctids, np.int64))
        out.void_masks.append(void)
        out.occlusion.append(np.asarray(occ, np.float32))
    return out


# --------------------------------------------------------------------------------------------------------
# Writing the benchmark in official formats


def video_seed(seed: int, index: int) -> int:
    """Seed of video `index` of a dataset generated with `seed` (independent streams per video)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def split_names(num_videos: int) -> dict[str, list[int]]:
    """Video indices per split: the last quarter (at least 1 when there are ≥ 2 videos) is `val`."""
    n_val = 0 if num_videos < 2 else max(1, num_videos // 4)
    return {"train": list(range(num_videos - n_val)), "val": list(range(num_videos - n_val, num_videos))}


def _occlusion_level(hidden: float) -> str:
    if hidden < 0.05:
        return "no_occlusion"
    return "slight_occlusion" if hidden < 0.5 else "severe_occlusion"


def _jpeg_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _ytvis_video(video: SyntheticVideo, video_id: int, name: str, first_ann_id: int, root: Path) -> VideoAnnotation:
    """Tracks of one video: things by track id (then the crowd track), areas/boxes from the masks."""
    t_total = len(video)
    h, w = video.frames[0].shape[:2]
    files = [f"{name}/{t:05d}.jpg" for t in range(t_total)]
    per_track: dict[int, dict] = {}
    for t in range(t_total):
        items = [
            (tid, cls, m, _occlusion_level(float(o)), 0)
            for tid, cls, m, o in zip(video.track_ids[t], video.class_ids[t], video.instance_masks[t],
                                      video.occlusion[t])
        ]
        items += [  # OVIS's occ_score divides by the number of non-None levels, so crowd gets one too
            (tid, cls, m, "no_occlusion", 1)
            for tid, cls, m in zip(video.crowd_track_ids[t], video.crowd_class_ids[t], video.crowd_masks[t])
        ]
        for tid, cls, m, occ, crowd in items:
            e = per_track.setdefault(int(tid), {"cls": int(cls), "crowd": crowd, "rles": [None] * t_total,
                                                "occ": [None] * t_total})
            e["rles"][t] = encode_rle(m)
            e["occ"][t] = occ
    tracks = []
    for k, (_, e) in enumerate(sorted(per_track.items())):
        tracks.append(make_track(first_ann_id + k, e["cls"] + 1, e["rles"], e["crowd"], e["occ"]))
    return VideoAnnotation(video_id, name, files, h, w, tracks, root)


def _vipseg_video(video: SyntheticVideo, name: str, image_root: Path, mask_root: Path) -> PanopticVideo:
    h, w = video.frames[0].shape[:2]
    frames = [
        PanopticFrame(f"{t:05d}", f"{name}/{t:05d}.jpg", f"{name}/{t:05d}.png", video.segments[t])
        for t in range(len(video))
    ]
    return PanopticVideo(name, frames, h, w, image_root, mask_root)


def write_synthetic_dataset(
    out_dir: str | Path,
    num_videos: int,
    num_frames: int,
    height: int,
    width: int,
    formats: Iterable[str] = FORMATS,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Generate `num_videos` videos and write them in the requested formats under `out_dir`.

    Layout:
        ytvis/<split>/JPEGImages/<video>/<t>.jpg, ytvis/<split>/instances.json
        vipseg/images/<video>/<t>.jpg, vipseg/panomasksRGB/<video>/<t>.png,
            vipseg/panoptic_gt_VIPSeg_<split>.json, vipseg/<split>.txt
        vspw/data/<video>/origin/<t>.jpg, vspw/data/<video>/mask/<t>.png, vspw/<split>.txt,
            vspw/label_num_dic_final.json

    Returns:
        format name -> its root folder.
    """
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown synthetic format(s) {unknown}; choose from {list(FORMATS)}")
    out = Path(out_dir)
    roots = {f: out / f for f in formats}
    splits = {s: idx for s, idx in split_names(num_videos).items() if idx}
    thing_cats = [Category(k + 1, n, True, _CATEGORY_COLORS[k]) for k, n in enumerate(THING_CLASSES)]
    pan_cats = [Category(k, n, k < NUM_THINGS, _CATEGORY_COLORS[k]) for k, n in enumerate(CLASS_NAMES)]
    for split, indices in splits.items():
        ytvis = VisDataset(thing_cats, [])
        vipseg = PanopticDataset(pan_cats, [])
        next_ann = 1
        for i in indices:
            name = f"video_{i:04d}"
            video = generate_video(video_seed(seed, i), num_frames, height, width)
            jpegs = [_jpeg_bytes(f) for f in video.frames]
            if "ytvis" in formats:
                root = roots["ytvis"] / split / "JPEGImages"
                for t, data in enumerate(jpegs):
                    _write_bytes(root / name / f"{t:05d}.jpg", data)
                v = _ytvis_video(video, i + 1, name, next_ann, root)
                next_ann += len(v.instances)
                ytvis.videos.append(v)
            if "vipseg" in formats:
                img_root, mask_root = roots["vipseg"] / "images", roots["vipseg"] / "panomasksRGB"
                for t, data in enumerate(jpegs):
                    _write_bytes(img_root / name / f"{t:05d}.jpg", data)
                    write_panoptic_png(mask_root / name / f"{t:05d}.png", video.panoptic[t])
                vipseg.videos.append(_vipseg_video(video, name, img_root, mask_root))
            if "vspw" in formats:
                vdir = roots["vspw"] / "data" / name
                for t, data in enumerate(jpegs):
                    _write_bytes(vdir / "origin" / f"{t:05d}.jpg", data)
                    raw = np.where(video.semantic[t] == VOID, VOID, video.semantic[t].astype(np.int32) + 1)
                    write_png(vdir / "mask" / f"{t:05d}.png", raw.astype(np.uint8))
            if log is not None:
                log(f"{split}: {name} ({num_frames} frames)")
        if "ytvis" in formats:
            write_ytvis(ytvis, roots["ytvis"] / split / "instances.json")
        if "vipseg" in formats:
            write_vipseg(vipseg, roots["vipseg"] / f"panoptic_gt_VIPSeg_{split}.json")
            write_lines(roots["vipseg"] / f"{split}.txt", [str(v.video_id) for v in vipseg.videos])
    if "vspw" in formats:
        stuff_cats = [Category(k, n, False) for k, n in enumerate(CLASS_NAMES)]
        write_vspw_meta(
            roots["vspw"], stuff_cats, {s: [f"video_{i:04d}" for i in idx] for s, idx in splits.items()}
        )
    dump_json(
        out / "synthetic.json",
        {"videos": num_videos, "frames": num_frames, "height": height, "width": width, "seed": seed,
         "formats": formats, "thing_classes": list(THING_CLASSES), "stuff_classes": list(STUFF_CLASSES)},
    )
    return roots
