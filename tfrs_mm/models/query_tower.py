"""The query tower: (user id, history) → L2-normalised vector in the item space."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from tfrs_mm.models._masking import masked_softmax
from tfrs_mm.models.item_tower import ItemTower
from tfrs_mm.models.user_features import UserFeatures
from tfrs_mm.schema.features import PADDING_ID

POOLINGS = ("mean", "attention")


class QueryTower(tf.keras.layers.Layer):
    """Encodes a user from its id embedding, its features and its history pooled over the item tower.

    History items are encoded by the *same* `ItemTower` as the candidates, then
    pooled: `attention` uses the (projected) user embedding as the query over the
    non-padding history vectors; `mean` averages them. An empty history pools to
    zeros, so the user embedding alone drives the output (no NaN).

    Args:
        item_tower: The shared item tower.
        train_user_ids: Users with a learned embedding; others share the OOV rows.
        user_embedding_dim: Width of the user id embedding; 0 gives the tower no user id embedding
            (the user is then their history and features alone, and attention pooling uses a
            learned query shared by all users).
        num_oov_buckets: OOV rows for unseen users.
        history_pooling: `attention` or `mean`.
        user_features: Optional `UserFeatures` (users.csv columns) looked up by user id.
        **kwargs: Base layer arguments.
    """

    def __init__(
        self,
        item_tower: ItemTower,
        train_user_ids: Sequence[str],
        user_embedding_dim: int = 32,
        num_oov_buckets: int = 1,
        history_pooling: str = "attention",
        user_features: UserFeatures | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if history_pooling not in POOLINGS:
            raise ValueError(f"history_pooling must be one of {POOLINGS}, got {history_pooling!r}")
        self.item_tower = item_tower
        self.train_user_ids = [str(u) for u in train_user_ids]
        self.user_embedding_dim = user_embedding_dim
        self.num_oov_buckets = num_oov_buckets
        self.history_pooling = history_pooling
        self.user_features = user_features
        dim = item_tower.embedding_dim
        self.user_lookup = tf.keras.layers.StringLookup(
            vocabulary=self.train_user_ids,
            num_oov_indices=num_oov_buckets,
            mask_token=None,
            name="user_lookup",
        )
        self.user_embedding = None
        if user_embedding_dim:
            self.user_embedding = tf.keras.layers.Embedding(
                num_oov_buckets + len(self.train_user_ids), user_embedding_dim, name="user_embedding"
            )
        self.attention_query = tf.keras.layers.Dense(dim, use_bias=False, name="attention_query")
        self.output_projection = tf.keras.layers.Dense(dim, name="output_projection")

    def call(
        self,
        user_id: tf.Tensor,
        history: tf.Tensor,
        training: bool | None = None,
        return_weights: bool = False,
    ):
        """Encodes queries.

        Args:
            user_id: [batch] string.
            history: [batch, history] string item ids, most recent last, padded with `PADDING_ID`.
            training: Passed to the item tower (modality dropout).
            return_weights: Also return the pooling weights over history.

        Returns:
            [batch, dim] unit vectors, and [batch, history] pooling weights if asked.
        """
        history = tf.convert_to_tensor(history, tf.string)
        if self.user_embedding is not None:
            user = self.user_embedding(self.user_lookup(user_id))
        else:  # a constant input: the attention query becomes one learned vector
            user = tf.ones(tf.stack([tf.shape(history)[0], 1]))
        items = self.item_tower(history, training=training)
        mask = tf.not_equal(history, PADDING_ID)
        weights = self._pooling_weights(user, items, mask)
        pooled = tf.einsum("bh,bhd->bd", weights, items)
        parts = [pooled, user] if self.user_embedding is not None else [pooled]
        if self.user_features is not None:
            parts.append(self.user_features(user_id))
        query = self.output_projection(tf.concat(parts, axis=-1))
        query = tf.math.l2_normalize(query, axis=-1)
        return (query, weights) if return_weights else query

    def _pooling_weights(self, user: tf.Tensor, items: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """[batch, history] weights: masked attention or a masked mean; all-padding rows get zeros."""
        if self.history_pooling == "mean":
            mask = tf.cast(mask, items.dtype)
            return mask / tf.maximum(tf.reduce_sum(mask, axis=-1, keepdims=True), 1.0)
        query = self.attention_query(user)
        logits = tf.einsum("bd,bhd->bh", query, items) / math.sqrt(float(items.shape[-1]))
        return masked_softmax(logits, mask)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "item_tower": tf.keras.layers.serialize(self.item_tower),
            "train_user_ids": list(self.train_user_ids),
            "user_embedding_dim": self.user_embedding_dim,
            "num_oov_buckets": self.num_oov_buckets,
            "history_pooling": self.history_pooling,
            "user_features": (
                tf.keras.layers.serialize(self.user_features) if self.user_features is not None else None
            ),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> QueryTower:
        config = dict(config)
        item_tower = config["item_tower"]
        if isinstance(item_tower, dict):
            config["item_tower"] = tf.keras.layers.deserialize(
                item_tower, custom_objects={"ItemTower": ItemTower}
            )
        user_features = config.get("user_features")
        if isinstance(user_features, dict):
            config["user_features"] = tf.keras.layers.deserialize(
                user_features, custom_objects={"UserFeatures": UserFeatures}
            )
        return cls(**config)
