"""Feature specs and the manifest: what is written is what is parsed."""

import dataclasses
import json

import numpy as np
import pytest

from tfrs_mm import schema
from tfrs_mm.data.raw import ColumnDecl

DIMS = {"text": 4, "image": 3, "audio": 2}
EXTRA = (
    ColumnDecl("year", "numeric"),
    ColumnDecl("tags", "multi_categorical"),
    ColumnDecl("lang", "categorical"),
)


def _item_values():
    return {
        "item_id": "i1",
        "title": "Les Misérables",
        "categories": ["drama", "musical"],
        "text_embedding": np.array([0.1, -0.2, 0.3, 0.4], np.float32),
        "text_present": 1,
        "image_embedding": np.zeros(3, np.float32),
        "image_present": 0,
        "audio_embedding": np.array([1.5, 2.5], np.float32),
        "audio_present": 1,
        "year": 2012.0,
        "year_present": 1,
        "tags": [],
        "lang": "fr",
    }


def _manifest():
    return schema.Manifest(
        item_features=schema.item_features(DIMS, EXTRA),
        interaction_features=schema.interaction_features(history_length=5),
        encoders=tuple(
            schema.EncoderRecord(m, f"bundled://{m}", f"{m}-model", "0.1.0", d, weights_sha256="ab" * 32)
            for m, d in DIMS.items()
        ),
        vocabularies=(schema.VocabularyRecord("item_id", "vocab/item_id.txt", 10, 1),),
        item_frequencies="vocab/item_frequencies.tsv",
        split=schema.SplitRecord(
            "random", {"ratios": [0.8, 0.1, 0.1]}, {"train": 80, "valid": 10, "test": 10}
        ),
        stage_counts=(schema.StageCount("items", input=12, written=10, dead_lettered=2),),
        files={"items": "items-*.tfrecord.gz"},
        source={"name": "ml-1m", "has_timestamps": False},
        created_by="tfrs_mm 0.1.0",
    )


def test_item_example_round_trip_in_python():
    specs = schema.item_features(DIMS, EXTRA)
    values = _item_values()
    decoded = schema.decode_example(specs, schema.encode_example(specs, values))
    assert decoded["title"] == "Les Misérables"
    assert list(decoded["categories"]) == ["drama", "musical"]
    np.testing.assert_array_equal(decoded["text_embedding"], values["text_embedding"])
    assert decoded["image_present"] == 0 and decoded["year"] == 2012.0 and len(decoded["tags"]) == 0


def test_interaction_example_parses_with_tf():
    import tensorflow as tf

    specs = schema.interaction_features(history_length=3)
    values = {
        "user_id": "u1",
        "item_id": "i9",
        "history": ["", "i1", "i2"],
        "timestamp": 1_700_000_000,
        "rating": 4.0,
        "weight": 1.0,
    }
    serialized = schema.encode_example(specs, values)
    parsed = tf.io.parse_example([serialized, serialized], schema.parsing_spec(specs))
    assert parsed["history"].shape == (2, 3)
    assert parsed["history"].numpy()[1].tolist() == [b"", b"i1", b"i2"]
    assert parsed["timestamp"].dtype == tf.int64 and int(parsed["timestamp"][0]) == 1_700_000_000
    assert float(parsed["rating"][0]) == 4.0


def test_item_example_parses_with_tf_including_ragged():
    import tensorflow as tf

    specs = schema.item_features(DIMS, EXTRA)
    parsed = tf.io.parse_example([schema.encode_example(specs, _item_values())], schema.parsing_spec(specs))
    assert parsed["text_embedding"].shape == (1, 4)
    assert isinstance(parsed["categories"], tf.RaggedTensor)
    assert parsed["categories"].to_list() == [[b"drama", b"musical"]]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("text_embedding", np.zeros(5, np.float32), "expected shape"),
        ("audio_embedding", np.array([np.nan, 1.0], np.float32), "NaN or infinite"),
        ("categories", [["a"]], "expected a list"),
    ],
)
def test_encode_rejects_bad_values_naming_the_feature(name, value, message):
    specs = schema.item_features(DIMS, EXTRA)
    with pytest.raises(ValueError, match=f"feature '{name}': {message}"):
        schema.encode_example(specs, {**_item_values(), name: value})


def test_encode_rejects_missing_feature():
    specs = schema.item_features(DIMS, EXTRA)
    values = _item_values()
    del values["title"]
    with pytest.raises(ValueError, match="feature 'title' is missing"):
        schema.encode_example(specs, values)


def test_manifest_round_trip(tmp_path):
    manifest = _manifest()
    schema.write_manifest(manifest, str(tmp_path))
    again = schema.read_manifest(str(tmp_path))
    assert again == manifest
    assert again.embedding_dims == DIMS
    assert again.encoder("image").weights_sha256 == "ab" * 32
    assert again.vocabulary("item_id").size == 10
    assert again.split.counts["test"] == 10
    assert again.source["has_timestamps"] is False
    spec = {s.name: s for s in again.item_features}
    assert spec["text_embedding"].shape == (4,) and spec["categories"].varlen


def test_manifest_refuses_unbalanced_stage_counts(tmp_path):
    bad = dataclasses.replace(_manifest(), stage_counts=(schema.StageCount("items", 12, 10, 1),))
    with pytest.raises(ValueError, match="input 12 != written 10 \\+ dead-lettered 1"):
        schema.write_manifest(bad, str(tmp_path))
    data = _manifest().to_dict()
    data["stage_counts"][0]["written"] = 3
    (tmp_path / schema.MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="input 12 != written 3"):
        schema.read_manifest(str(tmp_path))


def test_manifest_rejects_other_versions_unknown_keys_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfrs-mm preprocess"):
        schema.read_manifest(str(tmp_path))
    for change, message in (({"schema_version": 99}, "unsupported"), ({"extra": 1}, "unknown keys")):
        (tmp_path / schema.MANIFEST_FILE).write_text(json.dumps({**_manifest().to_dict(), **change}))
        with pytest.raises(ValueError, match=message):
            schema.read_manifest(str(tmp_path))


def test_lookups_name_what_exists():
    with pytest.raises(KeyError, match="has no encoder 'smell'"):
        _manifest().encoder("smell")
