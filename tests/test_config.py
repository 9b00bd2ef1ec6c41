"""Config: presets, YAML, `--set` overrides with type checks, and the saved round trip."""

import dataclasses

import pytest
import yaml

from tfrs_mm import config as config_lib
from tfrs_mm.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips(name, tmp_path):
    config = get_preset(name)
    assert config.preset == name
    path = config_lib.save_config(config, str(tmp_path))
    assert config_lib.load_config(path) == config


def test_presets_differ_where_they_should():
    assert get_preset("demo").train.epochs < get_preset("default").train.epochs
    assert get_preset("movielens").data.rating_threshold == 3.0
    assert get_preset("lastfm").model.modalities == ("text", "audio")


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("demo").train.epochs = 5


def test_overrides_are_parsed_and_typed():
    config = config_lib.apply_overrides(
        get_preset("demo"),
        [
            "train.batch_size=512",
            "train.learning_rate=3e-4",
            "model.modalities=[text, image]",
            "data.split_ratios=[0.7, 0.2, 0.1]",
            "data.rating_threshold=4",
            "model.fusion=attention",
            "train.cache_dataset=false",
        ],
    )
    assert config.train.batch_size == 512
    assert config.train.learning_rate == pytest.approx(3e-4)
    assert config.model.modalities == ("text", "image")
    assert config.data.split_ratios == (0.7, 0.2, 0.1)
    assert config.data.rating_threshold == 4.0 and isinstance(config.data.rating_threshold, float)
    assert config.model.fusion == "attention"
    assert config.train.cache_dataset is False
    assert config.data.history_length == get_preset("demo").data.history_length  # untouched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=big", "expected int"),
        ("train.batch_size=true", "expected int"),
        ("model.fusion=concta", "must be one of"),
        ("train.nope=1", "unknown config field train.nope"),
        ("trian.epochs=1", "unknown config section 'trian'"),
        ("train.epochs", "must look like section.field=value"),
        ("data.split_ratios=[0.5, 0.5]", "expected 3 values"),
        ("model.modalities=text", "expected a list"),
    ],
)
def test_bad_overrides_fail_clearly(override, message):
    with pytest.raises(ValueError, match=message):
        config_lib.apply_overrides(get_preset("default"), [override])


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"preset": "movielens", "train": {"epochs": 2}, "index": {"k": 20}}))
    config = config_lib.load_config(str(path), overrides=["train.epochs=3"])
    assert config.preset == "movielens"
    assert config.train.epochs == 3  # override beats file
    assert config.index.k == 20  # file beats preset
    assert config.data.rating_threshold == 3.0  # preset beats defaults


def test_unknown_preset_and_bad_file(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        config_lib.load_config(preset="huge")
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        config_lib.load_config(str(path))


def test_saved_config_is_plain_yaml(tmp_path):
    path = config_lib.save_config(get_preset("demo"), str(tmp_path))
    with open(path) as f:
        data = yaml.safe_load(f)
    assert set(data) == {"preset", *config_lib.SECTIONS}
    assert data["model"]["modalities"] == ["text", "image", "audio"]
