"""The `retrieval_scann` export's top-k: the index stage's ScaNN index, history items excluded.

Needs the ScaNN custom ops (`Scann>*`) at serving time, which stock TF Serving
lacks: serve it from the `google/tf-serving-scann` image (or a TF Serving built
with the ScaNN ops) or from Python with `scann` installed.

The index is the one `tfrs_mm.indexing` tunes and records: with an `index_dir`
(a `tfrs-mm index` version) its vectors and `index.json` params are rebuilt by
`make_index_layer` (`AnisotropicScaNN`: tuned leaves to search, anisotropic
hashing, exact reordering); without one, `choose_params` + `tune_index` tune it
here against exact search. The export then adjusts it in two ways only:

* History items are removed after the search, so a query asks for k + H
  neighbours, and ScaNN returns at most its reordering count: `reorder_k` is
  raised to k + H when smaller. The same partitions and codes then re-score a
  superset of the tuned candidates, so recall@k can only rise above the tuned
  figure (slightly), never fall. (The k-means partitions are retrained on every
  build, which moves any rebuild's recall by a little noise either way.)
* Exact params, and catalogs below 16 items (asymmetric hashing trains 16
  centres per block), get ScaNN's brute-force searcher: same ops, exact results.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_mm import fileio
from tfrs_mm.config import IndexConfig
from tfrs_mm.export.modules import ids_or_padding
from tfrs_mm.indexing import (
    INDEX_JSON,
    ITEM_IDS_FILE,
    VECTORS_FILE,
    IndexParams,
    choose_params,
    make_index_layer,
    read_version,
    tune_index,
)
from tfrs_mm.indexing.scann_layer import DISTANCE
from tfrs_mm.schema.features import PADDING_ID

logger = logging.getLogger(__name__)

MIN_AH_ITEMS = 16  # asymmetric hashing trains 16 centres per block: fewer items need brute force
NAMESPACE_WHITELIST = ("Scann",)  # tf.saved_model.SaveOptions must allow the Scann>* ops
SCANN_OPS_NOTE = (
    "needs the ScaNN custom ops (Scann>*), which stock TF Serving lacks: serve it with the "
    "google/tf-serving-scann image, a TF Serving built with the ScaNN ops, or Python with `scann` installed"
)
SCANN_MISSING = "the scann package is not installed: `pip install scann` (scann[tf] matches TF 2.20)"
_SCANN_FIELDS = ("num_leaves", "num_leaves_to_search", "dimensions_per_block")


def read_index_dir(index_dir: str) -> tuple[list[str], np.ndarray, IndexParams, dict[str, Any]]:
    """Ids [n], vectors [n, D] float32, params and the raw `index.json` of an index version.

    Raises:
        FileNotFoundError: if a file is missing.
        ValueError: if ids and vectors disagree.
    """
    missing = [
        f for f in (ITEM_IDS_FILE, VECTORS_FILE, INDEX_JSON) if not fileio.exists(fileio.join(index_dir, f))
    ]
    if missing:
        raise FileNotFoundError(f"index dir {index_dir} lacks {missing}: run `tfrs-mm index` first")
    ids, vectors, info = read_version(index_dir)
    if vectors.ndim != 2:
        raise ValueError(f"{index_dir}: vectors must be [n, dim], got shape {vectors.shape}")
    return ids, np.asarray(vectors, np.float32), IndexParams.from_dict(info), info


def tuned_params(
    vectors: np.ndarray, config: IndexConfig, queries: Callable[[], tuple[np.ndarray, str]]
) -> tuple[IndexParams, dict[str, Any]]:
    """What `tfrs-mm index` would choose for `vectors`: `choose_params`, tuned by `tune_index`.

    Args:
        vectors: [n, D] float32 item vectors.
        config: The index config (k, recall target, exact_below, explicit sizes).
        queries: Returns ([Q, D] tuning queries, their source); called only when there is tuning to do.

    Returns:
        (params, a summary of the tuning for the export's entry).
    """
    params = choose_params(len(vectors), config)
    if params.exact or len(vectors) < MIN_AH_ITEMS:
        return IndexParams(exact=True, k=params.k), {"index_dir": None, "exact": True, "n": len(vectors)}
    sample, source = queries()
    tuned = tune_index(vectors, params, sample, config.recall_target)
    return tuned.params, {
        "index_dir": None,
        **tuned.params.to_dict(),
        "n": len(vectors),
        "recall_target": tuned.recall_target,
        "recall_at_k": round(tuned.recall, 6),
        "target_met": tuned.target_met,
        "tuning_queries": {"count": tuned.num_queries, "source": source},
    }


def serving_params(params: IndexParams, num_items: int, wanted: int) -> IndexParams:
    """The tuned `params` as the export serves them: `wanted` (k + H) neighbours per query.

    k becomes `wanted` (at most n) and `reorder_k` is raised to it when smaller, never
    lowered; partitions, leaves searched and hashing stay the tuned ones. Exact params
    and catalogs below `MIN_AH_ITEMS` are exact.

    Raises:
        ValueError: if ScaNN params lack a tuned field.
    """
    wanted = max(1, min(int(wanted), num_items))
    if params.exact or num_items < MIN_AH_ITEMS:
        return IndexParams(exact=True, k=wanted)
    unset = [f for f in _SCANN_FIELDS if getattr(params, f) is None]
    if unset:
        raise ValueError(f"the ScaNN params have no {unset}: tune them first (`tfrs-mm index`)")
    leaves = min(params.num_leaves, num_items)
    reorder = None if params.reorder_k is None else min(num_items, max(params.reorder_k, wanted))
    return dataclasses.replace(
        params,
        k=wanted,
        num_leaves=leaves,
        num_leaves_to_search=min(params.num_leaves_to_search, leaves),
        reorder_k=reorder,
    )


def require_scann() -> None:
    """Imports scann (registering its ops) or raises an actionable ImportError."""
    try:
        import scann  # noqa: F401
    except ImportError as e:
        raise ImportError(SCANN_MISSING) from e


def build_scann_layer(item_ids: Sequence[str], vectors: np.ndarray, params: IndexParams):
    """A TFRS ScaNN layer indexing `vectors` (dot product) with `params`, returning `item_ids`.

    ScaNN params give the index stage's `AnisotropicScaNN` (`make_index_layer`); exact
    params give TFRS's `ScaNN` with a brute-force ScaNN searcher, so the export keeps one
    op set whatever the catalog size.
    """
    require_scann()
    ids = [str(i) for i in item_ids]
    if not params.exact:
        return make_index_layer(params, vectors, ids)
    import tensorflow_recommenders as tfrs
    from scann.scann_ops.py import scann_ops

    layer = tfrs.layers.factorized_top_k.ScaNN(k=params.k, distance_measure=DISTANCE, name="scann")

    # The TFRS layer always builds tree + hashing; swap in a brute-force searcher (same ops).
    def brute_force(candidates):
        builder = scann_ops.builder(db=candidates, num_neighbors=params.k, distance_measure=DISTANCE)
        return builder.score_brute_force().build(shared_name=f"scann/{uuid.uuid4()}")

    layer._build_searcher = brute_force
    return layer.index(tf.constant(np.asarray(vectors, np.float32)), tf.constant(ids))


def scann_top_k(
    item_ids: Sequence[str], vectors: np.ndarray, params: IndexParams, k: int, history_length: int
) -> tuple[ScannTopK, IndexParams]:
    """The export's top-k over the index `params` describe, sized for `k` results after `history_length`.

    Returns:
        (the `ScannTopK` module, the params it serves with: `serving_params`).
    """
    num_items = len(item_ids)
    k = max(1, min(int(k), num_items))
    if not params.exact and params.k is not None and k > params.k:
        logger.warning(
            "the index was tuned for recall@%d but the export returns %d items: its recall@%d may be "
            "lower than index.json's; set index.k to export.retrieval_k and run `tfrs-mm index` again",
            params.k, k, k,
        )  # fmt: skip
    served = serving_params(params, num_items, k + max(0, int(history_length)))
    return ScannTopK(build_scann_layer(item_ids, vectors, served), num_items, k), served


class ScannTopK(tf.Module):
    """Top-k from a ScaNN layer, with history items excluded: same contract as `ExactTopK`.

    Asks ScaNN for k + H neighbours (capped at n), drops the history items and
    keeps the best k; slots left empty get id "" and score -inf. ScaNN returns at
    most its reordering count, sized for the dataset's history length: a longer
    request history can leave empty slots.

    Args:
        layer: A TFRS `ScaNN` layer indexed with string identifiers.
        num_items: Catalog size n.
        k: Results per query; clipped to n.
    """

    def __init__(self, layer, num_items: int, k: int, name: str = "scann_top_k"):
        super().__init__(name=name)
        self.index = layer
        self.num_items = int(num_items)
        self.k = max(1, min(int(k), self.num_items))

    def __call__(self, query: tf.Tensor, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        wanted = tf.minimum(self.k + tf.shape(history)[1], self.num_items)
        scores, ids = self.index(query, k=wanted)
        # ScaNN pads short result lists with NaN distances.
        in_history = tf.reduce_any(tf.equal(ids[:, :, None], history[:, None, :]), axis=-1)
        keep = tf.logical_and(tf.logical_not(in_history), tf.logical_not(tf.math.is_nan(scores)))
        scores = tf.where(keep, scores, tf.constant(float("-inf"), scores.dtype))
        short = tf.maximum(self.k - tf.shape(scores)[1], 0)
        scores = tf.pad(scores, [[0, 0], [0, short]], constant_values=float("-inf"))
        ids = tf.pad(ids, [[0, 0], [0, short]], constant_values=PADDING_ID)
        top = tf.math.top_k(scores, k=self.k)
        return ids_or_padding(tf.gather(ids, top.indices, batch_dims=1), top.values), top.values
