from __future__ import annotations

import dataclasses

import pytest

from vidseg.config import (
    DecoderConfig,
    ExperimentConfig,
    apply_overrides,
    dump_yaml,
    load_preset_or_file,
    load_yaml,
    parse_yaml,
    preset_names,
    valid_keys,
)
from vidseg.errors import ConfigError


def test_default_config_round_trips_byte_identical():
    text = dump_yaml(ExperimentConfig())
    assert dump_yaml(parse_yaml(text)) == text


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_dump_load_dump_is_byte_identical(name, tmp_path):
    first = dump_yaml(load_preset_or_file(name))
    path = tmp_path / "c.yaml"
    path.write_text(first)
    assert dump_yaml(load_yaml(path)) == first


def test_presets_exist():
    assert "mask2former/synthetic_tiny" in preset_names()


def test_partial_yaml_keeps_defaults():
    config = parse_yaml("model:\n  decoder:\n    num_layers: 3\n")
    assert config.model.decoder.num_layers == 3
    assert config.model.decoder.hidden_dim == DecoderConfig().hidden_dim


def test_configs_are_frozen():
    config = ExperimentConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3  # type: ignore[misc]


def test_dotted_override_sets_nested_value_with_type():
    config = apply_overrides(ExperimentConfig(), ["model.decoder.num_layers=6", "optim.lr=1e-3", "seed=7"])
    assert config.model.decoder.num_layers == 6
    assert config.optim.lr == pytest.approx(1e-3) and isinstance(config.optim.lr, float)
    assert config.seed == 7


def test_override_int_into_float_field_becomes_float():
    assert apply_overrides(ExperimentConfig(), ["optim.lr=1"]).optim.lr == 1.0


def test_override_tuple_and_optional():
    config = apply_overrides(ExperimentConfig(), ["data.min_size=[320, 360]", "inference.min_size=null"])
    assert config.data.min_size == (320, 360)
    assert config.inference.min_size is None


def test_unknown_key_names_key_and_closest_match():
    with pytest.raises(ConfigError, match=r"model\.decoder\.num_layer: unknown key.*'model\.decoder\.num_layers'"):
        apply_overrides(ExperimentConfig(), ["model.decoder.num_layer=6"])


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.lrr: unknown key.*'optim\.lr'"):
        load_yaml(path)


@pytest.mark.parametrize(
    "override",
    ["model.decoder.num_layers=abc", "model.decoder.num_layers=1.5", "model.reid_head=1",
     "model.classification=softmaxx", "data.min_size=3", "model.decoder=5"],
)
def test_wrong_type_raises_config_error_naming_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(ExperimentConfig(), [override])


def test_override_into_leaf_with_subkey_is_error():
    with pytest.raises(ConfigError, match="seed"):
        apply_overrides(ExperimentConfig(), ["seed.x=1"])


def test_invalid_yaml_is_config_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_yaml(path)


def test_valid_keys_lists_leaves():
    keys = valid_keys(ExperimentConfig)
    assert "model.decoder.num_layers" in keys and "optim.lr" in keys and "model" not in keys
