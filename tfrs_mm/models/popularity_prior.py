"""A popularity prior on retrieval scores, carried as one extra coordinate of both towers' vectors.

The in-batch softmax with logQ correction learns scores with item popularity
taken out; metrics (and users) reward some of it back. The prior adds it at
inference:

    score(u, i) = q_u · c_i + weight · log(1 + train count of i)

as a dot product of augmented vectors, item `[c_i, weight · log(1 + count_i)]`
and query `[q_u, 1]`, so the exact top-k, ScaNN and the exported SavedModels
apply it with no other change. `prior_weight` is 0 while training (the prior leaves
the loss alone) and is chosen on the valid split afterwards
(`tfrs_mm.training.prior_tuning`). Items outside the catalog or never seen in
training get no prior.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf


class PopularityPrior(tf.keras.layers.Layer):
    """Per-item log counts and the prior's weight, as non-trainable weights (they travel in checkpoints).

    Args:
        num_items: Catalog size N.
        item_frequencies: [N] train counts aligned to the catalog rows; None leaves zeros
            for a checkpoint restore to fill.
        **kwargs: Base layer arguments.
    """

    def __init__(self, num_items: int, item_frequencies: np.ndarray | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        log_counts = np.zeros([self.num_items + 1], np.float32)  # row 0: not in the catalog
        if item_frequencies is not None:
            counts = np.asarray(item_frequencies, np.float64)
            if counts.shape != (self.num_items,) or (counts < 0).any():
                raise ValueError(f"item_frequencies must be [{self.num_items}] non-negative counts")
            log_counts[1:] = np.log1p(counts)
        self.log_counts = self.add_weight(
            name="popularity_log_counts",
            shape=log_counts.shape,
            trainable=False,
            initializer=tf.constant_initializer(log_counts),
        )
        self.prior_weight = self.add_weight(
            name="popularity_weight", shape=[], trainable=False, initializer="zeros"
        )

    def items(self, catalog_rows: tf.Tensor, vectors: tf.Tensor) -> tf.Tensor:
        """[..., D] item vectors and their catalog rows + 1 (0: not in the catalog) → [..., D + 1]."""
        prior = tf.gather(self.log_counts, catalog_rows) * self.prior_weight
        return tf.concat([vectors, prior[..., None]], axis=-1)

    def queries(self, vectors: tf.Tensor) -> tf.Tensor:
        """[..., D] query vectors → [..., D + 1], the extra coordinate 1."""
        return tf.concat([vectors, tf.ones_like(vectors[..., :1])], axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_items": self.num_items}


class QueryWithPrior(tf.keras.layers.Layer):
    """The query tower followed by `PopularityPrior.queries`: what exported retrieval modules call.

    Args:
        query_tower: The trained `QueryTower`.
        prior: The retrieval model's `PopularityPrior`.
        **kwargs: Base layer arguments.
    """

    def __init__(self, query_tower: tf.keras.layers.Layer, prior: PopularityPrior, **kwargs: Any):
        super().__init__(**kwargs)
        self.query_tower = query_tower
        self.prior = prior

    def call(self, user_ids: tf.Tensor, history: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return self.prior.queries(self.query_tower(user_ids, history, training=training))
