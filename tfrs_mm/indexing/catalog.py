"""Item and query vectors for an index: a trained run's towers over a dataset's catalog.

The towers are always rebuilt over the dataset's catalog and warm-started from
the trained run, which also covers a catalog that changed since training:
items both know keep their learned id rows; content always comes from the
dataset; items the trained id vocabulary never saw share the OOV id row, which
the item tower uses only for items without content, so a new item with content
gets a content-only vector from the trained projections and fusion. That is how
new items join the index without retraining. The id and user vocabularies stay
the trained run's: the dataset's own would give new ids fresh, untrained rows.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from tfrs_mm import config as config_lib
from tfrs_mm import fileio, schema

logger = logging.getLogger(__name__)

ENCODE_BATCH = 4096  # ids per item tower call: bounded memory, few calls


@dataclasses.dataclass
class CatalogVectors:
    """A dataset's catalog encoded by a trained run's item tower.

    Attributes:
        model: The warm-started retrieval model the vectors come from.
        item_ids: [n] the dataset's catalog, in its order.
        vectors: [n, d] float32 unit vectors, row i for `item_ids[i]`.
        new_items: Ids absent from the trained catalog.
        content_only_items: Ids outside the trained id vocabulary that have content: their vectors
            come from content alone (new items, and catalog items training never saw).
        removed_items: Trained catalog ids absent from the dataset.
    """

    model: Any
    item_ids: list[str]
    vectors: np.ndarray
    new_items: list[str]
    content_only_items: list[str]
    removed_items: list[str]


def embed_catalog(data_dir: str, workdir: str, manifest: schema.Manifest | None = None) -> CatalogVectors:
    """Encodes every item of `data_dir`'s catalog with the towers trained in `workdir`.

    Raises:
        FileNotFoundError: if `workdir` is not a trained retrieval run.
        ValueError: if the dataset lacks a modality the trained towers use.
    """
    from tfrs_mm.training.retrieval import RetrievalData, build_retrieval_model, load_retrieval_data
    from tfrs_mm.training.warm_start import TOWERS_FILE, build_towers, load_towers_model, warm_start

    if not fileio.exists(fileio.join(workdir, TOWERS_FILE)):
        raise FileNotFoundError(
            f"{workdir} has no {TOWERS_FILE}: index a workdir of `tfrs-mm train retrieval` (or re-run it)"
        )
    manifest = manifest or schema.read_manifest(data_dir)
    trained = load_towers_model(workdir)
    model_config = config_lib.load_config(fileio.join(workdir, config_lib.CONFIG_FILE)).model
    modalities = trained.item_tower.modalities
    missing = sorted(set(modalities) - set(manifest.embedding_dims))
    if missing:
        raise ValueError(f"{data_dir} has no {missing} embeddings, which the towers in {workdir} use")
    data = load_retrieval_data(data_dir, manifest, modalities)
    data = RetrievalData(
        table=data.table,
        train_item_ids=trained.item_tower.train_item_ids,
        train_user_ids=trained.query_tower.train_user_ids,
        frequencies=data.frequencies,
        user_table=data.user_table,
    )
    model = build_retrieval_model(dataclasses.replace(model_config, modalities=modalities), data)
    build_towers(model)
    warm_start(model, workdir)
    if model.popularity_prior is not None and trained.popularity_prior is not None:
        # The weight chosen on valid; the counts are this dataset's (new items have none).
        model.popularity_prior.prior_weight.assign(trained.popularity_prior.prior_weight)
    item_ids = data.table.item_ids.tolist()
    trained_catalog, known_ids = set(trained.item_tower.catalog_ids), set(data.train_item_ids)
    has_content = np.any(np.stack([data.table.present[m] for m in modalities], axis=1), axis=1)
    catalog = set(item_ids)
    return CatalogVectors(
        model=model,
        item_ids=item_ids,
        vectors=model.encode_catalog(item_ids, ENCODE_BATCH),
        new_items=[i for i in item_ids if i not in trained_catalog],
        content_only_items=[i for i, c in zip(item_ids, has_content) if c and i not in known_ids],
        removed_items=[i for i in trained.item_tower.catalog_ids if i not in catalog],
    )


def tuning_queries(
    model, data_dir: str, manifest: schema.Manifest, count: int, item_vectors: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, str]:
    """Up to `count` query vectors to tune with, and where they came from.

    Queries are what serving will see: the query tower on train users' latest
    histories (a seeded sample when there are more users). A dataset without
    train interactions falls back to a sample of the item vectors.

    Returns:
        ([Q, d] float32 query vectors, a one-line description of their source).
    """
    import tensorflow as tf

    from tfrs_mm.training.ranking_data import last_train_queries

    rng = np.random.default_rng(seed)
    users: list[str] = []
    if "train" in manifest.files:
        users, histories, _ = last_train_queries(data_dir, manifest)
    if not users:
        rows = np.sort(rng.choice(len(item_vectors), min(count, len(item_vectors)), replace=False))
        logger.info("no train users in %s: tuning with %d item vectors as queries", data_dir, len(rows))
        queries = np.array(item_vectors[rows], np.float32)
        if model.popularity_prior is not None:
            queries[:, -1] = 1.0  # a query's prior coordinate
        return queries, "item vectors (the dataset has no train interactions)"
    rows = np.sort(rng.choice(len(users), min(count, len(users)), replace=False))
    users, histories = np.asarray(users, dtype=object)[rows], histories[rows]
    parts = [
        model.query_vectors(
            tf.constant(users[i : i + 1024].tolist()), tf.constant(histories[i : i + 1024]), training=False
        )
        for i in range(0, len(users), 1024)
    ]
    return np.concatenate([p.numpy() for p in parts]).astype(np.float32), "train users' latest histories"
