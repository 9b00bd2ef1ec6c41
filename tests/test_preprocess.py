"""`tfrs-mm preprocess` end to end: both Beam jobs with the real encoders, then the manifest."""

import glob
import json
import os

import numpy as np
import pytest

from tests.helpers import require_shared_data
from tfrs_mm import cli, schema
from tfrs_mm.data import raw
from tfrs_mm.data.synthetic import SampleSpec, generate_sample


def run_preprocess(raw_dir, out_dir, cache, *extra):
    argv = ["preprocess", "--raw", str(raw_dir), "--out", str(out_dir), "--model-cache", cache, *extra]
    return cli.main([*argv, "--runner=DirectRunner"])


def read_examples(pattern, specs):
    import tensorflow as tf

    files = sorted(glob.glob(pattern))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(10_000)
    parsed = [tf.io.parse_example(batch, schema.parsing_spec(specs)) for batch in dataset]
    return {k: np.concatenate([p[k].numpy() for p in parsed]) for k in parsed[0] if k != "categories"}


def dead_letters(data_dir):
    letters = []
    for path in glob.glob(os.path.join(data_dir, "dead_letter", "*.jsonl")):
        with open(path) as f:
            letters += [json.loads(line) for line in f]
    return letters


def test_manifest_describes_what_was_written(sample_dataset):
    manifest = schema.read_manifest(str(sample_dataset / "data"))
    assert manifest.embedding_dims == {"text": 384, "image": 1280, "audio": 200}
    assert {e.name for e in manifest.encoders} == {"all-MiniLM-L6-v2", "EfficientNet-Lite0", "MSD_musicnn"}
    assert all(len(e.weights_sha256) == 64 and e.version for e in manifest.encoders)
    assert all(c.balanced for c in manifest.stage_counts) and manifest.problems() == []
    stages = {c.stage: c for c in manifest.stage_counts}
    assert stages["items"].input == stages["items"].written == 120
    assert (
        stages["interactions.parse"].input
        == len((sample_dataset / "raw" / "interactions.csv").read_text().splitlines()) - 1
    )
    assert manifest.split.protocol == "random"
    assert manifest.vocabulary("item_id").size == 120
    assert (sample_dataset / "data" / "config.yaml").exists()


def test_item_records_carry_embeddings_and_presence_masks(sample_dataset):
    manifest = schema.read_manifest(str(sample_dataset / "data"))
    items = read_examples(str(sample_dataset / "data" / "items-*.tfrecord.gz"), manifest.item_features)
    assert len(items["item_id"]) == 120
    text = items["text_embedding"]
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)  # MiniLM is L2-normalised
    with open(sample_dataset / "raw" / "items.csv") as f:
        import csv

        has_image = {r["item_id"]: bool(r["image"]) for r in csv.DictReader(f)}
    for item_id, present, vector in zip(items["item_id"], items["image_present"], items["image_embedding"]):
        assert present == has_image[item_id.decode()]
        assert vector.any() == bool(present)


def test_text_embeddings_group_items_by_genre(sample_dataset):
    """Real embeddings: an item's nearest text neighbour shares its genre far more often than chance."""
    manifest = schema.read_manifest(str(sample_dataset / "data"))
    items = read_examples(str(sample_dataset / "data" / "items-*.tfrecord.gz"), manifest.item_features)
    with open(sample_dataset / "raw" / "items.csv") as f:
        import csv

        genre = {r["item_id"]: r["categories"] for r in csv.DictReader(f)}
    genres = [genre[i.decode()] for i in items["item_id"]]
    similarity = items["text_embedding"] @ items["text_embedding"].T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    agreement = np.mean([genres[i] == genres[j] for i, j in enumerate(nearest)])
    assert agreement > 0.5  # 8 genres: chance is about 0.125


def test_interaction_examples_parse_with_the_manifest_spec(sample_dataset):
    manifest = schema.read_manifest(str(sample_dataset / "data"))
    for split in ("train", "valid", "test"):
        examples = read_examples(
            str(sample_dataset / "data" / f"{split}-*.tfrecord.gz"), manifest.interaction_features
        )
        assert len(examples["item_id"]) == manifest.split.counts[split] > 0
        assert examples["history"].shape[1] == manifest.interaction_features[2].shape[0]


def test_corrupted_catalog_dead_letters_every_bad_input(tmp_path, encoder_cache):
    raw_dir = tmp_path / "raw"
    generate_sample(str(raw_dir), SampleSpec(num_items=40, num_users=20, seed=2))
    jpeg = sorted(raw_dir.glob("images/*.jpg"))[0]
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 3])  # truncated JPEG
    wavs = sorted(raw_dir.glob("audio/*.wav"))
    wavs[0].write_bytes(b"")  # zero-byte WAV
    wavs[1].write_bytes(b"RIFF....WAVEthis is text, not audio")  # non-audio WAV
    with open(raw_dir / "items.csv", "ab") as f:
        f.write(b'i80000,"unterminated\n')  # bad row: swallows the rest of the file
    with open(raw_dir / "interactions.csv", "ab") as f:
        f.write(b"u00001,i99999,1700000000,4\n")  # unknown item
        f.write(b"u00001,i00003,1700000001,nan\n")  # NaN rating
        f.write(b"u\xff\xfe,i00003,1700000002,3\n")  # invalid UTF-8
        f.write(b"u00002,i00004\n")  # wrong field count
    out = tmp_path / "data"
    assert run_preprocess(raw_dir, out, encoder_cache, "--preset", "demo") == 0
    manifest = schema.read_manifest(str(out))
    assert all(c.balanced for c in manifest.stage_counts)
    reasons = sorted({(d["stage"], d["reason"]) for d in dead_letters(out)})
    for expected in [
        ("items.image", "corrupt image"),
        ("items.audio", "missing file"),
        ("items.audio", "undecodable audio"),
        ("items.read", "malformed CSV"),
        ("interactions.validate", "unknown item"),
        ("interactions.parse", "non-UTF-8 bytes"),
        ("interactions.parse", "wrong field count"),
    ]:
        assert expected in reasons, (expected, reasons)
    assert any(r[0] == "interactions.validate" and "rating" in r[1] for r in reasons), reasons
    stages = {c.stage: c for c in manifest.stage_counts}
    assert stages["items"].written == 40 and stages["items.image"].dead_lettered == 1


def test_pseudonymized_user_ids_reach_no_output(tmp_path, encoder_cache, monkeypatch):
    raw_dir = tmp_path / "raw"
    generate_sample(str(raw_dir), SampleSpec(num_items=20, num_users=12, seed=3))
    key = tmp_path / "key"
    key.write_text("a-secret-key-of-enough-bytes")
    out = tmp_path / "data"
    code = run_preprocess(
        raw_dir,
        out,
        encoder_cache,
        "--preset",
        "demo",
        "--pseudonymize-users",
        "--pseudonym-key-file",
        str(key),
    )
    assert code == 0
    with open(raw_dir / "users.csv") as f:
        raw_users = [line.split(",")[0] for line in f.readlines()[1:]]
    for path in glob.glob(str(out / "**" / "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                content = f.read()
            if path.endswith(".gz"):
                import gzip

                content = gzip.decompress(content)
            assert not any(u.encode() in content for u in raw_users), path
            assert b"a-secret-key" not in content, path
    vocab = (out / "vocab" / "user_id.txt").read_text().split()
    assert vocab and all(u.startswith("p_") for u in vocab)


def test_split_needing_timestamps_is_refused_clearly(tmp_path, encoder_cache, capsys):
    raw_dir = tmp_path / "raw"
    generate_sample(str(raw_dir), SampleSpec(num_items=20, num_users=5, seed=1))
    info = raw.read_info(str(raw_dir))
    import dataclasses

    raw.write_info(dataclasses.replace(info, has_timestamps=False), str(raw_dir))
    code = run_preprocess(raw_dir, tmp_path / "data", encoder_cache, "--split", "leave-last-out")
    assert code == cli.EXIT_INVALID
    assert "timestamps" in capsys.readouterr().err


@pytest.mark.shared_data
def test_ml100k_with_posters_and_plots(tmp_path, encoder_cache):
    from tfrs_mm.data.loaders import load_dataset

    source = require_shared_data("ml-100k")
    load_dataset("movielens-100k", str(source), str(tmp_path / "raw"))
    out = tmp_path / "data"
    assert run_preprocess(tmp_path / "raw", out, encoder_cache, "--preset", "movielens") == 0
    manifest = schema.read_manifest(str(out))
    stages = {c.stage: c for c in manifest.stage_counts}
    assert stages["items"].written == 1682 and stages["items.image"].written == 1668
    assert stages["items.text"].written == 1681  # item 267 is titled "unknown": the loader leaves it empty
    assert manifest.embedding_dims == {"text": 384, "image": 1280}
    assert stages["interactions.parse"].input == 100_000
    assert stages["interactions.filter"].filtered > 0  # ratings below 3 under the movielens preset
    assert all(c.balanced for c in manifest.stage_counts)


def test_detect_modalities_reads_through_rows_the_jobs_will_dead_letter(tmp_path):
    from beam_jobs.preprocess import detect_modalities

    items = tmp_path / "items.csv"
    huge = b"x" * (2 << 20)  # past the csv module's default field limit
    items.write_bytes(
        b"item_id,title,description,image,audio\n"
        b"i1,Caf\xe9,,," + b"\n" + b"i2,Big," + huge + b",,\n" + b"i3,Fine,,images/a.png,audio/a.wav\n"
    )
    assert detect_modalities(str(items), raw.RawDatasetInfo()) == {"text", "image", "audio"}
