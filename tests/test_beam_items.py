"""The items job: each PTransform with TestPipeline + assert_that, then the job end to end."""

import glob
import io
import json
import os
import wave

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.dead_letters import DEAD_LETTER
from beam_jobs.embed import EmbedWithEncoder
from beam_jobs.item_media import (
    DecodeAudioFn,
    ReadImageFn,
    TruncatedAudioError,
    decode_audio,
    fit_length,
    resample,
)
from beam_jobs.item_records import DedupeItems, ItemRecord, ParseItemFn, normalize_text
from beam_jobs.items import ItemsJobSpec, ModalitySource, build_items_pipeline
from beam_jobs.read_tables import TableRow
from tests.helpers import PNG_1PX, export_fake_encoders
from tfrs_mm import schema
from tfrs_mm.data import raw
from tfrs_mm.data.synthetic import SampleSpec, generate_sample

DIRECT = ["--runner=DirectRunner"]


def item(item_id="i1", line=2, **fields):
    base = {"title": "", "text": "", "categories": (), "image": "", "audio": "", "extras": {}}
    return ItemRecord(item_id=item_id, file="items.csv", line=line, **{**base, **fields})


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fake_encoders(tmp_path_factory):
    return export_fake_encoders(tmp_path_factory.mktemp("encoders"))


def test_normalize_text():
    assert normalize_text("  Cafe\u0301\tdu\x00 monde \n") == "Café du monde"


def test_parse_item_types_columns_and_dead_letters_bad_values():
    declared = (raw.ColumnDecl("year", "numeric"), raw.ColumnDecl("tags", "multi_categorical"))
    rows = [
        TableRow(
            "items.csv",
            2,
            {"item_id": "i1", "title": " A  B ", "description": "d", "year": "1999", "tags": "x|y"},
        ),
        TableRow("items.csv", 3, {"item_id": "i2", "categories": "c1| |c2", "year": "", "tags": ""}),
        TableRow("items.csv", 4, {"item_id": "i3", "year": "nineteen", "tags": ""}),
        TableRow("items.csv", 5, {"item_id": "i4\ni5", "year": "", "tags": ""}),  # breaks the vocab
    ]
    with TestPipeline(argv=DIRECT) as p:
        out = (
            p | beam.Create(rows) | beam.ParDo(ParseItemFn(declared)).with_outputs(DEAD_LETTER, main="items")
        )
        summary = out.items | beam.Map(
            lambda r: (r.item_id, r.text, r.categories, r.extras["year"], r.extras["tags"])
        )
        assert_that(
            summary,
            equal_to([("i1", "A B. d", (), 1999.0, ("x", "y")), ("i2", "", ("c1", "c2"), None, ())]),
            label="items",
        )
        letters = out[DEAD_LETTER] | beam.Map(lambda d: (d.line, d.reason))
        assert_that(letters, equal_to([(4, "bad declared value"), (5, "invalid id")]), label="letters")


def test_dedupe_keeps_the_first_by_file_and_line():
    records = [item("i1", 5, title="late"), item("i1", 2, title="early"), item("i2", 3)]
    with TestPipeline(argv=DIRECT) as p:
        out = p | beam.Create(records) | DedupeItems()
        assert_that(out["items"] | beam.Map(lambda r: (r.item_id, r.line)), equal_to([("i1", 2), ("i2", 3)]))
        letters = out[DEAD_LETTER] | beam.Map(lambda d: (d.stage, d.reason, d.line))
        assert_that(letters, equal_to([("items.dedupe", "duplicate item", 5)]), label="letters")


def test_read_image_checks_paths_and_decodes(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ok.png").write_bytes(PNG_1PX)
    (tmp_path / "images" / "cut.png").write_bytes(PNG_1PX[:30])
    (tmp_path / "images" / "empty.jpg").write_bytes(b"")
    (tmp_path / "outside.png").write_bytes(PNG_1PX)
    (tmp_path / "raw").mkdir()
    os.rename(tmp_path / "images", tmp_path / "raw" / "images")
    records = [
        item("ok", image="images/ok.png"),
        item("cut", image="images/cut.png"),
        item("empty", image="images/empty.jpg"),
        item("gone", image="images/gone.png"),
        item("escape", image="../outside.png"),
        item("abs", image=str(tmp_path / "outside.png")),
        item("file-uri", image="file:///etc/passwd"),
    ]
    with TestPipeline(argv=DIRECT) as p:
        out = (
            p
            | beam.Create(records)
            | beam.ParDo(ReadImageFn(str(tmp_path / "raw"))).with_outputs(DEAD_LETTER, main="ok")
        )
        assert_that(out.ok, equal_to([("ok", PNG_1PX)]))
        letters = out[DEAD_LETTER] | beam.Map(lambda d: (d.row["item_id"], d.reason))
        expected = [
            ("cut", "corrupt image"),
            ("empty", "missing file"),
            ("gone", "missing file"),
            ("escape", "refused path"),
            ("abs", "refused path"),
            ("file-uri", "refused path"),
        ]
        assert_that(letters, equal_to(expected), label="letters")


def test_decode_audio_resamples_mixes_and_fits_length(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.repeat(np.sin(2 * np.pi * 440 * t)[:, None], 2, axis=1).reshape(-1) * 0.5
    (tmp_path / "a.wav").write_bytes(wav_bytes(stereo, 8000, channels=2))
    (tmp_path / "noise.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (tmp_path / "zero.wav").write_bytes(b"")
    records = [item("a", audio="a.wav"), item("noise", audio="noise.wav"), item("zero", audio="zero.wav")]
    with TestPipeline(argv=DIRECT) as p:
        fn = DecodeAudioFn(str(tmp_path), seconds=2.0)
        out = p | beam.Create(records) | beam.ParDo(fn).with_outputs(DEAD_LETTER, main="ok")
        shapes = out.ok | beam.Map(
            lambda kv: (kv[0], kv[1].shape, kv[1].dtype.name, round(float(np.abs(kv[1]).max()), 1))
        )
        assert_that(shapes, equal_to([("a", (32000,), "float32", 0.5)]))
        letters = out[DEAD_LETTER] | beam.Map(lambda d: (d.row["item_id"], d.reason))
        assert_that(
            letters, equal_to([("noise", "undecodable audio"), ("zero", "missing file")]), label="letters"
        )


def test_decode_audio_refuses_truncated_wavs():
    whole = wav_bytes(np.sin(np.arange(16000) / 10.0) * 0.5, 16000)
    half = whole[: len(whole) // 2]
    patched = half[:4] + (len(half) - 8).to_bytes(4, "little") + half[8:]  # only the data chunk tells
    for cut in (half, whole[:30], whole[:-1], patched):
        with pytest.raises(TruncatedAudioError) as error:
            decode_audio(cut)
        assert error.value.reason == "truncated audio"
    streamed = whole[:4] + b"\xff\xff\xff\xff" + whole[8:40] + b"\xff\xff\xff\xff" + whole[44:]
    for complete in (whole, streamed):  # a streamed WAV's writer never learned the sizes
        assert decode_audio(complete)[0].shape == (16000,)


def test_resample_keeps_the_pitch_and_fit_length_tiles_or_crops():
    tone = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32)
    out = resample(tone, 22050, 16000)
    assert len(out) == 16000
    assert np.argmax(np.abs(np.fft.rfft(out))) == 440  # 1 s at 16 kHz: bin k is k Hz
    assert np.array_equal(fit_length(np.arange(3.0), 7), [0, 1, 2, 0, 1, 2, 0])
    assert np.array_equal(fit_length(np.arange(10.0), 4), [3, 4, 5, 6])


def test_embed_with_encoder_matches_a_direct_call(fake_encoders):
    import tensorflow as tf

    path, _ = fake_encoders["text"]
    texts = [("a", "red apple"), ("b", "blue sky blue"), ("c", "")]
    direct = tf.saved_model.load(path)(tf.constant([t for _, t in texts])).numpy()
    with TestPipeline(argv=DIRECT) as p:
        out = p | beam.Create(texts) | EmbedWithEncoder(path, batch_size=2)
        rounded = out | beam.Map(lambda kv: (kv[0], tuple(np.round(kv[1], 5))))
        assert_that(rounded, equal_to([(k, tuple(np.round(v, 5))) for (k, _), v in zip(texts, direct)]))


def _run_items_job(raw_dir, out_dir, encoders, item_columns=()):
    spec = ItemsJobSpec(
        raw_dir=raw_dir,
        out_dir=out_dir,
        items_pattern=os.path.join(raw_dir, raw.ITEMS_FILE),
        modalities={m: ModalitySource(dim=d, model_path=p) for m, (p, d) in encoders.items()},
        item_columns=item_columns,
        audio_seconds=1.0,
        batch_size=16,
    )
    with TestPipeline(argv=DIRECT) as p:
        build_items_pipeline(p, spec)
    with open(os.path.join(out_dir, "stats", "items.json")) as f:
        return spec, json.load(f)


def _read_items(out_dir, dims):
    import tensorflow as tf

    specs = schema.item_features(dims)
    files = glob.glob(os.path.join(out_dir, "items-*.tfrecord.gz"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return {r["item_id"]: r for r in (schema.decode_example(specs, x.numpy()) for x in records)}


def test_items_job_on_the_sample_catalog(tmp_path, fake_encoders):
    raw_dir = str(tmp_path / "raw")
    generate_sample(raw_dir, SampleSpec(num_items=40, num_users=10, audio_seconds=0.5))
    _, stats = _run_items_job(raw_dir, str(tmp_path / "data"), fake_encoders)
    with open(os.path.join(raw_dir, raw.ITEMS_FILE)) as f:
        import csv

        rows = {r["item_id"]: r for r in csv.DictReader(f)}
    items = _read_items(str(tmp_path / "data"), {m: d for m, (_, d) in fake_encoders.items()})
    assert set(items) == set(rows) and stats["written"] == stats["input"] == 40
    for item_id, record in items.items():
        assert record["image_present"] == bool(rows[item_id]["image"])
        assert record["audio_present"] == bool(rows[item_id]["audio"])
        assert record["text_present"] == 1 and record["categories"].tolist() == [rows[item_id]["categories"]]
        if not record["image_present"]:
            assert not record["image_embedding"].any()  # a missing image is a mask bit, not an image
    for modality in ("text", "image", "audio"):
        assert stats[f"{modality}/input"] == stats[f"{modality}/embedded"]
    vocab = (tmp_path / "data" / "vocab" / "item_id.txt").read_text().split()
    assert vocab == sorted(rows)


def test_items_job_dead_letters_every_bad_input(tmp_path, fake_encoders):
    raw_dir = tmp_path / "raw"
    generate_sample(str(raw_dir), SampleSpec(num_items=20, num_users=5, audio_seconds=0.5))
    jpeg = next(raw_dir.glob("images/*.jpg"))
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # truncated JPEG
    wavs = sorted(raw_dir.glob("audio/*.wav"))
    wavs[0].write_bytes(b"")  # zero-byte WAV
    wavs[1].write_bytes(b"this is not audio at all")
    with open(raw_dir / raw.ITEMS_FILE, "ab") as f:
        f.write(b"i00001,Duplicate,,,,\n")  # duplicate id
        f.write(b"i90000,Too,many,fields,,,,\n")  # wrong field count
        f.write(b"i90001,Caf\xe9,,,,\n")  # invalid UTF-8
        f.write(b",No id,,,,\n")  # empty id
        f.write(b"i90002,Escape,,,../../etc/passwd,\n")  # path outside the catalog
    _, stats = _run_items_job(str(raw_dir), str(tmp_path / "data"), fake_encoders)
    (path,) = glob.glob(str(tmp_path / "data" / "dead_letter" / "items-*.jsonl"))
    with open(path) as f:
        letters = [json.loads(x) for x in f]
    reasons = sorted((d["stage"], d["reason"]) for d in letters)
    assert reasons == [
        ("items.audio", "missing file"),
        ("items.audio", "undecodable audio"),
        ("items.dedupe", "duplicate item"),
        ("items.image", "corrupt image"),
        ("items.image", "refused path"),
        ("items.read", "empty required field"),
        ("items.read", "non-UTF-8 bytes"),
        ("items.read", "wrong field count"),
    ]
    item_level = sum(
        v for k, v in stats.items() if k.startswith(("dead_letter/items.read", "dead_letter/items.dedupe"))
    )
    assert stats["input"] == stats["written"] + item_level == 25
    for modality in ("image", "audio"):
        assert (
            stats[f"{modality}/input"] == stats[f"{modality}/embedded"] + stats[f"{modality}/dead_lettered"]
        )


def test_image_sizes_are_read_from_headers_and_bombs_refused_before_decoding():
    import struct
    import zlib

    import tensorflow as tf

    from beam_jobs.item_media import MAX_IMAGE_PIXELS, ImageTooLargeError, ReadImageFn, declared_pixels

    image = tf.zeros([7, 5, 3], tf.uint8)
    assert declared_pixels(tf.io.encode_png(image).numpy()) == 35
    assert declared_pixels(tf.io.encode_jpeg(image).numpy()) == 35
    assert declared_pixels(b"GIF89a\x05\x00\x07\x00") == 35
    assert declared_pixels(b"not an image") is None
    side = 1 + int(MAX_IMAGE_PIXELS**0.5)
    body = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + body
        + struct.pack(">I", zlib.crc32(b"IHDR" + body))
    )
    with pytest.raises(ImageTooLargeError, match="declares"):
        ReadImageFn("/nonexistent").decode(bomb)
