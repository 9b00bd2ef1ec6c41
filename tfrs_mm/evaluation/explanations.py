"""Do the ranker's explanations point at what really drove a choice? (sample catalog only)

The sample generator records, for every interaction, the earlier item that
drove it and the modality through which it did (`RAW/truth/interactions.csv`;
`collaborative` is the id token). For each test interaction whose driver item
is in the query history, the ranker scores the chosen item and we read:

- `driver_attention`: attention mass on the driver item, against `chance`, the
  mass a uniform attention would give it (its count / non-padding history length);
- `driver_top1`: how often the driver is the most-attended history item,
  against the chance of that under uniform attention;
- `modality_weight` / `modality_top1`: the same for the driver modality among
  the candidate's present tokens.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from tfrs_mm import schema
from tfrs_mm.schema import features as F

TRUTH_FILE = os.path.join("truth", "interactions.csv")
TOKEN_OF_MODALITY = {"collaborative": "id", "text": "text", "image": "image", "audio": "audio"}


def read_drivers(raw_dir: str) -> dict[tuple[str, str], tuple[str, str]] | None:
    """(user, item) → (driver item, driver token) from the generator's truth, or None without it."""
    path = os.path.join(raw_dir or "", TRUTH_FILE)
    if not os.path.exists(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return {
            (r["user_id"], r["item_id"]): (r["driver_item"], TOKEN_OF_MODALITY.get(r["driver_modality"], ""))
            for r in csv.DictReader(f)
        }


def explanation_quality(ranker, data_dir: str, manifest: schema.Manifest, split: str = "test") -> dict | None:
    """Attention on true drivers against chance; None when the dataset has no ground truth."""
    from tfrs_mm.training.data import interaction_dataset

    drivers = read_drivers(manifest.source.get("raw_dir", ""))
    if drivers is None or manifest.source.get("pseudonymized_users"):
        return None
    token_names = list(ranker.item_tower.token_names)
    rows = {
        key: []
        for key in (
            "attention",
            "chance",
            "top1",
            "top1_chance",
            "weight",
            "w_chance",
            "w_top1",
            "wt1_chance",
        )
    }
    for batch in interaction_dataset(data_dir, manifest, split, batch_size=256):
        users, items, histories = (batch[k].numpy().astype(str) for k in (F.USER_ID, F.ITEM_ID, F.HISTORY))
        out = ranker(users, histories, items[:, None])
        attention = out["history_attention"].numpy()[:, 0]
        weights = out["modality_weights"].numpy()[:, 0]
        for i, (user, item) in enumerate(zip(users, items)):
            driver, token = drivers.get((user, item), ("", ""))
            _add_history_row(rows, histories[i], attention[i], driver)
            if token in token_names and weights[i].sum() > 0:
                _add_modality_row(rows, weights[i], token_names.index(token))
    return _summarise(rows)


def _add_history_row(rows, history, attention, driver) -> None:
    present = history != F.PADDING_ID
    is_driver = present & (history == driver)
    if not driver or not is_driver.any():
        return
    rows["attention"].append(attention[is_driver].sum())
    rows["chance"].append(is_driver.sum() / present.sum())
    rows["top1"].append(float(is_driver[np.argmax(np.where(present, attention, -1.0))]))
    rows["top1_chance"].append(is_driver.sum() / present.sum())


def _add_modality_row(rows, weights, index) -> None:
    present = weights > 0
    if not present[index]:
        return
    rows["weight"].append(weights[index])
    rows["w_chance"].append(1.0 / present.sum())
    rows["w_top1"].append(float(np.argmax(weights) == index))
    rows["wt1_chance"].append(1.0 / present.sum())


def _summarise(rows) -> dict:
    mean = lambda key: float(np.mean(rows[key])) if rows[key] else None  # noqa: E731
    out = {
        "examples_with_driver_in_history": len(rows["attention"]),
        "driver_attention": mean("attention"),
        "driver_attention_chance": mean("chance"),
        "driver_top1": mean("top1"),
        "driver_top1_chance": mean("top1_chance"),
        "examples_with_driver_modality": len(rows["weight"]),
        "modality_weight": mean("weight"),
        "modality_weight_chance": mean("w_chance"),
        "modality_top1": mean("w_top1"),
        "modality_top1_chance": mean("wt1_chance"),
    }
    for key in ("driver_attention", "modality_weight"):
        chance = out[f"{key}_chance"]
        out[f"{key}_lift"] = out[key] / chance if out[key] is not None and chance else None
    return out
