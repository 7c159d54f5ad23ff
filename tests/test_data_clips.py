"""Clip sampling, clip-consistent augmentation, targets per task, pseudo-videos, collation, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vidseg.config import DataConfig
from vidseg.data.annotations import VideoAnnotation, VisDataset
from vidseg.data.build import build_clip_dataset
from vidseg.data.clips import ClipDataset, collate_clips, sample_frame_indices
from vidseg.data.formats.vipseg import read_vipseg
from vidseg.data.formats.vspw import read_vspw
from vidseg.data.formats.ytvis import make_track, read_ytvis
from vidseg.data.sources import InstanceSource, PanopticSource, SemanticSource, open_source
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.data.transforms import AugParams, ClipAugment, apply_image, apply_masks, jitter_color
from vidseg.errors import ConfigError
from vidseg.io.imageio import write_jpeg
from vidseg.structures import encode_rle
from vidseg.types import Category


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("clips")
    write_synthetic_dataset(out, 4, 10, 64, 96, seed=2)
    return out


def _ytvis(synth) -> InstanceSource:
    return InstanceSource(read_ytvis(synth / "ytvis" / "train" / "instances.json"))


def test_sample_frame_indices():
    rng = np.random.default_rng(0)
    frames = list(range(0, 100, 5))
    for _ in range(20):
        c = sample_frame_indices(rng, frames, 4, "consecutive")
        assert c == list(range(c[0], c[0] + 20, 5))
        r = sample_frame_indices(rng, frames, 4, "random", sampling_range=3)
        assert r == sorted(r) and len(set(r)) == 4 and r[-1] - r[0] <= 6 * 5
    short = sample_frame_indices(rng, [7, 9], 5, "random")  # short video: frames repeat, order kept
    assert len(short) == 5 and short == sorted(short) and set(short) == {7, 9}
    rev = sample_frame_indices(rng, frames, 4, "consecutive", reverse_prob=1.0)
    assert rev == sorted(rev, reverse=True)


def test_aug_keeps_masks_in_sync():
    rng = np.random.default_rng(1)
    mask = np.zeros((60, 80), bool)
    mask[10:40, 20:70] = True
    image = np.where(mask[..., None], 255, 0).astype(np.uint8).repeat(3, 2)
    aug = ClipAugment(min_sizes=(45, 90), max_size=200, crop_size=(40, 50), flip_prob=0.5)
    for _ in range(10):
        p = aug.sample(rng, 60, 80)
        im, m = apply_image(image, p), apply_masks(mask[None], p)[0]
        assert im.shape[:2] == m.shape == (min(40, p.size[0]), min(50, p.size[1]))
        assert ((im[..., 0] > 127) == m).mean() > 0.97
    flipped = apply_masks(mask[None], AugParams((60, 80), None, True))[0]
    np.testing.assert_array_equal(flipped, mask[:, ::-1])


def test_instance_clips_have_stable_ids_and_presence(synth):
    ds = ClipDataset(_ytvis(synth), 4, "instance", sampling="consecutive",
                     augment=ClipAugment((48,), 1000, (40, 56), 0.5), seed=3)
    clip = ds[0]
    assert clip.frames.shape == (4, 3, 40, 56) and clip.frames.dtype == torch.uint8
    ids = clip.targets[0].instance_ids
    assert len(ids) > 0
    for tg in clip.targets:
        assert torch.equal(tg.instance_ids, ids)
        assert tg.masks.shape == (len(ids), 40, 56) and tg.masks.dtype == torch.bool
        assert torch.equal(tg.present, tg.masks.flatten(1).any(1))
        assert (tg.class_ids >= 0).all() and (tg.class_ids < 4).all()
    assert clip.frame_indices == list(range(clip.frame_indices[0], clip.frame_indices[0] + 4))
    again = ds[0]
    assert torch.equal(again.frames, clip.frames)  # deterministic per (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[0].frames, clip.frames) or ds[0].frame_indices != clip.frame_indices


def test_instance_targets_match_annotations_without_augmentation(synth):
    source = _ytvis(synth)
    clip = ClipDataset(source, 3, "instance", sampling="consecutive")[1]
    video = source.dataset.videos[1]
    for t, tg in zip(clip.frame_indices, clip.targets):
        for k, tid in enumerate(tg.instance_ids.tolist()):
            track = next(tr for tr in video.instances if tr.id == tid)
            assert track.iscrowd == 0
            np.testing.assert_array_equal(tg.masks[k].numpy(), track.mask(t, video.height, video.width))
        crowd = [tr for tr in video.instances if tr.iscrowd]
        for tr in crowd:  # crowd pixels are ignored, not targets
            assert tg.ignore.numpy()[tr.mask(t, video.height, video.width)].all()


def test_panoptic_and_semantic_targets(synth):
    pan = PanopticSource(read_vipseg(synth / "vipseg" / "panoptic_gt_VIPSeg_train.json"))
    clip = ClipDataset(pan, 2, "panoptic", sampling="consecutive")[0]
    tg = clip.targets[0]
    classes = set(tg.class_ids.tolist())
    assert classes & {4, 5, 6} and classes & {0, 1, 2, 3}  # stuff and things
    covered = tg.masks.any(0) | tg.ignore
    assert covered.all()  # every pixel is a segment, void or crowd
    inst = ClipDataset(pan, 2, "instance", sampling="consecutive")[0]
    assert set(inst.targets[0].class_ids.tolist()) <= {0, 1, 2, 3}

    sem = SemanticSource(read_vspw(synth / "vspw", "train"))
    clip = ClipDataset(sem, 2, "semantic", sampling="consecutive")[0]
    raw = sem.dataset.videos[0].load_mask(clip.frame_indices[0])
    tg = clip.targets[0]
    assert torch.equal(tg.instance_ids, tg.class_ids)
    for k, c in enumerate(tg.class_ids.tolist()):
        np.testing.assert_array_equal(tg.masks[k].numpy(), raw == c + 1)
    np.testing.assert_array_equal(tg.ignore.numpy(), raw == 255)


def test_coco_pseudo_video(tmp_path):
    h, w = 48, 64
    img = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), bool)
    mask[15:35, 20:44] = True
    img[mask] = 200
    write_jpeg(tmp_path / "im.jpg", img)
    video = VideoAnnotation(1, "im", ["im.jpg"], h, w, [make_track(5, 1, [encode_rle(mask)])], tmp_path)
    source = InstanceSource(VisDataset([Category(1, "thing")], [video]))
    clip = ClipDataset(source, 5, "instance", seed=4)[0]  # 1-frame video -> pseudo-video automatically
    assert clip.frames.shape == (5, 3, h, w) and clip.frame_indices == [0] * 5
    masks = torch.stack([tg.masks[0] for tg in clip.targets])
    assert all(torch.equal(tg.instance_ids, torch.tensor([5])) for tg in clip.targets)
    assert not all(torch.equal(masks[0], m) for m in masks[1:])  # the object moves
    for t in range(5):
        bright = clip.frames[t, 0] > 100
        assert (bright == masks[t]).float().mean() > 0.97  # pixels and masks moved together


def test_collate_pads_and_ignores_padding(synth):
    ds = ClipDataset(_ytvis(synth), 2, "instance", augment=ClipAugment((40, 56), 1000), seed=0)
    batch = collate_clips([ds[0], ds[1], ds[2]], size_divisibility=32)
    b, t, c, hp, wp = batch.frames.shape
    assert (b, t, c) == (3, 2, 3) and hp % 32 == 0 and wp % 32 == 0
    for i in range(3):
        h, w = batch.image_sizes[i].tolist()
        assert batch.padding[i, :h, :w].logical_not().all() and batch.padding[i].sum() == hp * wp - h * w
        for tg in batch.targets[i]:
            assert tg.masks.shape[1:] == (hp, wp) and tg.ignore[h:, :].all() and not tg.masks[:, h:, :].any()


def test_dataloader_workers_match_single_process(synth):
    ds = ClipDataset(open_source("vspw", synth / "vspw", split="train"), 3, "semantic",
                     augment=ClipAugment((48, 56), 1000, (40, 40), 0.5), seed=1)
    kwargs = {"batch_size": 2, "collate_fn": collate_clips, "shuffle": False}
    single = list(DataLoader(ds, num_workers=0, **kwargs))
    multi = list(DataLoader(ds, num_workers=2, **kwargs))
    assert len(single) == len(multi) == 2
    for a, b in zip(single, multi):
        assert torch.equal(a.frames, b.frames)
        assert all(torch.equal(x.masks, y.masks) for xs, ys in zip(a.targets, b.targets) for x, y in zip(xs, ys))


def test_build_clip_dataset_from_config(synth):
    cfg = DataConfig(format="vipseg", train_root=str(synth / "vipseg"), val_root=str(synth / "vipseg"),
                     num_frames=3, min_size=(40,), max_size=80, crop_size=(32,), flip_prob=0.5)
    train = build_clip_dataset(cfg, "panoptic", train=True)
    clip = train[0]
    assert clip.frames.shape == (3, 3, 32, 32) and train.class_names[:4] == ["disc", "box", "triangle", "ring"]
    val = build_clip_dataset(cfg, "panoptic", train=False)
    assert len(val) == 1 and val[0].frames.shape[2] == 40
    with pytest.raises(Exception, match="val_root"):
        build_clip_dataset(DataConfig(format="vipseg"), "panoptic", train=False)


def test_clip_batch_to_moves_every_tensor(synth):
    batch = collate_clips([ClipDataset(_ytvis(synth), 2, seed=0)[i] for i in range(2)])
    moved = batch.to("meta")
    tensors = [moved.frames, moved.image_sizes, moved.padding]
    tensors += [getattr(t, f) for clip in moved.targets for t in clip
                for f in ("class_ids", "instance_ids", "masks", "present", "ignore")]
    assert all(t.device.type == "meta" for t in tensors)
    assert moved.frames.shape == batch.frames.shape and len(moved.targets) == len(batch.targets)


def test_epoch_keys_draw_new_clips_and_plain_indices_use_the_current_epoch(synth):
    ds = ClipDataset(_ytvis(synth), 3, "instance", augment=ClipAugment((40, 56), 1000, None, 0.5), seed=0)
    assert torch.equal(ds[1].frames, ds[(1, 0)].frames)
    assert not all(torch.equal(ds[(1, 0)].frames, ds[(1, e)].frames) for e in range(1, 4))
    ds.set_epoch(2)
    assert torch.equal(ds[1].frames, ds[(1, 2)].frames)


# --- colour jitter ------------------------------------------------------------------------------------------


def test_jitter_color_identity_and_each_factor():
    rng = np.random.default_rng(0)
    image = rng.integers(30, 220, (12, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(jitter_color(image, 1.0, 1.0, 1.0, 0.0), image)
    np.testing.assert_allclose(jitter_color(image, 0.5, 1.0, 1.0, 0.0), np.round(image * 0.5), atol=0.5)
    flat = jitter_color(image, 1.0, 0.0, 1.0, 0.0)  # contrast 0: every pixel the mean luma
    assert flat.std() < 0.6
    gray = jitter_color(image, 1.0, 1.0, 0.0, 0.0).astype(int)  # saturation 0: R = G = B
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 1 and np.abs(gray[..., 1] - gray[..., 2]).max() <= 1
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    green = jitter_color(red, 1.0, 1.0, 1.0, 1 / 3)  # a third of a turn takes red to green
    assert green[..., 1].min() > 240 and green[..., 0].max() < 15 and green[..., 2].max() < 15


def test_color_jitter_is_one_draw_per_clip_and_leaves_masks_alone(synth):
    plain = ClipDataset(_ytvis(synth), 3, "instance", augment=ClipAugment((40, 56), 1000, None, 0.5), seed=0)
    jittered = ClipDataset(_ytvis(synth), 3, "instance", seed=0,
                           augment=ClipAugment((40, 56), 1000, None, 0.5, (0.4, 0.4, 0.4, 0.1)))
    a, b = plain[(1, 0)], jittered[(1, 0)]
    assert a.frame_indices == b.frame_indices and a.frames.shape == b.frames.shape
    assert not torch.equal(a.frames, b.frames)  # the same geometry (drawn first), other colours
    for ta, tb in zip(a.targets, b.targets):
        assert torch.equal(ta.masks, tb.masks)
    # one brightness factor for the whole clip: every frame is scaled by the same b
    bright = ClipDataset(_ytvis(synth), 3, "instance", seed=0,
                         augment=ClipAugment((40, 56), 1000, None, 0.5, (0.5, 0.0, 0.0, 0.0)))
    for item in [(0, 0), (1, 1), (1, 2)]:
        p, j = plain[item].frames.double(), bright[item].frames.double()
        keep = (j < 255) & (p > 20)  # unclipped pixels
        b = [(j[t][keep[t]] / p[t][keep[t]]).median().item() for t in range(3)]
        assert max(b) - min(b) < 0.02 and abs(b[0] - 1) > 0.005


@pytest.mark.parametrize("bad", [(0.4, 0.4, 0.4), (0.4, -0.1, 0.4, 0.1), (0.4, 0.4, 0.4, 0.6)])
def test_bad_color_jitter_is_config_error(synth, bad):
    cfg = DataConfig(format="vipseg", train_root=str(synth / "vipseg"), color_jitter=bad, min_size=(40,))
    with pytest.raises(ConfigError, match="data.color_jitter"):
        build_clip_dataset(cfg, "instance")
