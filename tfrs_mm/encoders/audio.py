"""musicnn (MSD_musicnn) clip embeddings, exported waveform-in.

The network is rebuilt in tf-keras from the TF1 checkpoint in the `musicnn`
wheel, read with `tf.compat.v1.train.NewCheckpointReader`. Unlike the
original `musicnn.extractor`, a missing or unreadable checkpoint raises
instead of silently running random weights, every patch gets its own
embedding (the original repeats the first patch's), and the log-mel is taken
in float32 (see `_logmel.py`).

A clip's embedding is the mean, over its non-overlapping 3 s patches, of the
200-d "penultimate" layer (BatchNorm output of the 200-unit dense layer, before
dropout). Trailing audio shorter than a patch is dropped. A clip must hold at
least `MIN_SAMPLES` (47,616) samples, else the call fails with
InvalidArgumentError: tile short clips (`fit_to_length`) rather than pad them
with silence, which the model would hear as part of the music. It is a music
model: for speech or sound effects the embedding is only as meaningful as its
50 music tags.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from tfrs_mm.encoders._logmel import MIN_SAMPLES, N_MELS, PATCH_FRAMES, SAMPLE_RATE, log_mel, to_patches
from tfrs_mm.encoders._module import OUTPUT_KEY, EncoderModule

CHECKPOINT = "MSD_musicnn"
DIM = 200
WAVEFORM_SPEC = tf.TensorSpec([None, None], tf.float32, name="waveform")
WAV_BYTES_SPEC = tf.TensorSpec([None], tf.string, name="wav_bytes")

__all__ = [
    "MIN_SAMPLES",
    "SAMPLE_RATE",
    "AudioEncoderModule",
    "build_module",
    "build_network",
    "fit_to_length",
]


class _Checkpoint:
    """Layers of the TF1 graph are numbered in creation order: `conv2d_5`, `batch_normalization_3`."""

    def __init__(self, prefix: str):
        # The files are literally named ".index" / ".data-...", so the prefix ends with "/".
        self._reader = tf.compat.v1.train.NewCheckpointReader(prefix)

    def get(self, layer: str, index: int, name: str) -> np.ndarray:
        return self._reader.get_tensor(f"{layer}{'' if index == 0 else f'_{index}'}/{name}")

    def batch_norm(self, index: int) -> list[np.ndarray]:
        names = ("gamma", "beta", "moving_mean", "moving_variance")
        return [self.get("batch_normalization", index, n) for n in names]


def _bn(x: tf.Tensor, ckpt: _Checkpoint, index: int, name: str) -> tf.Tensor:
    layer = tf.keras.layers.BatchNormalization(epsilon=1e-3, name=name)
    y = layer(x)
    layer.set_weights(ckpt.batch_norm(index))
    return y


def _conv_relu(x: tf.Tensor, ckpt: _Checkpoint, index: int, name: str, **kwargs: str) -> tf.Tensor:
    kernel = ckpt.get("conv2d", index, "kernel")
    layer = tf.keras.layers.Conv2D(kernel.shape[-1], kernel.shape[:2], activation="relu", name=name, **kwargs)
    y = layer(x)
    layer.set_weights([kernel, ckpt.get("conv2d", index, "bias")])
    return y


def _max_over_frequency(x: tf.Tensor) -> tf.Tensor:
    """[B, T, F, C] → [B, T, C] with pooling layers rather than a Lambda."""
    pooled = tf.keras.layers.MaxPooling2D(pool_size=(1, x.shape[2]))(x)
    return tf.keras.layers.Reshape((PATCH_FRAMES, x.shape[-1]))(pooled)


def _front_end(x: tf.Tensor, ckpt: _Checkpoint) -> tf.Tensor:
    """Timbral (7×38, 7×67) and temporal (128/64/32×1) filters, each max-pooled over frequency."""
    padded = tf.keras.layers.ZeroPadding2D(((3, 3), (0, 0)))(x)
    branches = [
        _max_over_frequency(_bn(_conv_relu(padded, ckpt, 0, "t74"), ckpt, 1, "t74_bn")),
        _max_over_frequency(_bn(_conv_relu(padded, ckpt, 1, "t77"), ckpt, 2, "t77_bn")),
    ]
    for j in range(3):
        conv = _conv_relu(x, ckpt, 2 + j, f"s{j}", padding="same")
        branches.append(_max_over_frequency(_bn(conv, ckpt, 3 + j, f"s{j}_bn")))
    return tf.keras.layers.Concatenate(axis=2)(branches)  # [B, T, 561]


def _mid_conv(x: tf.Tensor, ckpt: _Checkpoint, conv: int, bn: int, name: str) -> tf.Tensor:
    # The original's conv2d [7, C] "valid" on time-padded input is a Conv1D "same".
    kernel = ckpt.get("conv2d", conv, "kernel")[:, :, 0, :]
    layer = tf.keras.layers.Conv1D(kernel.shape[-1], 7, padding="same", activation="relu", name=name)
    y = layer(x)
    layer.set_weights([kernel, ckpt.get("conv2d", conv, "bias")])
    return _bn(y, ckpt, bn, name + "_bn")


def build_network(checkpoint_prefix: str) -> tf.keras.Model:
    """tf-keras MSD_musicnn up to the penultimate layer.

    Args:
        checkpoint_prefix: `<musicnn package>/MSD_musicnn/` (with the trailing slash).

    Returns:
        A model: log-mel patches `[B, 187, 96]` → `[B, 200]` penultimate features.
    """
    layers = tf.keras.layers
    ckpt = _Checkpoint(checkpoint_prefix)
    inputs = tf.keras.Input((PATCH_FRAMES, N_MELS), name="logmel")
    x = _bn(layers.Reshape((PATCH_FRAMES, N_MELS, 1))(inputs), ckpt, 0, "in_bn")
    front = _front_end(x, ckpt)
    m1 = _mid_conv(front, ckpt, 5, 6, "mid1")
    m2 = layers.Add()([_mid_conv(m1, ckpt, 6, 7, "mid2"), m1])
    m3 = layers.Add()([_mid_conv(m2, ckpt, 7, 8, "mid3"), m2])
    mid = layers.Concatenate(axis=2)([front, m1, m2, m3])  # [B, T, 753]
    width = mid.shape[-1]
    pooled_max = layers.Reshape((width, 1))(layers.GlobalMaxPooling1D()(mid))
    pooled_mean = layers.Reshape((width, 1))(layers.GlobalAveragePooling1D()(mid))
    # TF1 flattened [max, mean] per channel, so the two pools interleave.
    flat = layers.Reshape((2 * width,))(layers.Concatenate(axis=2)([pooled_max, pooled_mean]))
    h = _bn(flat, ckpt, 9, "pool_bn")
    dense = layers.Dense(DIM, activation="relu", name="dense")
    h = dense(h)
    dense.set_weights([ckpt.get("dense", 0, "kernel"), ckpt.get("dense", 0, "bias")])
    return tf.keras.Model(inputs, _bn(h, ckpt, 10, "penultimate"), name="msd_musicnn")


class AudioEncoderModule(EncoderModule):
    """`waveform` [B, T] float32 or `wav_bytes` [B] string, 16 kHz mono → `embedding` [B, 200]."""

    def __init__(self, network: tf.keras.Model):
        super().__init__(network, network.variables, name="audio_encoder")

    @tf.function(input_signature=[WAVEFORM_SPEC])
    def __call__(self, waveform: tf.Tensor) -> tf.Tensor:
        """[B, T ≥ 47616] float32 16 kHz mono in [-1, 1] → [B, 200]: mean over 3 s patches."""
        patches = to_patches(log_mel(waveform))  # [B, k, 187, 96]
        batch, k = tf.shape(patches)[0], tf.shape(patches)[1]
        features = self.network(tf.reshape(patches, [-1, PATCH_FRAMES, N_MELS]))
        return tf.reduce_mean(tf.reshape(features, [batch, k, DIM]), axis=1)

    @tf.function(input_signature=[WAV_BYTES_SPEC])
    def embed_wav(self, wav_bytes: tf.Tensor) -> tf.Tensor:
        """[B] WAV files (16 kHz, any channel count, mixed to mono; any lengths) → [B, 200]."""

        def one(contents: tf.Tensor) -> tf.Tensor:
            audio, rate = tf.audio.decode_wav(contents)
            # Resampling in-graph would hide a data problem: other rates are refused.
            tf.debugging.assert_equal(rate, SAMPLE_RATE, message="WAV must be sampled at 16 kHz")
            return self(tf.reduce_mean(audio, axis=1)[None])[0]

        return tf.map_fn(one, wav_bytes, fn_output_signature=tf.TensorSpec([DIM], tf.float32))

    @tf.function(input_signature=[WAVEFORM_SPEC])
    def serve(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_KEY: self(waveform)}

    @tf.function(input_signature=[WAV_BYTES_SPEC])
    def serve_wav(self, wav_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_KEY: self.embed_wav(wav_bytes)}

    def serving_signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        return {
            "serving_default": self.serve.get_concrete_function(),
            "wav_bytes": self.serve_wav.get_concrete_function(),
        }


def build_module(package_dir: str, **unused: object) -> AudioEncoderModule:
    """Builds the exportable audio encoder from the `musicnn` wheel's directory."""
    prefix = os.path.join(package_dir, CHECKPOINT) + "/"
    if not os.path.exists(prefix + ".index"):
        raise FileNotFoundError(f"musicnn checkpoint not found at {prefix}.index")
    return AudioEncoderModule(build_network(prefix))


def fit_to_length(samples: np.ndarray, num_samples: int = 3 * SAMPLE_RATE) -> np.ndarray:
    """Tiles a short clip (or crops a long one) to exactly `num_samples` samples.

    Args:
        samples: `[T]` mono waveform, T ≥ 1.

    Returns:
        `[num_samples]` float32: the clip repeated end to end, then cut.

    Raises:
        ValueError: for an empty clip.
    """
    samples = np.asarray(samples, np.float32).reshape(-1)
    if samples.size == 0:
        raise ValueError("cannot fit an empty clip")
    repeats = -(-num_samples // samples.size)
    return np.tile(samples, repeats)[:num_samples]
