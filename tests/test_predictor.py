"""The streaming VideoPredictor: online/offline equivalences, windows, bad frames, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidseg.config import ExperimentConfig, apply_overrides, load_preset_or_file
from vidseg.errors import CheckpointError, ConfigError, DataFormatError
from vidseg.inference.postprocess import FrameGeometry, VideoPostprocessor
from vidseg.inference.predictor import (
    ClassInfo,
    SkippedFrame,
    VideoPredictor,
    class_info_from_config,
    inference_size,
)
from vidseg.io.checkpoint import save_checkpoint
from vidseg.io.video import VideoWriter, open_video
from vidseg.models.model import build_model, load_model
from vidseg.structures import FrameResult

H, W, T = 48, 72, 12


def tiny_config(method: str, task: str = "vis", extra: tuple[str, ...] = ()) -> ExperimentConfig:
    """The synthetic_tiny segmenter, one-layer tracker/refiner, frames scaled to a 32 px short side."""
    overrides = [
        f"model.method={method}",
        f"model.reid_head={'true' if method.startswith('dvis') else 'false'}",
        "model.tracker.num_layers=1", "model.tracker.num_heads=2", "model.tracker.ffn_dim=64",
        "model.refiner.num_layers=2", "model.refiner.num_heads=2", "model.refiner.ffn_dim=64",
        "inference.min_size=32", "inference.max_size=64", f"inference.task={task}", "inference.test_topk=5",
        # Random weights are never confident: keep every query so VPS has segments to merge.
        "inference.object_mask_threshold=0.0",
        "data.val_root=''", "data.train_root=''",
        *extra,
    ]
    return apply_overrides(load_preset_or_file("mask2former/synthetic_tiny"), overrides)


def moving_frames(n: int = T, h: int = H, w: int = W) -> list[np.ndarray]:
    """A textured background with two squares moving in opposite directions."""
    out = []
    for t in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0] = (np.arange(w)[None, :] * 3) % 256
        f[..., 1] = (np.arange(h)[:, None] * 5) % 256
        f[8:24, 2 + 2 * t : 18 + 2 * t] = (250, 40, 40)
        f[26:44, w - 20 - 2 * t : w - 2 - 2 * t] = (30, 220, 90)
        out.append(f)
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Random tiny models saved as the three stages' checkpoints."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    seg_cfg = tiny_config("segmenter")
    segmenter = build_model(seg_cfg)
    tracker_cfg = tiny_config("dvis_online")
    tracker = build_model(tracker_cfg)
    refiner_cfg = tiny_config("dvis_offline")
    refiner = build_model(refiner_cfg)
    return {
        # A segmenter checkpoint holds the bare segmenter; later stages hold the whole model.
        "segmenter": save_checkpoint(root / "seg", segmenter.segmenter.state_dict(), seg_cfg, "segmenter", 1),
        "tracker": save_checkpoint(root / "trk", tracker.state_dict(), tracker_cfg, "tracker", 1),
        "refiner": save_checkpoint(root / "ref", refiner.state_dict(), refiner_cfg, "refiner", 1),
    }


def model_steps(model, frames: list[np.ndarray], h: int, w: int) -> list:
    """Every frame, resized to (h, w) as the predictor does, stepped straight through the model API."""
    state, steps = model.init_state(), []
    for f in frames:
        resized = np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR))
        step, state = model.step(model.segmenter.frames_to_batch([resized]), state)
        steps.append(step)
    return steps


def assert_same(a: list[FrameResult], b: list[FrameResult]) -> None:
    assert [r.frame_index for r in a] == [r.frame_index for r in b]
    for x, y in zip(a, b):
        assert (x.height, x.width) == (y.height, y.width)
        assert x.masks == y.masks
        np.testing.assert_array_equal(x.track_ids, y.track_ids)
        np.testing.assert_array_equal(x.class_ids, y.class_ids)
        np.testing.assert_array_equal(x.scores, y.scores)
        for field in ("semantic", "panoptic"):
            u, v = getattr(x, field), getattr(y, field)
            assert (u is None) == (v is None)
            if u is not None:
                np.testing.assert_array_equal(u, v)
        assert x.segments == y.segments


def test_inference_size_scales_short_side_and_caps_long_side():
    assert inference_size(480, 640, 360, 1000) == (360, 480)
    assert inference_size(100, 1000, 360, 640) == (64, 640)  # the long side wins
    assert inference_size(48, 72, None, None) == (48, 72)
    assert inference_size(720, 1280, None, 640) == (360, 640)


# --- online ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage, method", [("segmenter", "minvis"), ("tracker", "dvis_online")])
def test_step_and_run_give_identical_results(checkpoints, stage, method):
    predictor = VideoPredictor.from_checkpoint(checkpoints[stage], device="cpu")
    assert (predictor.stage, predictor.model.method, predictor.mode) == (stage, method, "online")
    assert predictor.checkpoint == checkpoints[stage]
    frames = moving_frames()
    ran = list(predictor.run(frames))
    predictor.reset()
    stepped = [predictor.step(f) for f in frames]
    assert_same(ran, stepped)
    assert len(ran) == T and all((r.height, r.width) == (H, W) for r in ran)  # mapped back to the frame
    assert all(len(r.masks) == 5 and r.masks[0]["size"] == [H, W] for r in ran)  # test_topk RLE masks
    # A (slot, class) pair keeps its id: the tracks of the first frame recur later.
    assert set(ran[0].track_ids) & set(ran[-1].track_ids)


@pytest.mark.parametrize("task", ["vis", "vps"])
def test_local2global_checkpoint_streams_online_with_its_sigmoid_head(tmp_path, task):
    cfg = apply_overrides(load_preset_or_file("local2global/synthetic_tiny"), [
        "model.l2g.aligner_layers=1", "inference.min_size=32", "inference.max_size=64",
        "inference.test_topk=5", "inference.object_mask_threshold=0.3", "data.val_annotations=''",
        "data.train_annotations=''",
    ])
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "l2g", build_model(cfg).state_dict(), cfg, "l2g", 1)
    predictor = VideoPredictor.from_checkpoint(path, device="cpu", task=task)
    assert (predictor.mode, predictor.postprocessor.classification) == ("online", "sigmoid")
    frames = moving_frames(6)
    ran = list(predictor.run(frames))
    predictor.reset()
    assert_same(ran, [predictor.step(f) for f in frames])
    if task == "vis":
        assert all(len(r.masks) == 5 and 0 < r.scores.max() < 1 for r in ran)
    else:
        assert all(r.panoptic is not None and r.panoptic.shape == (H, W) for r in ran)


def test_run_on_a_frame_folder_equals_run_on_the_frames(checkpoints, tmp_path):
    frames = moving_frames(6)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"{t}.png")
    predictor = VideoPredictor.from_checkpoint(checkpoints["tracker"], device="cpu", task="vps")
    assert_same(list(predictor.run(tmp_path)), list(predictor.run(frames)))


@pytest.mark.parametrize("task", ["vps", "vss"])
def test_online_tasks_produce_their_maps_at_frame_size(checkpoints, task):
    predictor = VideoPredictor.from_checkpoint(checkpoints["tracker"], device="cpu", task=task)
    results = list(predictor.run(moving_frames(4)))
    for r in results:
        assert r.semantic is not None and r.semantic.shape == (H, W)
        if task == "vps":
            assert r.panoptic is not None and r.panoptic.shape == (H, W)
            assert {s.id for s in r.segments} == set(np.unique(r.panoptic)) - {0}


def test_stream_yields_the_original_frames_with_their_results(checkpoints):
    predictor = VideoPredictor.from_checkpoint(checkpoints["refiner"], device="cpu", window=5, overlap=1)
    frames = moving_frames()
    pairs = list(predictor.stream(frames))
    assert [r.frame_index for _, r in pairs] == list(range(T))
    for (frame, result) in pairs:
        assert frame is frames[result.frame_index] or np.array_equal(frame, frames[result.frame_index])


def test_should_stop_ends_reading_and_still_emits_frames_read(checkpoints):
    predictor = VideoPredictor.from_checkpoint(checkpoints["refiner"], device="cpu", window=5, overlap=1)
    results = list(predictor.run(moving_frames(), should_stop=lambda: predictor.frames_seen >= 7))
    assert [r.frame_index for r in results] == list(range(7))


# --- offline --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["vis", "vps", "vss"])
def test_offline_window_covering_the_video_equals_one_refiner_pass(checkpoints, task):
    loaded = load_model(checkpoints["refiner"])
    model, cfg = loaded.model, loaded.config
    frames = moving_frames()
    predictor = VideoPredictor(model, cfg, task=task, window=T + 3, overlap=1, device="cpu")
    assert predictor.mode == "offline"
    got = list(predictor.run(frames))

    # The same video straight through the model API: step every frame, one refine, offline post-processing.
    h, w = inference_size(H, W, cfg.inference.min_size, cfg.inference.max_size)
    geometry = FrameGeometry((32, 64), (h, w), (H, W))  # (32, 48) padded to multiples of 32
    with torch.inference_mode():
        clip = model.refine(model_steps(model, frames, h, w))
        post = VideoPostprocessor(task, predictor.classes.is_thing, cfg.inference.test_topk,
                                  cfg.inference.object_mask_threshold, cfg.inference.overlap_threshold)
        expected = post.offline(clip, geometry)
    assert_same(got, expected)


def test_offline_windows_emit_each_frame_once_with_context_and_run_equals_push(checkpoints):
    predictor = VideoPredictor.from_checkpoint(checkpoints["refiner"], device="cpu", window=5, overlap=1)
    frames = moving_frames(13)
    emitted_after_push = []
    pushed: list[FrameResult] = []
    for f in frames:
        out = predictor.push(f)
        emitted_after_push.append([r.frame_index for r in out])
        pushed += out
        assert len(predictor._offline.buffer) < 5  # never more than one window held
    tail = predictor.flush()
    pushed += tail
    # Window [0, 5) emits 0-3; [3, 8) emits 4-6; [6, 11) emits 7-9; the last, [9, 13), the rest.
    assert emitted_after_push[4] == [0, 1, 2, 3]
    assert emitted_after_push[7] == [4, 5, 6]
    assert emitted_after_push[10] == [7, 8, 9]
    assert [r.frame_index for r in tail] == [10, 11, 12]
    assert sum(map(len, emitted_after_push)) == 10
    assert predictor.flush() == []
    assert_same(list(predictor.run(frames)), pushed)
    with pytest.raises(ValueError, match="offline"):
        predictor.step(frames[0])


def test_offline_ids_stay_consistent_across_window_boundaries(checkpoints):
    """A slot keeps one id in every window: the tracker state is carried across windows and the id is
    slot x K + class + 1. The refiner here is made sure of class 2 for every slot, so the top-Q results are
    exactly the Q slots, with the same ids in every frame for any window size."""
    loaded = load_model(checkpoints["refiner"])
    model, cfg = loaded.model, apply_overrides(loaded.config, ["inference.test_topk=20"])
    with torch.no_grad():
        model.video.refiner.class_embed.bias[2] += 30.0
    k, q = cfg.model.num_classes, cfg.model.decoder.num_queries
    expected = {slot * k + 2 + 1 for slot in range(q)}
    frames = moving_frames(20)
    for window, overlap in ((40, 0), (6, 1), (8, 3), (5, 0)):
        predictor = VideoPredictor(model, cfg, window=window, overlap=overlap, device="cpu")
        results = list(predictor.run(frames))
        assert [r.frame_index for r in results] == list(range(20))
        for r in results:
            assert set(r.track_ids.tolist()) == expected, (window, overlap, r.frame_index)
            assert set(r.class_ids.tolist()) == {2}


def test_offline_classes_are_the_running_mean_of_the_windows(checkpoints):
    """Each window's results are selected and scored with the mean of the windows' refined class
    probabilities so far, weighted by the frames each emitted. 10 frames, window 6, overlap 1: [0, 6) emits
    0-4, [4, 10) emits 5-8, and the flush refines [8, 10) for frame 9."""
    loaded = load_model(checkpoints["refiner"])
    model, cfg = loaded.model, loaded.config
    frames = moving_frames(10)
    results = list(VideoPredictor(model, cfg, window=6, overlap=1, device="cpu").run(frames))
    h, w = inference_size(H, W, cfg.inference.min_size, cfg.inference.max_size)
    with torch.inference_mode():
        steps = model_steps(model, frames, h, w)
        p1, p2, p3 = (model.refine(steps[a:b]).class_probs()[0] for a, b in ((0, 6), (4, 10), (8, 10)))
    mean1 = p1
    mean2 = mean1 + (p2 - mean1) * 4 / 9
    mean3 = mean2 + (p3 - mean2) * 1 / 10
    k = cfg.model.num_classes
    for probs, emitted in ((mean1, results[:5]), (mean2, results[5:9]), (mean3, results[9:])):
        top, flat = probs[:, :k].reshape(-1).topk(cfg.inference.test_topk)
        for r in emitted:
            np.testing.assert_allclose(r.scores, top.numpy(), rtol=1e-5)
            np.testing.assert_array_equal(r.track_ids, (flat + 1).numpy())


def test_single_image_source_gives_one_result_offline_and_online(checkpoints, tmp_path):
    image = tmp_path / "still.png"
    Image.fromarray(moving_frames(1)[0]).save(image)
    for mode in ("offline", "online"):
        predictor = VideoPredictor.from_checkpoint(checkpoints["refiner"], device="cpu", mode=mode)
        (result,) = predictor.run(image)  # a one-frame refiner window
        assert (result.frame_index, result.height, result.width, len(result.masks)) == (0, H, W, 5)


def test_offline_rejects_frames_of_another_size(checkpoints):
    predictor = VideoPredictor.from_checkpoint(checkpoints["refiner"], device="cpu", window=4, overlap=1)
    predictor.push(moving_frames(1)[0])
    with pytest.raises(DataFormatError, match="frame 1"):
        predictor.push(moving_frames(1, h=64, w=64)[0])


def test_online_mode_of_a_refiner_checkpoint_runs_the_tracker_only(checkpoints):
    predictor = VideoPredictor.from_checkpoint(checkpoints["refiner"], device="cpu", mode="online")
    assert predictor.mode == "online"
    assert len(predictor.step(moving_frames(1)[0]).masks) == 5


def test_bad_arguments_raise_config_errors(checkpoints):
    loaded = load_model(checkpoints["tracker"])
    model, cfg = loaded.model, loaded.config
    with pytest.raises(ConfigError, match="mode: offline needs a refiner"):
        VideoPredictor(model, cfg, mode="offline", device="cpu")
    with pytest.raises(ConfigError, match="window/overlap"):
        VideoPredictor(model, cfg, window=6, overlap=3, device="cpu")
    with pytest.raises(ConfigError, match="task"):
        VideoPredictor(model, cfg, task="depth", device="cpu")
    with pytest.raises(ConfigError, match="classes"):
        VideoPredictor(model, cfg, classes=ClassInfo.generic(3), device="cpu")
    with pytest.raises(ConfigError, match="on_error"):
        list(VideoPredictor(model, cfg, device="cpu").run(moving_frames(1), on_error="ignore"))


def test_amp_on_cpu_warns_and_runs_in_fp32(checkpoints):
    with pytest.warns(UserWarning, match="fp32"):
        predictor = VideoPredictor.from_checkpoint(checkpoints["tracker"], device="cpu", amp="bf16")
    assert predictor.amp == "none"
    plain = VideoPredictor.from_checkpoint(checkpoints["tracker"], device="cpu")
    frames = moving_frames(3)
    assert_same(list(predictor.run(frames)), list(plain.run(frames)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_on_cuda_matches_fp32_tracks(checkpoints, amp):
    frames = moving_frames()
    full = list(VideoPredictor.from_checkpoint(checkpoints["refiner"], device="cuda", window=5, overlap=1)
                .run(frames))
    half = list(VideoPredictor.from_checkpoint(checkpoints["refiner"], device="cuda", window=5, overlap=1,
                                               amp=amp).run(frames))
    assert [r.frame_index for r in half] == list(range(T))
    agree = np.mean([np.array_equal(a.semantic if a.semantic is not None else a.track_ids,
                                    b.semantic if b.semantic is not None else b.track_ids)
                     for a, b in zip(full, half)])
    assert agree >= 0.5


def test_wrong_checkpoint_path_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        VideoPredictor.from_checkpoint(tmp_path / "missing", device="cpu")


def test_class_info_from_the_configured_dataset_or_generic(tmp_path):
    cfg = tiny_config("minvis")
    generic = class_info_from_config(cfg)
    assert generic.names[:2] == ("class 0", "class 1") and all(generic.is_thing)
    cats = [{"id": 10 + k, "name": f"c{k}", "isthing": int(k < 4)} for k in range(7)]
    (tmp_path / "panoptic_gt_VIPSeg_val.json").write_text(
        json.dumps({"categories": cats, "videos": [], "annotations": []})
    )
    found = class_info_from_config(apply_overrides(cfg, [f"data.val_root={tmp_path}"]))
    assert found.names == tuple(f"c{k}" for k in range(7))
    assert found.is_thing == (True,) * 4 + (False,) * 3
    assert found.category_ids == tuple(range(10, 17))


# --- unreadable frames ----------------------------------------------------------------------------------


def _write_mp4(path: Path, n: int, h: int = 64, w: int = 96) -> Path:
    with VideoWriter(path, fps=25) as writer:
        for t in range(n):
            f = np.zeros((h, w, 3), np.uint8)
            f[..., 0] = (np.arange(w)[None, :] * 2 + t * 5) % 256
            f[10:30, 5 + t : 25 + t, 2] = 255
            f[40:60, :, 1] = (t * 37) % 256
            writer.write(f)
    return path


def _corrupt(src: Path, dst: Path, packets: list[int]) -> set[int]:
    """Overwrite the bytes of the given packets (decoding order); returns the frame indices they hold."""
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        stream = c.streams.video[0]
        per_frame = 1 / (stream.time_base * stream.average_rate)
        found = [(p.pos, p.size, p.pts) for p in c.demux(stream) if p.size]
    lost = set()
    for i in packets:
        pos, size, pts = found[i]
        data[pos : pos + size] = b"\xff" * size
        lost.add(round(pts / per_frame))
    dst.write_bytes(bytes(data))
    return lost


@pytest.fixture(scope="module")
def corrupt_mp4(tmp_path_factory) -> tuple[Path, set[int]]:
    root = tmp_path_factory.mktemp("bad")
    good = _write_mp4(root / "good.mp4", 40)
    bad = root / "bad.mp4"
    return bad, _corrupt(good, bad, [15, 16, 17])


def test_reader_skips_lost_packets_and_keeps_frame_positions(corrupt_mp4):
    bad, lost = corrupt_mp4
    reported: list[int] = []
    indices = [i for i, _ in open_video(bad).indexed(lambda i, e: reported.append(i))]
    assert sorted(reported) == sorted(lost) and len(lost) == 3
    assert indices == sorted(set(range(40)) - lost)
    with pytest.raises(DataFormatError, match="cannot decode frame"):
        list(open_video(bad))  # without a handler the first bad packet ends the stream


def test_run_skips_and_reports_corrupt_frames(checkpoints, corrupt_mp4):
    bad, lost = corrupt_mp4
    for stage in ("tracker", "refiner"):
        predictor = VideoPredictor.from_checkpoint(checkpoints[stage], device="cpu", window=8, overlap=2)
        seen: list[SkippedFrame] = []
        results = list(predictor.run(bad, on_skip=seen.append))
        assert [r.frame_index for r in results] == sorted(set(range(40)) - lost)
        assert sorted(s.index for s in predictor.skipped_frames) == sorted(lost)
        assert seen == predictor.skipped_frames and all(str(bad) in s.reason for s in seen)
        assert all((r.height, r.width) == (64, 96) for r in results)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(predictor.run(bad))  # default report: a warning per frame
    assert sum("skipped frame" in str(w.message) for w in caught) == 3


def test_on_error_stop_raises_after_valid_results(checkpoints, corrupt_mp4):
    bad, lost = corrupt_mp4
    for stage in ("tracker", "refiner"):
        predictor = VideoPredictor.from_checkpoint(checkpoints[stage], device="cpu", window=8, overlap=2)
        done: list[FrameResult] = []
        with pytest.raises(DataFormatError, match=r"bad\.mp4: cannot decode frame"):
            for result in predictor.run(bad, on_error="stop"):
                done.append(result)
        # Every frame read before the bad packet has its result, in order, at the frame size.
        assert [r.frame_index for r in done] == list(range(len(done)))
        assert 10 <= len(done) < min(lost)
        assert all(len(r.masks) == 5 and r.masks[0]["size"] == [64, 96] for r in done)


def test_unreadable_image_in_a_folder_is_skipped(checkpoints, tmp_path):
    for t, f in enumerate(moving_frames(5)):
        Image.fromarray(f).save(tmp_path / f"{t}.png")
    (tmp_path / "2.png").write_bytes(b"not a png")
    predictor = VideoPredictor.from_checkpoint(checkpoints["tracker"], device="cpu")
    results = list(predictor.run(tmp_path, on_skip=lambda s: None))
    assert [r.frame_index for r in results] == [0, 1, 3, 4]
    assert [s.index for s in predictor.skipped_frames] == [2]
    with pytest.raises(DataFormatError, match="2.png"):
        list(predictor.run(tmp_path, on_error="stop"))


# --- memory ---------------------------------------------------------------------------------------------

_RSS_SCRIPT = """
import os, sys, numpy as np, torch
sys.path.insert(0, {tests!r})
from test_predictor import tiny_config, moving_frames
from vidseg.models.model import build_model
from vidseg.inference.predictor import VideoPredictor
torch.set_num_threads(1)
torch.manual_seed(0)
method, n, h, w, window, start = {method!r}, {n}, {h}, {w}, {window}, {start}
cfg = tiny_config(method, "vps", {extra!r})
predictor = VideoPredictor(build_model(cfg), cfg, device="cpu", window=window, overlap=1)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
base, peak = None, 0
def frames():
    # RSS is sampled as frames go in (and results come out): the baseline is taken after `start` frames.
    global base, peak
    template = moving_frames(1, h, w)[0]
    for t in range(n):
        if t == start:
            base = rss()
        peak = max(peak, rss())
        yield np.roll(template, t % w, axis=1)
count = 0
for r in predictor.run(frames()):
    count += 1
    peak = max(peak, rss())
print(count, (peak - base) / 2**20)
"""


def _rss_growth(method: str, n: int, start: int, h: int, w: int, window: int = 8,
                extra: tuple[str, ...] = ()) -> float:
    script = _RSS_SCRIPT.format(tests=str(Path(__file__).parent), method=method, n=n, h=h, w=w, window=window,
                                start=start, extra=extra)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    count, growth = out.stdout.split()[-2:]
    assert int(count) == n
    return float(growth)


_ONLINE = ("inference.min_size=64", "inference.max_size=96")


def test_online_rss_growth_from_frame_50_to_500_under_50mb():
    # About 12 s on one core: frames go in as a generator, results leave as RLE and are dropped.
    growth = _rss_growth("dvis_online", 500, 50, 64, 96, extra=_ONLINE)
    assert growth < 50, f"RSS grew {growth:.1f} MB between frames 50 and 500"


def test_offline_peak_memory_is_bounded_by_the_window_not_the_video_length():
    # 128-channel mask features at 128x192 are ~0.8 MB a frame; holding every frame instead of a window
    # measured +200 MB from 40 to 160 frames, the window of 8 about +5 MB.
    extra = ("inference.min_size=128", "inference.max_size=192", "model.pixel_decoder.mask_dim=128")
    short = _rss_growth("dvis_offline", 40, 8, 128, 192, window=8, extra=extra)
    long = _rss_growth("dvis_offline", 160, 8, 128, 192, window=8, extra=extra)
    assert long - short < 30, f"peak RSS growth {short:.1f} MB for 40 frames, {long:.1f} MB for 160"


@pytest.mark.parametrize(("stage", "task"), [("tracker", "vis"), ("tracker", "vps"), ("refiner", "vis")])
def test_finish_gives_the_whole_video_results(checkpoints, stage, task):
    frames = moving_frames()
    predictor = VideoPredictor.from_checkpoint(checkpoints[stage], device="cpu", task=task,
                                               window=T + 3, overlap=1)
    streamed = list(predictor.run(frames))
    final = list(predictor.finish())
    assert [r.frame_index for r in final] == list(range(T))
    assert_same(list(predictor.predict(frames)), final)  # the same without streaming
    if predictor.mode == "offline" or task == "vis":
        # Offline with one window, and online VIS, whose classes are the whole-video mean by the last frame:
        # the last streamed frame already carries the final tracks.
        assert streamed[-1].track_ids.tolist() == final[-1].track_ids.tolist()
        assert np.allclose(streamed[-1].scores, final[-1].scores)
    if task == "vps":  # official ids: 1..S in slot order
        ids = sorted({s.id for r in final for s in r.segments})
        assert ids == list(range(1, len(ids) + 1))


def test_finish_needs_the_record(checkpoints):
    predictor = VideoPredictor.from_checkpoint(checkpoints["tracker"], device="cpu", record=False)
    predictor.step(moving_frames(1)[0])
    with pytest.raises(RuntimeError, match="record=True"):
        list(predictor.finish())


def test_finish_refines_a_long_video_in_windows(checkpoints):
    loaded = load_model(checkpoints["refiner"])
    config = replace(loaded.config, inference=replace(loaded.config.inference, refine_max_frames=4))
    predictor = VideoPredictor(loaded.model, config, device="cpu")
    frames = moving_frames()
    final = list(predictor.predict(frames))
    assert [r.frame_index for r in final] == list(range(T)) and T > 4
    # One track set for the whole video (the windows' probabilities are averaged), in every frame.
    assert all(r.track_ids.tolist() == final[0].track_ids.tolist() for r in final)
    assert_same(list(predictor.predict(frames)), final)
