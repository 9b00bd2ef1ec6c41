"""Renders the sample catalog's media from item latents: text, images and WAV audio.

Each modality expresses its own 2-d block of the item's latent taste vector
(plus a cue of its genre), so each one carries signal about who will like the
item: text through mood words, images through hue and stripe density, audio
through pitch and pulse rate.
"""

from __future__ import annotations

import io
import wave

import numpy as np

GENRES = ("action", "comedy", "drama", "horror", "romance", "scifi", "documentary", "animation")
GENRE_NOUNS = {
    "action": ("chase", "heist", "showdown", "mission", "escape"),
    "comedy": ("wedding", "roommate", "road trip", "mixup", "reunion"),
    "drama": ("inheritance", "verdict", "letters", "harvest", "crossing"),
    "horror": ("cellar", "curse", "lighthouse", "visitor", "hollow"),
    "romance": ("summer", "promise", "ballroom", "postcard", "garden"),
    "scifi": ("orbit", "signal", "colony", "android", "wormhole"),
    "documentary": ("glacier", "market", "reef", "archive", "frontier"),
    "animation": ("toybox", "dragon", "robot", "forest", "bakery"),
}
# Mood words sit on a circle; an item's text-block angle makes nearby words likely.
MOOD_WORDS = (
    "gentle", "bright", "playful", "witty", "bold", "fierce", "gritty", "dark",
    "eerie", "haunting", "melancholy", "tender", "dreamy", "serene", "hopeful", "warm",
)  # fmt: skip
FILLER_WORDS = ("story", "journey", "tale", "film", "picture", "adventure", "portrait", "saga")
SAMPLE_RATE = 16_000
IMAGE_SIZE = 64


def _angle(block: np.ndarray) -> float:
    """Angle of a 2-d latent block in [0, 2π)."""
    return float(np.arctan2(block[1], block[0]) % (2 * np.pi))


def _strength(block: np.ndarray) -> float:
    """Magnitude of a 2-d latent block squashed into [0, 1]."""
    return float(np.tanh(np.linalg.norm(block)))


def mood_weights(text_block: np.ndarray, sharpness: float = 4.0) -> np.ndarray:
    """[16] probabilities of each mood word for an item's text latent block."""
    word_angles = np.arange(len(MOOD_WORDS)) * 2 * np.pi / len(MOOD_WORDS)
    logits = sharpness * np.cos(word_angles - _angle(text_block))
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def render_text(rng: np.random.Generator, genre: str, text_block: np.ndarray) -> tuple[str, str]:
    """A (title, description) pair whose mood words follow the item's text latent."""
    moods = rng.choice(MOOD_WORDS, size=4, p=mood_weights(text_block))
    noun = rng.choice(GENRE_NOUNS[genre])
    title = f"The {moods[0].capitalize()} {noun.title()}"
    filler = rng.choice(FILLER_WORDS, size=2)
    article = "an" if noun[0] in "aeiou" else "a"
    description = (
        f"A {moods[1]} {genre} {filler[0]} about {article} {noun}. "
        f"{moods[2].capitalize()} and {moods[3]}, this {filler[1]} stays with you."
    )
    return title, description


def render_image(rng: np.random.Generator, image_block: np.ndarray, genre_index: int) -> np.ndarray:
    """[64, 64, 3] uint8: hue from the image latent's angle, stripe density from its magnitude.

    A corner swatch encodes the genre, as a poster's typography would.
    """
    hue = _angle(image_block) / (2 * np.pi)
    stripes = 2 + 10 * _strength(image_block)
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] / IMAGE_SIZE
    tilt = rng.uniform(-0.5, 0.5)
    wave_ = 0.5 + 0.5 * np.sin(2 * np.pi * stripes * (x + tilt * y) + rng.uniform(0, 2 * np.pi))
    value = 0.45 + 0.5 * wave_
    rgb = _hsv_to_rgb(np.full_like(value, hue), np.full_like(value, 0.75), value)
    swatch_hue = genre_index / len(GENRES)
    rgb[:12, :12] = _hsv_to_rgb(np.array(swatch_hue), np.array(1.0), np.array(1.0))
    noise = rng.normal(0, 0.03, rgb.shape)
    return np.clip((rgb + noise) * 255, 0, 255).astype(np.uint8)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    channels = [np.select([i == k for k in range(6)], [c[j] for c in choices]) for j in range(3)]
    return np.stack(channels, axis=-1).astype(np.float64)


def render_audio(
    rng: np.random.Generator, audio_block: np.ndarray, genre_index: int, seconds: float
) -> np.ndarray:
    """[seconds * 16000] float waveform in [-1, 1]: pitch from the audio latent's angle,
    pulse rate from its magnitude, and a timbre (harmonic mix) per genre."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    # Angles map to 110-880 Hz on a log scale: three octaves of pitch.
    f0 = 110.0 * 2 ** (3 * _angle(audio_block) / (2 * np.pi))
    pulse_hz = 1.0 + 7.0 * _strength(audio_block)
    harmonics = 1 + genre_index % 4
    tone = sum(
        np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, harmonics + 1)
    )
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * pulse_hz * t) ** 2
    signal = tone * envelope + rng.normal(0, 0.02, t.shape)
    return 0.8 * signal / np.max(np.abs(signal))


def wav_bytes(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM mono WAV bytes of a float waveform in [-1, 1]."""
    pcm = np.clip(np.round(waveform * 32767), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()


def image_bytes(pixels: np.ndarray, fmt: str) -> bytes:
    """JPEG (quality 90) or PNG bytes of a [H, W, 3] uint8 image; deterministic."""
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(pixels, mode="RGB")
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
