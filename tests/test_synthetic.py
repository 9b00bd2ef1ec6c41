"""The sample catalog: determinism, real media, missing modalities, cold items, taste signal."""

import csv
import hashlib
import os
import wave

import numpy as np
import pytest
from PIL import Image

from tfrs_mm.data import raw, sample_probe
from tfrs_mm.data.synthetic import SampleSpec, generate_sample
from tfrs_mm.data.validate import validate_raw

SPEC = SampleSpec(num_items=300, num_users=200, seed=3, audio_seconds=1.0)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sample") / "raw")
    generate_sample(out, SPEC)
    return out


def _digest(directory):
    digests = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_same_seed_gives_byte_identical_output(sample, tmp_path):
    again = str(tmp_path / "again")
    generate_sample(again, SPEC)
    assert _digest(again) == _digest(sample)


def test_other_seed_gives_other_catalog(sample, tmp_path):
    other = str(tmp_path / "other")
    generate_sample(other, SampleSpec(num_items=300, num_users=200, seed=4, audio_seconds=1.0))
    a, b = _digest(sample), _digest(other)
    assert a[raw.ITEMS_FILE] != b[raw.ITEMS_FILE]
    assert a[raw.INTERACTIONS_FILE] != b[raw.INTERACTIONS_FILE]


def test_media_are_real_jpeg_png_and_16k_mono_wav(sample):
    items = _rows(os.path.join(sample, raw.ITEMS_FILE))
    formats = set()
    for row in items:
        if row["image"]:
            with Image.open(os.path.join(sample, row["image"])) as image:
                image.load()
                formats.add(image.format)
                assert image.mode == "RGB" and image.size == (64, 64)
        if row["audio"]:
            with wave.open(os.path.join(sample, row["audio"]), "rb") as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
                assert w.getnframes() == 16_000
    assert formats == {"JPEG", "PNG"}


def test_some_items_lack_a_modality_and_some_are_cold(sample):
    items = _rows(os.path.join(sample, raw.ITEMS_FILE))
    interacted = {r["item_id"] for r in _rows(os.path.join(sample, raw.INTERACTIONS_FILE))}
    assert 0 < sum(not r["image"] for r in items) < len(items) * 0.3
    assert 0 < sum(not r["audio"] for r in items) < len(items) * 0.3
    assert 0 < sum(not r["description"] for r in items) < len(items) * 0.2
    cold = [r["item_id"] for r in items if r["item_id"] not in interacted]
    assert len(cold) >= round(SPEC.cold_items * SPEC.num_items)


def test_sample_validates_cleanly_with_declared_user_columns(sample):
    report = validate_raw(sample)
    assert report.problems == []
    assert report.counts["items"] == SPEC.num_items
    assert report.counts["users"] == SPEC.num_users
    info = raw.read_info(sample)
    assert {c.name for c in info.user_columns} == {"age", "gender"}
    assert info.counts["interactions"] == report.counts["interactions"]


def test_every_modality_carries_taste_signal(sample):
    features = sample_probe.media_features(sample)
    sequences = sample_probe.user_sequences(sample)
    rng = np.random.default_rng(0)
    for modality, by_item in features.items():
        auc = sample_probe.content_auc(sequences, by_item)
        # Control: the same probe on shuffled features finds nothing, so the probe can fail.
        keys = sorted(by_item)
        shuffled = dict(zip(keys, [by_item[k] for k in rng.permutation(keys)]))
        control = sample_probe.content_auc(sequences, shuffled)
        assert auc > 0.62, (modality, auc)
        assert abs(control - 0.5) < 0.06, (modality, control)


def test_media_render_the_latent_blocks(sample):
    truth = {r["item_id"]: r for r in _rows(os.path.join(sample, "truth", "items.csv"))}
    features = sample_probe.media_features(sample)
    errors = {}
    for modality in ("image", "audio"):
        diffs = []
        for item, feature in features[modality].items():
            angle = np.arctan2(float(truth[item][f"{modality}_1"]), float(truth[item][f"{modality}_0"]))
            diffs.append(np.angle(np.exp(1j * (np.arctan2(feature[1], feature[0]) - angle))))
        errors[modality] = float(np.median(np.abs(diffs)))
    assert errors["image"] < 0.15 and errors["audio"] < 0.15, errors


def test_truth_drivers_come_from_earlier_history(sample):
    truth = _rows(os.path.join(sample, "truth", "interactions.csv"))
    seen: dict[str, set[str]] = {}
    for row in truth:
        history = seen.setdefault(row["user_id"], set())
        if row["driver_item"]:
            assert row["driver_item"] in history
        assert row["driver_modality"] in ("text", "image", "audio", "collaborative")
        history.add(row["item_id"])
    assert sum(bool(r["driver_item"]) for r in truth) > len(truth) * 0.5


def test_refuses_to_overwrite_foreign_content(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_sample(str(tmp_path), SPEC)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_an_earlier_sample(sample, tmp_path):
    out = str(tmp_path / "raw")
    small = SampleSpec(num_items=20, num_users=5, seed=1, audio_seconds=0.5)
    generate_sample(out, small)
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_sample(out, small)
    generate_sample(out, small, overwrite=True)
    assert len(_rows(os.path.join(out, raw.ITEMS_FILE))) == 20
