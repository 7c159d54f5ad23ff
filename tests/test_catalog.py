"""The shipped dataset vocabularies and COCO -> video class maps (`vidseg.data.catalog`)."""

import pytest

from vidseg.data.catalog import DatasetVocabulary, class_map, class_map_names, vocabulary, vocabulary_names
from vidseg.errors import ConfigError

# name -> (classes, things)
COUNTS = {
    "coco_panoptic": (133, 80),
    "coco_instance": (80, 80),
    "ade20k": (150, 0),
    "cityscapes": (19, 8),
    "ytvis19": (40, 40),
    "ytvis21": (40, 40),
    "ovis": (25, 25),
    "vipseg": (124, 58),
    "vspw": (124, 0),
}


def test_known_names():
    assert vocabulary_names() == sorted(COUNTS)
    assert class_map_names() == ["coco_to_ovis", "coco_to_ytvis19", "coco_to_ytvis21"]


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_counts_and_unique_ids(name):
    v = vocabulary(name)
    assert isinstance(v, DatasetVocabulary) and v.name == name
    assert (len(v), v.num_things) == COUNTS[name]
    assert len(v.names) == len(v.is_thing) == len(v.category_ids)
    assert len(set(v.category_ids)) == len(v.category_ids)
    assert len(set(v.names)) == len(v.names)
    assert all(isinstance(n, str) and n for n in v.names)


def test_spot_checks():
    coco = vocabulary("coco_panoptic")
    assert coco.names[0] == "person" and coco.names[79] == "toothbrush" and coco.category_ids[79] == 90
    assert coco.names[80] == "banner" and coco.names[-1] == "rug-merged" and coco.category_ids[-1] == 200
    assert all(coco.is_thing[:80]) and not any(coco.is_thing[80:])  # things first, then stuff
    assert list(coco.category_ids[:80]) == sorted(coco.category_ids[:80])
    assert vocabulary("coco_instance").names == coco.names[:80]
    assert vocabulary("coco_instance").category_ids == coco.category_ids[:80]
    yt19 = vocabulary("ytvis19")
    assert yt19.category_ids == tuple(range(1, 41))
    assert yt19.names[yt19.contiguous_id(1)] == "person" and yt19.names[-1] == "tennis_racket"
    assert vocabulary("ytvis21").names[13] == "flying_disc"
    ovis = vocabulary("ovis")
    assert ovis.category_ids == tuple(range(1, 26)) and ovis.names[0] == "Person" and ovis.names[-1] == "Vehical"
    city = vocabulary("cityscapes")
    assert city.names[0] == "road" and city.category_ids[0] == 7 and city.category_ids[-1] == 33
    assert [n for n, t in zip(city.names, city.is_thing) if t] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"
    ]
    ade = vocabulary("ade20k")
    assert ade.category_ids == tuple(range(150)) and ade.names[12] == "person" and ade.names[-1] == "flag"
    vip, vspw = vocabulary("vipseg"), vocabulary("vspw")
    assert vip.category_ids == vspw.category_ids == tuple(range(124))
    assert vip.names == vspw.names and vip.names[60] == "person" and vip.names[-1] == "train"
    assert vip.is_thing[60] and not vip.is_thing[0]


def test_contiguous_id_unknown_is_key_error():
    with pytest.raises(KeyError):
        vocabulary("coco_panoptic").contiguous_id(12)  # a COCO id that is not a category


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="ytvis19"):  # the message names the known ones
        vocabulary("ytvis2019")
    with pytest.raises(ConfigError, match="coco_to_ovis"):
        class_map("coco_to_nowhere")
    with pytest.raises(ConfigError):
        vocabulary("coco_to_ovis")  # a class map is not a vocabulary


@pytest.mark.parametrize("name, target", [("coco_to_ytvis19", "ytvis19"), ("coco_to_ytvis21", "ytvis21"),
                                          ("coco_to_ovis", "ovis")])
def test_class_maps_map_onto_valid_ids(name, target):
    m = class_map(name)
    assert m and m == class_map(target)  # the target name alone also works
    assert set(m) <= set(vocabulary("coco_instance").category_ids)
    assert set(m.values()) <= set(vocabulary(target).category_ids)


def test_class_maps_pair_matching_classes():
    coco, yt19, yt21, ovis = (vocabulary(n) for n in ("coco_instance", "ytvis19", "ytvis21", "ovis"))

    def pairs(m, v):
        return {coco.names[coco.contiguous_id(a)]: v.names[v.contiguous_id(b)] for a, b in m.items()}

    p19, p21, po = pairs(class_map("ytvis19"), yt19), pairs(class_map("ytvis21"), yt21), pairs(class_map("ovis"), ovis)
    assert p19["person"] == "person" and p19["car"] == "sedan" and p19["tennis racket"] == "tennis_racket"
    assert p21["frisbee"] == "flying_disc" and p21["bird"] == "bird" and p21["giraffe"] == "giraffe"
    assert po["truck"] == "Vehical" and po["giraffe"] == "Giraffe" and po["boat"] == "Boat"
    assert len(class_map("ytvis19")) == 21 and len(class_map("ytvis21")) == 23 and len(class_map("ovis")) == 17
