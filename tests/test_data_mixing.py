"""Joint training (`data.mix`): COCO pseudo-videos mixed into a VIS dataset by ratio, classes mapped by the
packaged COCO -> dataset maps, on synthetic data (a YouTube-VIS set and a COCO JSON of its frames)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidseg.config import DataConfig, MixSource, apply_overrides, load_preset_or_file
from vidseg.data.annotations import InstanceTrack, VideoAnnotation, VisDataset
from vidseg.data.build import build_clip_dataset
from vidseg.data.catalog import class_map, vocabulary
from vidseg.data.formats.coco import write_coco_instances
from vidseg.data.formats.ytvis import read_ytvis
from vidseg.data.mixing import MixedClipDataset, mix_counts, remap_classes, resolve_class_map
from vidseg.data.synthetic import write_synthetic_dataset
from vidseg.errors import ConfigError
from vidseg.training.engine import ResumableBatchSampler
from vidseg.types import Category

# Synthetic thing class k (disc, box, triangle, ring) -> a COCO category; toothbrush maps to no VIS class.
COCO_CATEGORIES = ((1, "person"), (3, "car"), (17, "cat"), (90, "toothbrush"))


def write_vis_and_coco(out: Path, vocab: str, num_videos: int = 3, coco_categories=COCO_CATEGORIES) -> dict[str, Path]:
    """Synthetic YouTube-VIS train set whose categories are the vocabulary `vocab` (tracks keep ids 1..4),
    and `coco.json`: every frame as a COCO image, synthetic class k labelled `coco_categories[k]`.

    Returns:
        root (JPEGImages), ytvis (the relabelled JSON), coco (the COCO JSON).
    """
    root = write_synthetic_dataset(out, num_videos, 4, 48, 64, formats=("ytvis",), seed=3)["ytvis"] / "train"
    images = root / "JPEGImages"
    data = json.loads((root / "instances.json").read_text())
    v = vocabulary(vocab)
    data["categories"] = [{"id": i, "name": n} for i, n in zip(v.category_ids, v.names)]
    (root / f"instances_{vocab}.json").write_text(json.dumps(data))
    source = read_ytvis(root / "instances.json", images)
    coco_ids = {k + 1: c[0] for k, c in enumerate(coco_categories)}
    videos, next_id = [], 1
    for video in source.videos:
        for t in range(len(video)):
            tracks = []
            for tr in video.instances:
                if tr.segmentations[t] is not None:
                    tracks.append(InstanceTrack(next_id, coco_ids[tr.category_id], [tr.segmentations[t]],
                                                [tr.areas[t]], [tr.bboxes[t]], tr.iscrowd))
                    next_id += 1
            videos.append(VideoAnnotation(len(videos) + 1, f"{video.name}_{t}", [video.frame_files[t]],
                                          video.height, video.width, tracks, images))
    cats = [Category(i, n) for i, n in sorted(set(coco_categories))]
    coco = write_coco_instances(VisDataset(cats, videos), out / "coco.json")
    return {"root": images, "ytvis": root / f"instances_{vocab}.json", "coco": coco}


def mixed_config(paths: dict[str, Path], class_map_name: str = "coco_to_ytvis19", ratio: float = 0.75,
                 **data: object) -> DataConfig:
    mix = MixSource("coco", str(paths["root"]), str(paths["coco"]), ratio, class_map_name)
    fields = dict(format="ytvis", train_root=str(paths["root"]), train_annotations=str(paths["ytvis"]),
                  num_frames=2, min_size=(48,), max_size=64, mix=(mix,))
    return DataConfig(**{**fields, **data})


@pytest.fixture(scope="module")
def ytvis19(tmp_path_factory):
    return write_vis_and_coco(tmp_path_factory.mktemp("mix19"), "ytvis19")


class _Items:
    """A stand-in clip dataset: item i is (name, i)."""

    def __init__(self, name: str, n: int):
        self.name, self.n = name, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: tuple[int, int]) -> tuple[str, int]:
        return self.name, key[0]


def _draws(dataset: MixedClipDataset, iterations: int, batch: int = 7, start: int = 0) -> list[tuple[int, int]]:
    sampler = iter(ResumableBatchSampler(len(dataset), batch, 0, 1, 1, seed=11, start_iteration=start,
                                         with_epoch=True))
    return [key for _ in range(iterations) for key in next(sampler)]


def test_mix_ratio_is_respected_over_many_draws():
    ds = MixedClipDataset([_Items("video", 40), _Items("coco", 1000)], [1.0, 0.75], seed=2)
    assert ds.counts == [40, 30] and len(ds) == 70
    keys = _draws(ds, 1000)  # 7000 draws = 100 epochs
    parts = [ds.locate(*key)[0] for key in keys]
    assert parts.count(1) / len(parts) == pytest.approx(0.75 / 1.75, abs=1e-9)
    # three sources, weights 2 : 1 : 0.5
    ds3 = MixedClipDataset([_Items("a", 50), _Items("b", 9), _Items("c", 500)], [2.0, 1.0, 0.5])
    parts3 = [ds3.locate(*key)[0] for key in _draws(ds3, 500, batch=8)]
    for i, share in enumerate((2 / 3.5, 1 / 3.5, 0.5 / 3.5)):
        assert parts3.count(i) / len(parts3) == pytest.approx(share, abs=0.01)


def test_mix_sampling_is_deterministic_fresh_per_epoch_and_resumable():
    make = lambda: MixedClipDataset([_Items("video", 20), _Items("coco", 100)], [1.0, 0.75], seed=5)  # noqa: E731
    a, b = make(), make()
    keys = _draws(a, 40)
    assert [a[k] for k in keys] == [b[k] for k in keys]
    # each epoch: every main item once, 15 distinct COCO items, a different subset next epoch
    per_epoch = [[a[(i, e)] for i in range(len(a))] for e in (0, 1)]
    for items in per_epoch:
        assert sorted(i for n, i in items if n == "video") == list(range(20))
        assert len({i for n, i in items if n == "coco"}) == 15
    assert {i for n, i in per_epoch[0] if n == "coco"} != {i for n, i in per_epoch[1] if n == "coco"}
    # a source smaller than its share wraps around without repeats inside each pass
    small = MixedClipDataset([_Items("video", 10), _Items("coco", 4)], [1.0, 1.0])
    items = [small[(i, 0)][1] for i in range(10, 20)]
    assert sorted(items[:4]) == sorted(items[4:8]) == [0, 1, 2, 3]
    # the engine resumes at iteration 20 with the same keys, hence the same samples
    c = make()
    assert [c[k] for k in _draws(c, 20, start=20)] == [a[k] for k in keys[20 * 7:]]
    assert mix_counts(7, [1.0, 0.5]) == [7, 4] and mix_counts(3, [1.0, 0.01]) == [3, 1]


def test_remap_classes_maps_ids_and_drops_unmapped_instances_and_empty_images():
    def track(i, cat):
        return InstanceTrack(i, cat, [None], [None], [None])

    videos = [VideoAnnotation(1, "a", ["a.jpg"], 4, 4, [track(1, 1), track(2, 90), track(3, 3)]),
              VideoAnnotation(2, "b", ["b.jpg"], 4, 4, [track(4, 90)])]
    coco = VisDataset([Category(1, "person"), Category(3, "car"), Category(90, "toothbrush")], videos)
    target = [Category(i, n) for i, n in zip(vocabulary("ytvis19").category_ids, vocabulary("ytvis19").names)]
    out = remap_classes(coco, class_map("coco_to_ytvis19"), target)
    assert [v.name for v in out.videos] == ["a"]
    assert [(t.id, t.category_id) for t in out.videos[0].instances] == [(1, 1), (3, 6)]  # car -> sedan
    assert out.categories == target and [t.category_id for t in videos[0].instances] == [1, 90, 3]  # input kept


def test_mixed_dataset_builds_remapped_pseudo_video_clips(ytvis19):
    ds = build_clip_dataset(mixed_config(ytvis19), "instance", seed=1)
    assert isinstance(ds, MixedClipDataset) and callable(ds.set_epoch)
    main, coco = ds.datasets
    assert ds.counts == [len(main), max(1, round(len(main) * 0.75))]
    assert ds.class_names == list(vocabulary("ytvis19").names)
    raw = json.loads(ytvis19["coco"].read_text())["annotations"]
    kept = [t for v in coco.source.dataset.videos for t in v.instances]
    assert len(kept) == sum(a["category_id"] != 90 for a in raw)
    assert {t.category_id for t in kept} <= {1, 6, 14}  # person, sedan, cat; toothbrush dropped
    v19 = vocabulary("ytvis19")
    allowed = {v19.contiguous_id(c) for c in (1, 6, 14)}
    for item in range(len(coco)):
        clip = coco[(item, 0)]
        assert clip.frames.shape[0] == 2 and clip.frame_indices == [0, 0]  # a pseudo-video of one image
        assert set(clip.targets[0].class_ids.tolist()) <= allowed
    index = ds.starts[1]
    clip = ds[(index, 3)]
    assert torch.equal(clip.frames, coco[(ds.locate(index, 3)[1], 3)].frames)
    # validation data never mixes
    assert not isinstance(build_clip_dataset(mixed_config(ytvis19, val_root=str(ytvis19["root"]),
                                                          val_annotations=str(ytvis19["ytvis"])),
                                             "instance", train=False), MixedClipDataset)


@pytest.mark.parametrize(("change", "message"), [
    (dict(class_map_name="nope"), "data.mix[0].class_map: unknown class map 'nope'"),
    (dict(class_map_name="coco_to_ytvis21"), "data.mix[0].class_map: 'coco_to_ytvis21' maps to ytvis21 category"),
    (dict(class_map_name=""), "data.mix[0].class_map: empty, so categories are matched by id, but the training data "
                              "has no category id 90"),
    (dict(format="vipseg"), "data.mix: joint training needs an instance dataset"),
])
def test_bad_mixing_config_is_a_one_line_config_error(ytvis19, change, message):
    data = {k: v for k, v in change.items() if k != "class_map_name"}
    cfg = mixed_config(ytvis19, change.get("class_map_name", "coco_to_ytvis19"), **data)
    with pytest.raises(ConfigError) as err:
        build_clip_dataset(cfg, "instance")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_class_map_of_another_dataset_and_empty_results_are_config_errors(tmp_path, ytvis19):
    ovis = write_vis_and_coco(tmp_path / "ovis", "ovis", num_videos=2,
                              coco_categories=((90, "toothbrush"),) * 4)
    with pytest.raises(ConfigError, match=r"^data.mix\[0\].class_map: 'coco_to_ytvis19' maps COCO category \d+ "
                                          r"to category id \d+, which the training data does not have"):
        build_clip_dataset(mixed_config(ovis), "instance")
    with pytest.raises(ConfigError, match=r"^data.mix\[0\]: no image or video of .* keeps an instance"):
        build_clip_dataset(mixed_config(ovis, "coco_to_ovis"), "instance")
    with pytest.raises(ConfigError, match=r"^data.mix\[0\].root is empty"):
        build_clip_dataset(mixed_config(ytvis19, mix=(MixSource(annotations="x.json"),)), "instance")
    with pytest.raises(ConfigError, match=r"^data.mix\[0\].ratio: must be > 0"):
        apply_overrides(load_preset_or_file("mvc_oma/ytvis19_r50_tracker"), ["data.mix=[{ratio: 0}]"])


VIS_PRESETS = {"ytvis19": "coco_to_ytvis19", "ytvis21": "coco_to_ytvis21", "ovis": "coco_to_ovis"}


@pytest.mark.parametrize("dataset", sorted(VIS_PRESETS))
def test_vis_presets_mix_coco_with_the_dataset_class_map(dataset):
    names = [f"mvc_oma/{dataset}_r50_{s}" for s in ("segmenter", "tracker", "refiner")]
    names.append(f"local2global/{dataset}_r50")
    v = vocabulary(dataset)
    target = [Category(i, n) for i, n in zip(v.category_ids, v.names)]
    coco = [Category(i, n) for i, n in zip(vocabulary("coco_instance").category_ids, vocabulary("coco_instance").names)]
    for name in names:
        cfg = load_preset_or_file(name)
        (mix,) = cfg.data.mix
        assert (mix.format, mix.class_map) == ("coco", VIS_PRESETS[dataset]), name
        assert cfg.data.train_ratio == 1.0 and 0 < mix.ratio <= 1.0
        assert resolve_class_map(mix, coco, target, "data.mix[0]") == class_map(mix.class_map)
    for name in ("mvc_oma/vipseg_r50_segmenter", "mvc_oma/vspw_r50_tracker", "local2global/vipseg_r50"):
        assert load_preset_or_file(name).data.mix == ()
