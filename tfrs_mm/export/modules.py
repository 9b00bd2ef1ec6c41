"""Core-op `tf.Module`s behind the `retrieval`, `ranking` and `recommender` exports.

Every module takes raw strings: the towers keep their `StringLookup`s and the
exact top-k keeps its catalog table in the graph, so a client sends ids and
gets ids back. Only core TensorFlow ops are used (matmul, top-k, hash tables,
gathers), which stock TF Serving runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfrs_mm.models.ranker import HISTORY_ATTENTION, MODALITY_WEIGHTS, SCORES
from tfrs_mm.schema.features import HISTORY, PADDING_ID, USER_ID
from tfrs_mm.training.ranking_data import CANDIDATE_IDS

ITEM_IDS = "item_ids"
SIGNATURE_KEY = "serving_default"

USER_ID_SPEC = tf.TensorSpec([None], tf.string, name=USER_ID)
HISTORY_SPEC = tf.TensorSpec([None, None], tf.string, name=HISTORY)
CANDIDATE_IDS_SPEC = tf.TensorSpec([None, None], tf.string, name=CANDIDATE_IDS)

_NEG_INF = float("-inf")


def ids_or_padding(ids: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
    """`ids` with `PADDING_ID` where the score is -inf or NaN (a slot with no candidate left)."""
    return tf.where(scores > _NEG_INF, ids, tf.fill(tf.shape(ids), PADDING_ID))


def exclude_rows(scores: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """Sets `scores[b, rows[b, h]]` to -inf.

    Args:
        scores: [B, N] float.
        rows: [B, H] int64 column indices; negative entries (padding, unknown ids) are ignored.

    Returns:
        [B, N] scores.
    """
    valid = rows >= 0
    shape = tf.shape(rows, out_type=tf.int64)
    batch_rows = tf.broadcast_to(tf.range(shape[0])[:, None], shape)
    indices = tf.stack([tf.boolean_mask(batch_rows, valid), tf.boolean_mask(rows, valid)], axis=1)
    # scatter_nd adds duplicates: a history item seen twice counts 2, still > 0.
    hits = tf.scatter_nd(indices, tf.ones_like(indices[:, 0], tf.int32), tf.shape(scores, out_type=tf.int64))
    return tf.where(hits > 0, tf.constant(_NEG_INF, scores.dtype), scores)


class ExactTopK(tf.Module):
    """Exact top-k by dot product over fixed item vectors, history items excluded.

    Args:
        item_ids: [N] catalog ids, row-aligned with `vectors`.
        vectors: [N, D] item vectors.
        k: Results per query; clipped to N.
    """

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray, k: int, name: str = "exact_top_k"):
        super().__init__(name=name)
        ids = [str(i) for i in item_ids]
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(f"vectors must be [{len(ids)}, dim], got {vectors.shape}")
        self.k = max(1, min(int(k), len(ids)))
        # Variables, not constants: a large catalog would push saved_model.pb past protobuf's 2 GB.
        self.item_ids = tf.Variable(tf.constant(ids, tf.string), trainable=False, name="item_ids")
        self.vectors = tf.Variable(vectors, trainable=False, name="item_vectors")
        self.catalog = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(ids, tf.string), tf.range(len(ids), dtype=tf.int64)
            ),
            default_value=-1,
        )

    def __call__(self, query: tf.Tensor, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """[B, D] queries, [B, H] history ids → ids [B, k] string and scores [B, k] float32.

        Slots left without a candidate (a catalog smaller than k + history) get id "" and score -inf.
        """
        scores = tf.matmul(query, self.vectors, transpose_b=True)
        scores = exclude_rows(scores, self.catalog.lookup(history))
        top = tf.math.top_k(scores, k=self.k)
        return ids_or_padding(tf.gather(self.item_ids, top.indices), top.values), top.values


class RetrievalModule(tf.Module):
    """`serving_default`: `user_id` [B], `history` [B, H] → `item_ids` [B, K], `scores` [B, K].

    Args:
        query_tower: The trained query tower as retrieval scores with it
            (`RetrievalModel.scoring_query_tower()`: with the popularity prior's coordinate).
        top_k: Any callable (query [B, D], history [B, H]) → (ids, scores), e.g. `ExactTopK`.
    """

    def __init__(self, query_tower, top_k, name: str = "retrieval"):
        super().__init__(name=name)
        self.query_tower = query_tower
        self.top_k = top_k

    @tf.function(input_signature=[USER_ID_SPEC, HISTORY_SPEC])
    def serve(self, user_id: tf.Tensor, history: tf.Tensor) -> dict[str, tf.Tensor]:
        query = self.query_tower(user_id, history, training=False)
        ids, scores = self.top_k(query, history)
        return {ITEM_IDS: ids, SCORES: scores}


class RankingModule(tf.Module):
    """`serving_default`: `user_id` [B], `history` [B, H], `candidate_ids` [B, C] → `scores` [B, C],
    `history_attention` [B, C, H], `modality_weights` [B, C, T]."""

    def __init__(self, ranker, name: str = "ranking"):
        super().__init__(name=name)
        self.ranker = ranker

    @tf.function(input_signature=[USER_ID_SPEC, HISTORY_SPEC, CANDIDATE_IDS_SPEC])
    def serve(self, user_id: tf.Tensor, history: tf.Tensor, candidate_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        out = self.ranker(user_id, history, candidate_ids, training=False)
        return {key: out[key] for key in (SCORES, HISTORY_ATTENTION, MODALITY_WEIGHTS)}


class RecommenderModule(tf.Module):
    """Retrieval then ranking in one graph.

    `serving_default`: `user_id` [B], `history` [B, H] → `item_ids` [B, final_k],
    `scores` [B, final_k] (ranker logits, descending), `history_attention`
    [B, final_k, H], `modality_weights` [B, final_k, T]. The ranker reorders the
    top `top_k.k` retrieved items (history excluded).

    Args:
        query_tower: The trained `QueryTower`.
        top_k: The exact retrieval (`ExactTopK`).
        ranker: The trained `CrossAttentionRanker`.
        final_k: Items returned; clipped to `top_k.k`.
    """

    def __init__(self, query_tower, top_k: ExactTopK, ranker, final_k: int, name: str = "recommender"):
        super().__init__(name=name)
        self.query_tower = query_tower
        self.top_k = top_k
        self.ranker = ranker
        self.final_k = max(1, min(int(final_k), top_k.k))

    @tf.function(input_signature=[USER_ID_SPEC, HISTORY_SPEC])
    def serve(self, user_id: tf.Tensor, history: tf.Tensor) -> dict[str, tf.Tensor]:
        query = self.query_tower(user_id, history, training=False)
        candidates, retrieved = self.top_k(query, history)
        out = self.ranker(user_id, history, candidates, training=False)
        # Empty slots (tiny catalogs) must not be ranked above real items.
        scores = tf.where(retrieved > _NEG_INF, out[SCORES], tf.constant(_NEG_INF, out[SCORES].dtype))
        top = tf.math.top_k(scores, k=self.final_k)
        return {
            ITEM_IDS: ids_or_padding(tf.gather(candidates, top.indices, batch_dims=1), top.values),
            SCORES: top.values,
            HISTORY_ATTENTION: tf.gather(out[HISTORY_ATTENTION], top.indices, batch_dims=1),
            MODALITY_WEIGHTS: tf.gather(out[MODALITY_WEIGHTS], top.indices, batch_dims=1),
        }
