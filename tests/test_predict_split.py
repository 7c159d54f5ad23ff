"""`vidseg predict`: a dataset split into a submission that `vidseg eval` scores like the Python evaluation
(`vidseg.inference.dataset_eval`); sharding, resuming, and the streamed YouTube-VIS writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from array import array
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_predictor import tiny_config

from vidseg.cli import main
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.evaluation.report import metrics_json
from vidseg.evaluation.submission import VideoKey, YtvisSubmissionWriter, writer_for
from vidseg.inference.dataset_eval import evaluate_vis, evaluate_vps, evaluate_vss
from vidseg.inference.predict_split import PARTS, predict_split, read_split
from vidseg.inference.predictor import VideoPredictor
from vidseg.io.checkpoint import save_checkpoint
from vidseg.models.model import build_model
from vidseg.structures import FrameResult, VideoResult


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, 8, 5, 48, 64, formats=("vipseg", "ytvis", "vspw"), seed=3)  # 2 val videos
    return out


@pytest.fixture(scope="module")
def ckpt(synth, tmp_path_factory) -> Path:
    """A random tiny DVIS++ online model whose config names the synthetic VIPSeg data (its 7 classes)."""
    cfg = tiny_config("dvis_online", extra=("data.format=vipseg", f"data.val_root={synth / 'vipseg'}",
                                            "inference.test_topk=40"))  # random weights: mostly stuff
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "trk", build_model(cfg).state_dict(), cfg, "tracker", 1)


GT = {"vis": "ytvis/val/instances.json", "vps": "vipseg/panoptic_gt_VIPSeg_val.json", "vss": "vspw"}


def _python_scores(ckpt: Path, synth: Path, task: str, out: Path) -> str:
    predictor = VideoPredictor.from_checkpoint(ckpt, task=task, device="cpu")
    if task == "vis":
        scores = evaluate_vis(predictor, synth / GT[task], out / "vis.zip")
    elif task == "vps":
        scores = evaluate_vps(predictor, synth / GT[task], out)
    else:
        scores = evaluate_vss(predictor, synth / GT[task], "val", out)
    return metrics_json(scores.metrics)


def _cli_eval(task: str, synth: Path, pred: Path, tmp_path: Path) -> str:
    assert main(["eval", "--task", task, "--gt", str(synth / GT[task]), "--pred", str(pred), "--workers", "1",
                 "--out", str(tmp_path / "m.json")]) == 0
    return (tmp_path / "m.json").read_text().strip()


@pytest.mark.parametrize("task", ["vis", "vps", "vss"])
def test_predict_then_eval_equals_the_python_evaluation(task, synth, ckpt, tmp_path):
    args = ["predict", str(ckpt), "--split", "val", "--out", str(tmp_path / "sub"), "--device", "cpu",
            "--no-progress", "--threads", "1"]
    if task != "vps":  # vps: the GT comes from the checkpoint's config (data.val_root)
        args += ["--task", task, "--gt", str(synth / GT[task])]
    assert main(args) == 0
    sub = tmp_path / "sub"
    if task == "vis":
        entries = json.loads(zipfile.ZipFile(sub / "results.zip").read("results.json"))
        assert entries == json.loads((sub / "results.json").read_text())
        videos = read_split("vis", synth / GT[task]).dataset.videos
        assert {e["video_id"] for e in entries} == {v.video_id for v in videos}
    elif task == "vps":
        pred = json.loads((sub / "pred.json").read_text())["annotations"]
        gt = json.loads((synth / GT[task]).read_text())["annotations"]
        assert [v["video_id"] for v in pred] == [v["video_id"] for v in gt]
        assert [f["file_name"] for f in pred[0]["annotations"]] == [f["file_name"] for f in gt[0]["annotations"]]
    else:
        gt_names = sorted(p.relative_to(synth / "vspw" / "data").parts[0] + "/" + p.name
                          for p in (synth / "vspw" / "data").glob("*/mask/*.png")
                          if p.parts[-3] in (synth / "vspw" / "val.txt").read_text().split())
        assert sorted(f"{p.parent.name}/{p.name}" for p in sub.glob("*/*.png")) == gt_names
    assert _cli_eval(task, synth, sub, tmp_path) == _python_scores(ckpt, synth, task, tmp_path / "py")


def test_shards_merge_into_the_single_process_submission(synth, ckpt, tmp_path):
    predictor = VideoPredictor.from_checkpoint(ckpt, task="vis", device="cpu")
    split = read_split("vis", synth / GT["vis"])
    whole = predict_split(predictor, split, tmp_path / "one")
    assert predict_split(predictor, split, tmp_path / "two", rank=1, world=2) is None  # rank 1 only writes parts
    assert len(list((tmp_path / "two" / PARTS).glob("*.json"))) == 1
    sharded = predict_split(predictor, split, tmp_path / "two", rank=0, world=2)
    assert (tmp_path / "two" / "results.json").read_bytes() == (tmp_path / "one" / "results.json").read_bytes()
    assert whole is not None and sharded is not None and whole.name == sharded.name == "results.zip"


def test_resume_skips_written_videos_and_redoes_missing_ones(synth, ckpt, tmp_path):
    predictor = VideoPredictor.from_checkpoint(ckpt, task="vps", device="cpu")
    split = read_split("vps", synth / GT["vps"])
    predict_split(predictor, split, tmp_path)
    parts = sorted((tmp_path / PARTS).glob("*.json"))
    assert [p.stem for p in parts] == sorted(split.video_keys()) and not list((tmp_path / PARTS).glob("*.tmp.json"))
    reference = (tmp_path / "pred.json").read_text()
    # A written part is trusted (here marked so that a re-prediction would show), a missing one is redone.
    marked = json.loads(parts[0].read_text())
    marked["annotations"][0]["marker"] = 1
    parts[0].write_text(json.dumps(marked))
    parts[1].unlink()
    predict_split(predictor, split, tmp_path)
    merged = json.loads((tmp_path / "pred.json").read_text())["annotations"]
    by_id = {v["video_id"]: v for v in merged}
    assert by_id[marked["annotations"][0]["video_id"]].get("marker") == 1
    for v in merged:
        v.pop("marker", None)
    assert merged == json.loads(reference)["annotations"]
    predict_split(predictor, split, tmp_path, resume=False)  # everything again: the marker is gone
    assert (tmp_path / "pred.json").read_text() == reference


def _torchrun_predict(task: str, ckpt: Path, synth: Path, out: Path, nproc: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", f"--nproc-per-node={nproc}", "-m", "vidseg.cli", "predict", str(ckpt),
           "--task", task, "--gt", str(synth / GT[task]), "--out", str(out), "--device", "cpu", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("nproc", [1, 2])  # 9 s, 12 s
def test_torchrun_predict_then_eval_equals_the_python_evaluation(nproc, synth, ckpt, tmp_path):
    _torchrun_predict("vis", ckpt, synth, tmp_path / "sub", nproc)
    assert len(list((tmp_path / "sub" / PARTS).glob("*.json"))) == 2
    assert _cli_eval("vis", synth, tmp_path / "sub", tmp_path) == _python_scores(ckpt, synth, "vis", tmp_path / "py")


def test_predict_with_a_config_and_weights_takes_the_data_from_the_config(synth, ckpt, tmp_path):
    assert main(["predict", "mask2former/synthetic_tiny", "--weights", str(ckpt), "--set", "data.format=vspw",
                 "--set", f"data.val_root={synth / 'vspw'}", "--out", str(tmp_path), "--device", "cpu",
                 "--no-progress"]) == 0
    assert len(list(tmp_path.glob("video_*/*.png"))) == 2 * 5
    assert len(list((tmp_path / PARTS).glob("*.json"))) == 2


def test_predict_user_errors(ckpt, tmp_path, capsys):
    assert main(["predict", "mask2former/synthetic_tiny", "--out", str(tmp_path)]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["predict", str(ckpt), "--split", "test", "--out", str(tmp_path)]) == 2
    assert "pass --gt" in capsys.readouterr().err


# --- the streamed YouTube-VIS writer ---------------------------------------------------------------------


def _random_frames(rng: np.random.Generator, n: int) -> list[FrameResult]:
    frames = []
    for t in range(n):
        k = int(rng.integers(0, 4))
        frames.append(FrameResult.from_masks(t, rng.random((k, 6, 5)) > 0.5, rng.integers(1, 5, k),
                                             rng.integers(0, 3, k), rng.random(k)))
    # A track twice in one frame: the last result counts, as in `VideoResult.tracks`.
    frames.append(FrameResult.from_masks(n, rng.random((2, 6, 5)) > 0.5, [9, 9], [0, 1], [0.2, 0.7]))
    return frames


def test_streamed_ytvis_writer_is_byte_identical_to_video_results(tmp_path):
    rng = np.random.default_rng(0)
    videos = {3: _random_frames(rng, 9), 4: _random_frames(rng, 4), 5: [FrameResult(0, 6, 5)]}
    ids = [5, 6, 7]
    reference = "[" + ",".join(json.dumps(e) for v, frames in videos.items()
                               for e in VideoResult(v, frames).to_ytvis(ids)) + "]"
    with YtvisSubmissionWriter(tmp_path / "a.zip", ids) as w:
        for v, frames in videos.items():
            for f in frames:
                w.add_frame(VideoKey(str(v), v), f)
    assert (tmp_path / "a.json").read_text() == reference
    assert zipfile.ZipFile(tmp_path / "a.zip").read("results.json").decode() == reference
    assert w.submission == tmp_path / "a.zip" and w.outputs == ["a.json", "a.zip"]
    # Parts written alone and merged give the same file.
    for v, frames in videos.items():
        with writer_for("vis", tmp_path, ids, part=tmp_path / f"part{v}.json") as part:
            for f in frames:
                part.add_frame(VideoKey(str(v), v), f)
    with writer_for("vis", tmp_path, zip_name="merged.zip") as w:
        for v in (3, 5, 4, 5):
            w.add_part(tmp_path / f"part{v}.json")
    expected = [e for v in (3, 5, 4, 5) for e in VideoResult(v, videos[v]).to_ytvis(ids)]
    assert json.loads((tmp_path / "merged.json").read_text()) == expected


def test_streamed_ytvis_writer_keeps_rles_out_of_memory(tmp_path):
    """The current video's RLEs are in a temporary file; the writer holds per-track indices and scores."""
    frames = _random_frames(np.random.default_rng(1), 5)
    with YtvisSubmissionWriter(tmp_path / "a.zip") as w:
        for f in frames:
            w.add_frame(VideoKey("v", 1), f)
        video = w._video
        assert video is not None and video.num_frames == len(frames)
        video._file.flush()
        assert os.fstat(video._file.fileno()).st_size == sum(len(json.dumps(r)) for f in frames for r in f.masks)
        assert all(isinstance(a, array) for tr in video._tracks.values() for a in (tr.frames, tr.offsets, tr.lengths))


def test_streamed_ytvis_writer_places_frames_at_their_index(tmp_path):
    """A frame never added (skipped, or after the last one added: `end_video`) has no segmentation."""
    frames = _random_frames(np.random.default_rng(2), 4)
    with YtvisSubmissionWriter(tmp_path / "a.json") as w:
        for f in frames:
            if f.frame_index != 1:
                w.add_frame(VideoKey("v", 7), f)
        w.end_video(VideoKey("v", 7), len(frames) + 2)
    gapped = [FrameResult(1, 6, 5) if f.frame_index == 1 else f for f in frames]
    gapped += [FrameResult(len(frames) + i, 6, 5) for i in range(2)]
    assert json.loads((tmp_path / "a.json").read_text()) == VideoResult(7, gapped).to_ytvis()
    with pytest.raises(ValueError, match="numeric video id"):
        YtvisSubmissionWriter(tmp_path / "b.json").add_frame(VideoKey("v"), frames[0])


def test_streamed_vipseg_writer_writes_what_json_dump_would(tmp_path):
    from vidseg.evaluation.submission import VipsegSubmissionWriter
    from vidseg.structures import PanopticSegment

    pan = np.array([[0, 1], [2, 2]], np.int32)
    expected: dict[str, list] = {}
    with VipsegSubmissionWriter(tmp_path, category_ids=[4, 5, 6]) as w:
        for video, name, segments in [("b", "0.png", [PanopticSegment(1, 0, True)]), ("a", "0.png", []),
                                      ("b", "1.png", [PanopticSegment(2, 2, False)])]:
            w.add_frame(VideoKey(video), FrameResult(0, 2, 2, panoptic=pan, segments=segments), name)
            info = [{"id": s.id, "category_id": 4 + s.category_id, "iscrowd": 0} for s in segments]
            expected.setdefault(video, []).append({"image_id": name[:-4], "file_name": name, "segments_info": info})
    reference = json.dumps({"annotations": [{"video_id": v, "annotations": f} for v, f in expected.items()]})
    assert (tmp_path / "pred.json").read_text() == reference
    w.close()
    assert (tmp_path / "pred.json").read_text() == reference  # written once
    assert (tmp_path / "pan_pred" / "b" / "1.png").is_file()
    assert w.submission == tmp_path and w.outputs == ["pred.json", "pan_pred"]


def test_vipseg_parts_merge_into_what_json_dump_would(tmp_path):
    """Parts are taken as they are (whole video entries), before and after videos fed frame by frame."""
    pan = np.zeros((2, 2), np.int32)
    parts = {"a": {"annotations": [{"video_id": "a", "annotations": [], "extra": 1}]},
             "b": {"annotations": [{"video_id": "b", "annotations": [{"image_id": "0", "file_name": "0.png",
                                                                      "segments_info": []}]}]}}
    for name, part in parts.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
    with writer_for("vps", tmp_path) as w:
        w.add_part(tmp_path / "b.json")
        w.add_frame(VideoKey("c"), FrameResult(3, 2, 2, panoptic=pan))
        w.add_part(tmp_path / "a.json")
    videos = [parts["b"]["annotations"][0],
              {"video_id": "c", "annotations": [{"image_id": "00003", "file_name": "00003.png", "segments_info": []}]},
              parts["a"]["annotations"][0]]
    assert (tmp_path / "pred.json").read_text() == json.dumps({"annotations": videos})


def test_vspw_writer_lists_its_frames_in_parts(tmp_path):
    sem = FrameResult(0, 2, 2, semantic=np.zeros((2, 2), np.int32))
    with writer_for("vss", tmp_path, part=tmp_path / "part.json") as w:
        for t in range(3):
            w.add_frame(VideoKey("v"), replace(sem, frame_index=t))
    assert (tmp_path / "part.json").read_text() == json.dumps({"video": "v", "frames": 3})
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    with writer_for("vss", tmp_path) as merged:
        merged.add_part(tmp_path / "part.json")
    assert merged.outputs == ["v"] and merged.submission == tmp_path
