"""The synthetic benchmark: in-memory API, label consistency, determinism, CLI synth + validate."""

from __future__ import annotations

import time

import numpy as np

from vidseg.cli import main
from vidseg.data.synthetic import CLASS_NAMES, THING_CLASSES, VOID, generate_video, split_names


def test_generate_video_api_shapes_and_speed():
    start = time.perf_counter()
    v = generate_video(seed=0, num_frames=48, height=240, width=320)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"48 frames at 240x320 took {elapsed:.2f}s"
    assert len(v) == 48 and v.class_names == list(THING_CLASSES)
    for t in range(48):
        assert v.frames[t].shape == (240, 320, 3) and v.frames[t].dtype == np.uint8
        n = v.instance_masks[t].shape[0]
        assert v.instance_masks[t].shape == (n, 240, 320) and v.instance_masks[t].dtype == bool
        assert v.track_ids[t].shape == (n,) and v.class_ids[t].shape == (n,)
        assert v.track_ids[t].dtype == np.int64 and (v.track_ids[t] >= 1).all()
        assert ((v.class_ids[t] >= 0) & (v.class_ids[t] < len(THING_CLASSES))).all()


def test_labels_are_consistent():
    v = generate_video(5, 12, 96, 128)
    for t in range(12):
        masks, sem, pan = v.instance_masks[t], v.semantic[t], v.panoptic[t]
        assert masks.sum(0).max() <= 1  # objects do not overlap (occlusion resolved)
        for m, tid, cls in zip(masks, v.track_ids[t], v.class_ids[t]):
            assert (sem[m] == cls).all()
            assert (pan[m] == 1000 * (cls + 1) + tid).all()
        assert (pan[v.void_masks[t]] == 0).all() and (sem[v.void_masks[t]] == VOID).all()
        ids = {s.id for s in v.segments[t]}
        assert ids == set(np.unique(pan).tolist()) - {0}
        for s in v.segments[t]:
            assert s.area == int((pan == s.id).sum())
            assert s.category_id == int(sem[pan == s.id][0])
            assert s.iscrowd == (s.id in {1000 * (c + 1) + i for c, i in
                                          zip(v.crowd_class_ids[t], v.crowd_track_ids[t])})
        stuff = (sem >= len(THING_CLASSES)) & (sem != VOID)
        assert (pan[stuff] == sem[stuff].astype(np.int32) + 1).all()


def test_deterministic_and_seed_dependent():
    a, b, c = generate_video(3, 6, 64, 80), generate_video(3, 6, 64, 80), generate_video(4, 6, 64, 80)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    assert all(np.array_equal(x, y) for x, y in zip(a.panoptic, b.panoptic))
    assert not np.array_equal(a.frames[0], c.frames[0])


def test_benchmark_difficulty_features_occur():
    occluded = entering = leaving = crowd = void = same_class = 0
    for seed in range(12):
        v = generate_video(seed, 24, 96, 128)
        tracks = [set(x.tolist()) for x in v.track_ids]
        entering += any(tracks[t] - tracks[t - 1] for t in range(1, 24))
        leaving += any(tracks[t - 1] - tracks[t] for t in range(1, 24))
        occluded += any((o > 0.2).any() for o in v.occlusion)
        crowd += v.crowd_masks[0].shape[0] > 0
        void += v.void_masks[0].any()
        same_class += any(len(c) != len(set(c.tolist())) for c in v.class_ids)
    assert min(occluded, entering, leaving, crowd, void, same_class) >= 3, (
        occluded, entering, leaving, crowd, void, same_class)
    assert len(CLASS_NAMES) == 7


def test_split_names():
    assert split_names(1) == {"train": [0], "val": []}
    assert split_names(8) == {"train": list(range(6)), "val": [6, 7]}


def test_cli_synth_is_byte_identical_and_validates(tmp_path, capsys):
    args = ["--videos", "3", "--frames", "4", "--size", "48x64", "--seed", "11"]
    assert main(["data", "synth", "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["data", "synth", "--out", str(tmp_path / "b"), *args]) == 0
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 40
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for fmt in ("ytvis", "vipseg", "vspw"):
        assert main(["data", "validate", str(tmp_path / "a" / fmt), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "videos: 3" in out and "frames: 12" in out and "OK" in out
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--size", "big"]) == 2
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--formats", "coco"]) == 2
