"""Warm starts: initialise a new retrieval model from an earlier run, across changed vocabularies.

An earlier run's workdir holds `towers.json` (the serialised query tower, which
carries the item tower, so the old architecture and vocabularies can be rebuilt
without its dataset) and its final weights. Every weight of the new model takes
the earlier value of the weight with the same name, except:

- id-indexed weights (item id, user id and categorical user feature embeddings)
  are copied row by row for the ids both runs know; new ids keep their fresh
  initialisation, ids that disappeared are dropped;
- content weights (catalog embeddings, presence masks, user feature values)
  always come from the new dataset.

Architectures must match (same modalities, fusion, sizes): a clear error says otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np

from tfrs_mm import config as config_lib
from tfrs_mm import fileio

logger = logging.getLogger(__name__)

TOWERS_FILE = "towers.json"
FINAL_CHECKPOINT = "checkpoints/final"


def save_towers(model, workdir: str) -> str:
    """Writes the query tower's config (with the item tower's) to `workdir/towers.json`."""
    import tensorflow as tf

    path = fileio.join(workdir, TOWERS_FILE)
    fileio.makedirs(workdir)
    with fileio.open_file(path, "w") as f:
        json.dump(tf.keras.layers.serialize(model.query_tower), f)
    return path


def load_towers_model(workdir: str):
    """The retrieval model of an earlier run, rebuilt from its `towers.json` and final weights.

    Content weights are restored from the checkpoint too, so the model scores
    exactly as it did at the end of that run.
    """
    import tensorflow as tf

    from tfrs_mm.models import QueryTower, RetrievalModel, UserFeatures

    with fileio.open_file(fileio.join(workdir, TOWERS_FILE)) as f:
        spec = json.load(f)
    query_tower = tf.keras.layers.deserialize(
        spec, custom_objects={"QueryTower": QueryTower, "UserFeatures": UserFeatures}
    )
    config = config_lib.load_config(fileio.join(workdir, config_lib.CONFIG_FILE))
    model = RetrievalModel(query_tower, query_tower.item_tower, config.model)
    build_towers(model)
    model.load_weights(fileio.join(workdir, FINAL_CHECKPOINT)).expect_partial()
    return model


def build_towers(model) -> None:
    """Creates every tower weight by encoding a one-example batch."""
    import tensorflow as tf

    length = 1
    model.query_tower(tf.constant([""]), tf.constant([[""] * length]))
    model.item_tower(tf.constant([""]))


def warm_start(model, earlier_workdir: str) -> dict[str, int]:
    """Copies an earlier run's weights into `model` (built), remapping id rows; returns counts.

    Raises:
        FileNotFoundError: if the earlier workdir has no `towers.json` or checkpoint.
        ValueError: if the two architectures differ.
    """
    if not fileio.exists(fileio.join(earlier_workdir, TOWERS_FILE)):
        raise FileNotFoundError(
            f"cannot warm start from {earlier_workdir}: no {TOWERS_FILE} (is it a tfrs-mm training workdir?)"
        )
    old = load_towers_model(earlier_workdir)
    new_weights, old_weights = _named_weights(model), _named_weights(old)
    if list(new_weights) != list(old_weights):
        missing = sorted(set(old_weights) ^ set(new_weights))
        raise ValueError(
            f"cannot warm start from {earlier_workdir}: the architectures differ "
            f"(weights only in one of them: {missing[:6]}); use the same modalities, fusion and sizes"
        )
    remaps = _row_maps(model, old)
    counts = {"copied": 0, "remapped": 0, "from_new_data": 0}
    for name, variable in new_weights.items():
        before = old_weights[name].numpy()
        if name in remaps:
            variable.assign(_remap_rows(variable.numpy(), before, *remaps[name]))
            counts["remapped"] += 1
        elif _is_content(name):
            counts["from_new_data"] += 1
        elif tuple(variable.shape) != before.shape:
            raise ValueError(f"cannot warm start: {name} is {before.shape} before and {variable.shape} now")
        else:
            variable.assign(before)
            counts["copied"] += 1
    logger.info("warm start from %s: %s", earlier_workdir, counts)
    return counts


def _named_weights(model) -> dict:
    return {_strip(w.name): w for w in [*model.query_tower.weights, *model.item_tower.weights]}


def _strip(name: str) -> str:
    return name.split(":")[0]


def _is_content(name: str) -> bool:
    leaf = name.rsplit("/", 1)[-1]
    return leaf.startswith(("content_", "present_", "categorical_codes", "numeric_values"))


def _row_maps(new, old) -> dict[str, tuple[list[str], list[str], int]]:
    """Weight name → (new row keys, old row keys, leading rows copied as is) for id-indexed weights."""
    new_items, old_items = new.item_tower, old.item_tower
    new_query, old_query = new.query_tower, old.query_tower
    maps = {
        _strip(new_items.id_embedding.embeddings.name): (
            new_items.train_item_ids,
            old_items.train_item_ids,
            new_items.num_oov_buckets,
        ),
    }
    if new_query.user_embedding is not None:
        maps[_strip(new_query.user_embedding.embeddings.name)] = (
            new_query.train_user_ids,
            old_query.train_user_ids,
            new_query.num_oov_buckets,
        )
    if new_query.user_features is not None and old_query.user_features is not None:
        for feature, values in new_query.user_features.vocabularies.items():
            before = old_query.user_features.vocabularies.get(feature, [])
            layer = new_query.user_features.embeddings[feature]
            maps[_strip(layer.embeddings.name)] = (values, before, 1)
    return maps


def _remap_rows(
    fresh: np.ndarray, before: np.ndarray, keys: Sequence[str], old_keys: Sequence[str], lead: int
):
    """`fresh` with row `lead + i` taken from `before` wherever key i was known before."""
    if fresh.shape[1:] != before.shape[1:]:
        raise ValueError(
            f"cannot warm start: embedding width changed from {before.shape[1]} to {fresh.shape[1]}"
        )
    out = fresh.copy()
    out[:lead] = before[:lead]
    position = {k: i for i, k in enumerate(old_keys)}
    for i, key in enumerate(keys):
        j = position.get(key)
        if j is not None:
            out[lead + i] = before[lead + j]
    return out
