"""Copy-paste of one clip's instances over another (`vidseg.data.copy_paste`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidseg.config import DataConfig
from vidseg.data.build import build_clip_dataset
from vidseg.data.clips import Clip, FrameTarget
from vidseg.data.copy_paste import MIN_SCALE, CopyPasteClips, paste_clip
from vidseg.errors import ConfigError


def _clip(index: int, t: int = 3, h: int = 40, w: int = 60, ids: tuple[int, ...] = (1,)) -> Clip:
    """Frames of constant value 10 * (index + 1); instance k a box moving right by one pixel a frame."""
    frames = torch.full((t, 3, h, w), 10 * (index + 1), dtype=torch.uint8)
    targets = []
    for f in range(t):
        masks = torch.zeros(len(ids), h, w, dtype=torch.bool)
        for k in range(len(ids)):
            masks[k, 5 + 10 * k : 15 + 10 * k, 5 + f : 25 + f] = True
        targets.append(FrameTarget(torch.zeros(len(ids), dtype=torch.int64), torch.tensor(ids), masks,
                                   masks.flatten(1).any(1), torch.zeros(h, w, dtype=torch.bool)))
    return Clip(frames, targets, index, list(range(t)))


class _Clips:
    def __init__(self, n: int):
        self.n, self.epochs = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        index, _ = key
        return _clip(index, h=40 + 4 * index, w=60 - 2 * index, ids=(1, 2) if index % 2 else (1,))

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    @property
    def class_names(self) -> list[str]:
        return ["object"]


def test_paste_clip_appends_the_donor_instances_on_top():
    clip, donor = _clip(0), _clip(1, h=30, w=30, ids=(1, 2))
    out = paste_clip(clip, donor, np.random.default_rng(0))
    assert out.frames.shape == clip.frames.shape and len(out.targets) == 3
    for t, tg in enumerate(out.targets):
        assert tg.masks.shape == (3, 40, 60) and tg.class_ids.tolist() == [0, 0, 0]
        assert tg.instance_ids.tolist() == [1, 3, 4]  # donor ids moved past the clip's
        cover = tg.masks[1:].any(0)
        assert cover.any() and not (tg.masks[0] & cover).any()  # the pasted objects occlude
        assert torch.equal(tg.masks[0] | (clip.targets[t].masks[0] & cover), clip.targets[t].masks[0])
        assert (out.frames[t][:, cover] == 20).all() and (out.frames[t][:, ~cover] == 10).all()
        assert tg.present.tolist() == tg.masks.flatten(1).any(1).tolist()
        ys, xs = torch.nonzero(tg.masks[1], as_tuple=True)
        assert MIN_SCALE * 10 - 1 <= int(ys.max() - ys.min()) + 1 <= 40 * 10 / 30 + 1  # box of 10 rows, scaled
    # one offset and scale for the whole clip: the pasted box moves as it did in the donor (1 px a frame or so)
    firsts = [int(torch.nonzero(tg.masks[1].any(0))[0]) for tg in out.targets]
    assert firsts == sorted(firsts) and firsts[-1] - firsts[0] <= 2 * 40 / 30 + 1


def test_copy_paste_clips_draw_is_per_item_and_epoch():
    base = _Clips(5)
    none, every = CopyPasteClips(base, 0.0), CopyPasteClips(base, 1.0, seed=3)
    assert len(every) == 5 and every.class_names == ["object"]
    assert torch.equal(none[(2, 0)].frames, base[(2, 0)].frames)
    a, b = every[(2, 0)], every[(2, 0)]
    assert torch.equal(a.frames, b.frames) and len(a.targets[0].class_ids) > 1
    assert not (a.frames == 30).all()  # something (not clip 2's value) was pasted
    every.set_epoch(4)
    assert base.epochs == [4] and every.epoch == 4
    half = CopyPasteClips(base, 0.5, seed=1)
    grown = [len(half[(i, 0)].targets[0].class_ids) > len(base[(i, 0)].targets[0].class_ids) for i in range(5)]
    assert 0 < sum(grown) < 5
    with pytest.raises(ValueError, match="probability"):
        CopyPasteClips(base, 1.5)


def test_copy_paste_needs_instance_training(tmp_path):
    cfg = DataConfig(format="vspw", train_root=str(tmp_path), copy_paste=0.5)
    with pytest.raises(ConfigError, match="data.copy_paste"):
        build_clip_dataset(cfg, "semantic")
