"""musicnn's log-mel front end in TensorFlow ops (no librosa).

It follows librosa 0.11, which the fixtures were made with: `center=True`
with zero padding, periodic Hann window, power spectrogram, Slaney mel
filterbank (fmin 0, fmax 8 kHz), then `log10(10000 · mel + 1)`.

One deliberate departure from musicnn: the original takes that log in
float16, where `10000 · mel` overflows to inf for mel powers above 6.55 (loud
tonal or bass content). We take it in float32, so the result is finite
everywhere; where the original is finite the two differ only by float16
rounding of the log (≤ 2e-3 at values around 4), which moves clip vectors by
≤ ~2e-3. The mel powers are still rounded to float16 first, as musicnn's
inputs were.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

SAMPLE_RATE = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s at 16 kHz with hop 256
# frames = 1 + samples // HOP with centred framing, so one patch needs this many samples.
MIN_SAMPLES = (PATCH_FRAMES - 1) * HOP
_FLOAT16_MAX = 65504.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, np.float64)
    log_part = 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27)
    return np.where(f >= 1000, log_part, f / (200.0 / 3))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m >= 15, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)), m * (200.0 / 3))


def slaney_mel_matrix() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=512, n_mels=96) transposed: `[257, 96]` float32."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_freqs = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    weights = np.maximum(0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]))
    weights *= (2.0 / (mel_freqs[2 : N_MELS + 2] - mel_freqs[:N_MELS]))[:, None]  # Slaney area norm
    return weights.T.astype(np.float32)


def log_mel(waveform: tf.Tensor) -> tf.Tensor:
    """Waveforms → musicnn log-mel spectrograms.

    Args:
        waveform: `[B, T]` float32, 16 kHz mono in [-1, 1].

    Returns:
        `[B, 1 + T // 256, 96]` float32.
    """
    padded = tf.pad(waveform, [[0, 0], [N_FFT // 2, N_FFT // 2]])  # librosa center=True, zeros
    stft = tf.signal.stft(padded, N_FFT, HOP, N_FFT, window_fn=tf.signal.hann_window, pad_end=False)
    mel = tf.matmul(tf.abs(stft) ** 2, tf.constant(slaney_mel_matrix()))
    # Clip first so the float16 rounding can never produce inf.
    mel = tf.cast(tf.cast(tf.minimum(mel, _FLOAT16_MAX), tf.float16), tf.float32)
    return tf.math.log(10000.0 * mel + 1.0) / tf.math.log(10.0)


def to_patches(spec: tf.Tensor) -> tf.Tensor:
    """`[B, F, 96]` → `[B, k, 187, 96]` non-overlapping 3 s patches, k = F // 187; trailing frames dropped.

    Raises:
        tf.errors.InvalidArgumentError: when F < 187 (fewer than `MIN_SAMPLES` samples).
    """
    frames = tf.shape(spec)[1]
    check = tf.debugging.assert_greater_equal(
        frames,
        PATCH_FRAMES,
        message=f"musicnn needs at least {MIN_SAMPLES} samples (~3 s at 16 kHz) per clip; tile short clips",
    )
    # Without the dependency the network would fail first, with a cryptic shape error.
    with tf.control_dependencies([check]):
        k = frames // PATCH_FRAMES
    return tf.reshape(spec[:, : k * PATCH_FRAMES], [tf.shape(spec)[0], k, PATCH_FRAMES, N_MELS])
