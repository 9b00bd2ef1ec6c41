"""Measures how much taste signal each modality of a raw dataset carries, without any model.

For each modality we compute a crude hand-made feature straight from the files
(image hue, audio pitch and pulse, mood-word counts of the text) and ask: does
an item's feature resemble the user's earlier items more than a random item's
does? The answer, as an AUC, is 0.5 for a modality without signal. The sample
generator is built so that every modality scores well above that.
"""

from __future__ import annotations

import csv
import os
import re
import wave
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from tfrs_mm.data import raw
from tfrs_mm.data.sample_media import MOOD_WORDS

Features = Mapping[str, np.ndarray]  # item_id -> [d] feature


def image_feature(path: str) -> np.ndarray:
    """[2] unit vector of the image's mean hue (the genre swatch corner excluded)."""
    from PIL import Image

    with Image.open(path) as image:
        hsv = np.asarray(image.convert("RGB").convert("HSV"), dtype=np.float64)
    hue = hsv[16:, 16:, 0].reshape(-1) / 256.0 * 2 * np.pi
    vector = np.array([np.cos(hue).mean(), np.sin(hue).mean()])
    return vector / (np.linalg.norm(vector) + 1e-9)


def audio_feature(path: str) -> np.ndarray:
    """[3]: pitch as a point on a circle (three octaves above 110 Hz), and pulse rate in [0, 1]."""
    with wave.open(path, "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
        rate = w.getframerate()
    spectrum = np.abs(np.fft.rfft(pcm))
    freqs = np.fft.rfftfreq(len(pcm), 1.0 / rate)
    band = (freqs >= 100) & (freqs <= 900)
    f0 = freqs[band][np.argmax(spectrum[band])]
    angle = 2 * np.pi * np.log2(f0 / 110.0) / 3.0
    envelope = np.abs(pcm).reshape(-1, rate // 100).mean(axis=1)  # 10 ms frames
    env_spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
    env_freqs = np.fft.rfftfreq(len(envelope), 0.01)
    pulse = env_freqs[1:][np.argmax(env_spectrum[1:])] / 16.0  # the |sin|² envelope beats at twice the rate
    return np.array([np.cos(angle), np.sin(angle), pulse])


def text_feature(text: str) -> np.ndarray:
    """[16] counts of each mood word."""
    words = re.findall(r"[a-z]+", text.lower())
    return np.array([words.count(w) for w in MOOD_WORDS], dtype=np.float64)


def media_features(raw_dir: str) -> dict[str, dict[str, np.ndarray]]:
    """Hand-made features per modality for every item that has that modality."""
    features: dict[str, dict[str, np.ndarray]] = {m: {} for m in raw.MODALITIES}
    with open(os.path.join(raw_dir, raw.ITEMS_FILE), encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            item = row["item_id"]
            text = f"{row.get('title', '')} {row.get('description', '')}"
            features["text"][item] = text_feature(text)
            if row.get("image"):
                features["image"][item] = image_feature(raw.resolve_media_path(raw_dir, row["image"]))
            if row.get("audio"):
                features["audio"][item] = audio_feature(raw.resolve_media_path(raw_dir, row["audio"]))
    return features


def user_sequences(raw_dir: str) -> dict[str, list[str]]:
    """Each user's items in time order."""
    events = defaultdict(list)
    with open(os.path.join(raw_dir, raw.INTERACTIONS_FILE), encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            events[row["user_id"]].append((int(row.get("timestamp") or 0), row["item_id"]))
    return {user: [item for _, item in sorted(seq)] for user, seq in events.items()}


def content_auc(sequences: Mapping[str, list[str]], features: Features, seed: int = 0) -> float:
    """AUC of "later item vs random item" by cosine similarity to the mean of earlier items.

    Args:
        sequences: user -> items in time order.
        features: item -> feature vector; items without one are skipped.
        seed: For sampling one negative per positive.

    Returns:
        The probability that a user's later item scores above a random item
        the user never chose (ties count half); 0.5 means no signal.
    """
    rng = np.random.default_rng(seed)
    catalog = sorted(features)
    wins = []
    for user in sorted(sequences):
        items = [i for i in sequences[user] if i in features]
        half = len(items) // 2
        if half < 2:
            continue
        profile = _unit(np.mean([_unit(features[i]) for i in items[:half]], axis=0))
        seen = set(sequences[user])
        for positive in items[half:]:
            negative = catalog[int(rng.integers(len(catalog)))]
            if negative in seen:
                continue
            pos, neg = profile @ _unit(features[positive]), profile @ _unit(features[negative])
            wins.append(1.0 if pos > neg else 0.5 if pos == neg else 0.0)
    if not wins:
        raise ValueError("no user has enough items with this modality to measure an AUC")
    return float(np.mean(wins))


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / (np.linalg.norm(vector) + 1e-9)


def modality_signal(raw_dir: str, seed: int = 0) -> dict[str, float]:
    """Content AUC per modality for a raw dataset with media (see `content_auc`)."""
    features = media_features(raw_dir)
    sequences = user_sequences(raw_dir)
    return {m: content_auc(sequences, f, seed) for m, f in features.items() if f}
