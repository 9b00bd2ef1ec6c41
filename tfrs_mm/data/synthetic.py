"""The sample catalog: a complete raw dataset drawn from a latent taste model.

Every item has a genre and a latent vector made of four 2-d blocks: `text`,
`image`, `audio` and `collaborative`. Each medium renders its own block (see
`sample_media`), and the collaborative block shows only through interactions.
Every user has a taste vector of the same shape and weights over the four
blocks, so some users choose by look, some by sound, some by description.

Each interaction is either a taste choice (softmax over the weighted block
affinities) or a "because you watched X" choice (the item most like a recent
one in one block). The generator writes what drove each choice to `truth/`,
which later stages use to check that explanations point at the right history
item and modality. Output is byte-identical for a given spec.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import numpy as np

from tfrs_mm.data import raw, sample_media
from tfrs_mm.data.sample_media import GENRES

BLOCKS = ("text", "image", "audio", "collaborative")
TRUTH_DIR = "truth"
SAMPLE_NAME = "sample"
_START_TIME = 1_700_000_000  # 2023-11-14: timestamps are Unix seconds from here on


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """What to generate; every probability is per item or per interaction."""

    num_items: int = 1000
    num_users: int = 600
    seed: int = 0
    audio_seconds: float = 3.0  # one musicnn patch
    mean_interactions: float = 25.0  # per user, log-normally spread
    min_interactions: int = 5  # enough for an 8:1:1 split per user
    missing_image: float = 0.10
    missing_audio: float = 0.10
    missing_description: float = 0.05
    cold_items: float = 0.08  # items that never appear in interactions
    png_share: float = 0.3  # the rest of the images are JPEG
    because_you_watched: float = 0.35  # share of choices driven by one recent item

    def __post_init__(self):
        if self.num_items < 10 or self.num_users < 1:
            raise ValueError("the sample needs at least 10 items and 1 user")
        for name in ("missing_image", "missing_audio", "missing_description", "cold_items", "png_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class Latents:
    """The hidden state behind a sample catalog.

    Attributes:
        genre: [I] genre index per item.
        items: [I, 4, 2] item latent blocks, in `BLOCKS` order.
        popularity: [I] log-popularity bias.
        users: [U, 4, 2] user taste blocks.
        weights: [U, 4] how much each block matters to each user (sums to 1).
    """

    genre: np.ndarray
    items: np.ndarray
    popularity: np.ndarray
    users: np.ndarray
    weights: np.ndarray


def sample_latents(spec: SampleSpec, rng: np.random.Generator) -> Latents:
    """Draws genre centroids, then items and users around them."""
    centroids = rng.normal(0.0, 1.2, size=(len(GENRES), len(BLOCKS), 2))
    genre = rng.integers(0, len(GENRES), size=spec.num_items)
    items = centroids[genre] + rng.normal(0.0, 0.6, size=(spec.num_items, len(BLOCKS), 2))
    favourite = rng.integers(0, len(GENRES), size=spec.num_users)
    users = centroids[favourite] + rng.normal(0.0, 0.6, size=(spec.num_users, len(BLOCKS), 2))
    return Latents(
        genre=genre,
        items=items,
        popularity=rng.normal(0.0, 0.7, size=spec.num_items),
        users=users,
        weights=rng.dirichlet(np.ones(len(BLOCKS)), size=spec.num_users),
    )


@dataclasses.dataclass(frozen=True)
class Interaction:
    user: int
    item: int
    timestamp: int
    rating: int
    driver_item: int  # -1 when nothing in the history drove the choice
    driver_block: int


def sample_interactions(
    spec: SampleSpec, latents: Latents, eligible: np.ndarray, rng: np.random.Generator
) -> list[Interaction]:
    """Simulates each user's sequence of choices among `eligible` ([I] bool) items."""
    affinity = np.einsum("ubd,ibd->uib", latents.users, latents.items)  # [U, I, 4]
    interactions = []
    for user in range(spec.num_users):
        count = max(spec.min_interactions, int(rng.lognormal(np.log(spec.mean_interactions), 0.5)))
        count = min(count, int(eligible.sum()))
        interactions.extend(_user_sequence(spec, latents, affinity[user], user, count, eligible, rng))
    return interactions


def _user_sequence(spec, latents, affinity, user, count, eligible, rng) -> list[Interaction]:
    weights = latents.weights[user]
    score = affinity @ weights + 0.5 * latents.popularity  # [I]
    # Ratings compare a choice with the user's own top decile, so chosen items spread over 1-5.
    z = (score - np.quantile(score[eligible], 0.9)) / score[eligible].std()
    available = eligible.copy()
    history: list[int] = []
    out = []
    timestamp = _START_TIME + int(rng.integers(0, 180 * 86_400))
    for _ in range(count):
        if history and rng.random() < spec.because_you_watched:
            driver = history[int(rng.integers(max(0, len(history) - 3), len(history)))]
            block = int(rng.choice(len(BLOCKS), p=weights))
            distance = np.sum((latents.items[:, block] - latents.items[driver, block]) ** 2, axis=1)
            logits = -distance / 0.3 + 0.5 * latents.popularity
        else:
            logits = score / 0.5
            driver, block = -1, -1
        logits = np.where(available, logits, -np.inf)
        probs = np.exp(logits - logits.max())
        item = int(rng.choice(len(probs), p=probs / probs.sum()))
        if driver < 0:
            block = int(np.argmax(weights * affinity[item]))
            driver = _most_similar(latents.items, history, item, block)
        rating = int(np.clip(np.round(3.6 + 1.2 * z[item] + rng.normal(0, 0.8)), 1, 5))
        timestamp += int(rng.exponential(2 * 86_400)) + 60
        out.append(Interaction(user, item, timestamp, rating, driver, block))
        available[item] = False
        history.append(item)
    return out


def _most_similar(items: np.ndarray, history: list[int], item: int, block: int) -> int:
    if not history:
        return -1
    distance = np.sum((items[history, block] - items[item, block]) ** 2, axis=1)
    return history[int(np.argmin(distance))]


def item_id(index: int) -> str:
    return f"i{index:05d}"


def user_id(index: int) -> str:
    return f"u{index:05d}"


def generate_sample(out: str, spec: SampleSpec = SampleSpec(), overwrite: bool = False) -> raw.RawDatasetInfo:
    """Writes a complete raw sample dataset (CSV files, images, WAVs, truth) into `out`.

    Args:
        out: Output directory; must be empty or absent unless `overwrite`.
        spec: What to generate.
        overwrite: Replace an earlier sample catalog in `out` (never other content).

    Returns:
        The `dataset.json` contents, with counts.
    """
    _prepare_output(out, overwrite)
    start = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    latents = sample_latents(spec, rng)
    has = {
        "image": rng.random(spec.num_items) >= spec.missing_image,
        "audio": rng.random(spec.num_items) >= spec.missing_audio,
        "description": rng.random(spec.num_items) >= spec.missing_description,
        "png": rng.random(spec.num_items) < spec.png_share,
    }
    cold = rng.permutation(spec.num_items)[: round(spec.cold_items * spec.num_items)]
    eligible = np.ones(spec.num_items, dtype=bool)
    eligible[cold] = False
    interactions = sample_interactions(spec, latents, eligible, rng)

    _write_items(out, spec, latents, has)
    _write_users(out, spec, rng)
    raw.write_csv(
        os.path.join(out, raw.INTERACTIONS_FILE),
        ("user_id", "item_id", "timestamp", "rating"),
        ((user_id(x.user), item_id(x.item), x.timestamp, x.rating) for x in interactions),
    )
    _write_truth(out, latents, interactions)
    info = _dataset_info(spec, has, len(cold), len(interactions))
    # The timing note is for people; keep dataset.json byte-identical across runs.
    raw.write_info(info, out)
    return dataclasses.replace(info, notes=(*info.notes, f"generated in {time.perf_counter() - start:.1f} s"))


def _dataset_info(
    spec: SampleSpec, has: dict[str, np.ndarray], cold: int, interactions: int
) -> raw.RawDatasetInfo:
    counts = {
        "items": spec.num_items,
        "users": spec.num_users,
        "interactions": interactions,
        "items_with_image": int(has["image"].sum()),
        "items_with_audio": int(has["audio"].sum()),
        "items_with_description": int(has["description"].sum()),
        "cold_items": cold,
    }
    return raw.RawDatasetInfo(
        name=SAMPLE_NAME,
        source=f"tfrs_mm sample generator, {dataclasses.asdict(spec)}",
        user_columns=(raw.ColumnDecl("age", "numeric"), raw.ColumnDecl("gender", "categorical")),
        counts=counts,
        notes=(
            f"{TRUTH_DIR}/ holds the generator's ground truth (latents, what drove each choice); "
            "it is not model input.",
        ),
    )


def _prepare_output(out: str, overwrite: bool) -> None:
    if os.path.isdir(out) and os.listdir(out):
        info_path = os.path.join(out, raw.INFO_FILE)
        ours = os.path.exists(info_path) and raw.read_info(out).name == SAMPLE_NAME
        if not (overwrite and ours):
            hint = " (pass --overwrite to replace it)" if ours else ""
            raise FileExistsError(f"{out} is not empty{hint}; choose a new directory")
        shutil.rmtree(out)
    for sub in ("images", "audio", TRUTH_DIR):
        os.makedirs(os.path.join(out, sub), exist_ok=True)


def _write_items(out: str, spec: SampleSpec, latents: Latents, has: dict[str, np.ndarray]) -> None:
    rows = []
    for index in range(spec.num_items):
        # One stream per item, so an item's media do not depend on the others.
        rng = np.random.default_rng([spec.seed, 1, index])
        genre_index = int(latents.genre[index])
        genre = GENRES[genre_index]
        blocks = latents.items[index]
        title, description = sample_media.render_text(rng, genre, blocks[0])
        image = audio = ""
        if has["image"][index]:
            fmt = "png" if has["png"][index] else "jpeg"
            image = f"images/{item_id(index)}.{'png' if fmt == 'png' else 'jpg'}"
            pixels = sample_media.render_image(rng, blocks[1], genre_index)
            _write_bytes(out, image, sample_media.image_bytes(pixels, fmt))
        if has["audio"][index]:
            audio = f"audio/{item_id(index)}.wav"
            waveform = sample_media.render_audio(rng, blocks[2], genre_index, spec.audio_seconds)
            _write_bytes(out, audio, sample_media.wav_bytes(waveform))
        description = description if has["description"][index] else ""
        rows.append((item_id(index), title, description, genre, image, audio))
    raw.write_csv(os.path.join(out, raw.ITEMS_FILE), raw.ITEM_COLUMNS, rows)


def _write_bytes(out: str, relative: str, data: bytes) -> None:
    with open(os.path.join(out, relative), "wb") as f:
        f.write(data)


def _write_users(out: str, spec: SampleSpec, rng: np.random.Generator) -> None:
    ages = rng.integers(16, 76, size=spec.num_users)
    genders = rng.choice(np.array(["F", "M", "X"]), size=spec.num_users, p=[0.48, 0.48, 0.04])
    raw.write_csv(
        os.path.join(out, raw.USERS_FILE),
        ("user_id", "age", "gender"),
        ((user_id(u), int(ages[u]), str(genders[u])) for u in range(spec.num_users)),
    )


def _write_truth(out: str, latents: Latents, interactions: list[Interaction]) -> None:
    block_columns = [f"{b}_{d}" for b in BLOCKS for d in range(2)]
    raw.write_csv(
        os.path.join(out, TRUTH_DIR, "items.csv"),
        ("item_id", "genre", "popularity", *block_columns),
        (
            (item_id(i), GENRES[g], round(float(p), 6), *np.round(latents.items[i].reshape(-1), 6).tolist())
            for i, (g, p) in enumerate(zip(latents.genre, latents.popularity))
        ),
    )
    raw.write_csv(
        os.path.join(out, TRUTH_DIR, "users.csv"),
        ("user_id", *[f"weight_{b}" for b in BLOCKS], *block_columns),
        (
            (user_id(u), *np.round(w, 6).tolist(), *np.round(latents.users[u].reshape(-1), 6).tolist())
            for u, w in enumerate(latents.weights)
        ),
    )
    raw.write_csv(
        os.path.join(out, TRUTH_DIR, "interactions.csv"),
        ("user_id", "item_id", "driver_item", "driver_modality"),
        (
            (
                user_id(x.user),
                item_id(x.item),
                item_id(x.driver_item) if x.driver_item >= 0 else "",
                BLOCKS[x.driver_block],
            )
            for x in interactions
        ),
    )
