"""Shared test helpers: where the offline datasets live, and tiny raw datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """The offline datasets folder (`../shared/data`), or None when absent.

    `TFRS_MM_SHARED_DATA` overrides the location.
    """
    candidate = Path(os.environ.get("TFRS_MM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


def require_shared_data(*parts: str) -> Path:
    """Returns `shared/data/<parts>`, skipping the test when it is not there."""
    root = shared_data_dir()
    if root is None:
        pytest.skip("../shared/data is absent; set TFRS_MM_SHARED_DATA to run this test")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return root


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
)
WAV_SILENCE = (  # 16 kHz mono 16-bit, zero frames
    b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
    b"\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"
)


def write_raw(
    root: Path,
    items: str = "item_id,title,image,audio\ni1,One,images/a.png,audio/a.wav\ni2,Two,,\n",
    interactions: str = "user_id,item_id,timestamp,rating\nu1,i1,100,4\nu1,i2,200,5\n",
    users: str | bytes | None = None,
    info: str | None = None,
) -> Path:
    """Writes a tiny raw dataset (valid by default) with one PNG and one WAV; returns its root.

    Pass `str` for UTF-8 text or `bytes` to write exact bytes (e.g. invalid UTF-8).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    (root / "images" / "a.png").write_bytes(PNG_1PX)
    (root / "audio" / "a.wav").write_bytes(WAV_SILENCE)
    files = {"items.csv": items, "interactions.csv": interactions, "users.csv": users, "dataset.json": info}
    for name, content in files.items():
        if content is None:
            continue
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (root / name).write_bytes(data)
    return root


FAKE_DIMS = {"text": 8, "image": 3, "audio": 4}


def export_fake_encoders(directory: Path) -> dict[str, tuple[str, int]]:
    """Tiny SavedModel encoders with the real encoders' interface, for fast pipeline tests.

    text: [B] strings → [B, 8] hashed bag of words; image: [B] encoded bytes → [B, 3]
    mean RGB; audio: [B, T] waveform → [B, 4] summary statistics. Returns
    {modality: (path, dim)}.
    """
    import tensorflow as tf

    class Text(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text):
            words = tf.strings.split(tf.strings.lower(text))
            buckets = tf.strings.to_hash_bucket_fast(words, FAKE_DIMS["text"])
            counts = tf.math.bincount(tf.cast(buckets, tf.int32), minlength=8, maxlength=8, axis=-1)
            return tf.math.l2_normalize(tf.cast(counts, tf.float32) + 1e-3, axis=-1)

    class Image(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, image_bytes):
            def one(data):
                pixels = tf.io.decode_image(data, channels=3, expand_animations=False)
                return tf.reduce_mean(tf.cast(pixels, tf.float32), axis=[0, 1]) / 255.0

            return tf.map_fn(one, image_bytes, fn_output_signature=tf.float32)

    class Audio(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
        def __call__(self, waveform):
            stats = [tf.reduce_mean(waveform, 1), tf.math.reduce_std(waveform, 1)]
            stats += [tf.reduce_max(waveform, 1), tf.reduce_min(waveform, 1)]
            return tf.stack(stats, axis=1)

    paths = {}
    for name, module in (("text", Text()), ("image", Image()), ("audio", Audio())):
        path = str(directory / f"fake_{name}")
        tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
        paths[name] = (path, FAKE_DIMS[name])
    return paths
