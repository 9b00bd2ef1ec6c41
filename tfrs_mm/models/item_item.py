"""Item-to-item evidence for the ranker: EASE weights fitted on the train split.

Two-tower retrieval pools a history into one query vector; it cannot say
"people who liked *this* history item liked *that* candidate". EASE (Steck,
"Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019) does, in
closed form, from the train interactions X [users, items]:

    P = (XᵀX + λI)⁻¹,   B = I − P · diag(1 / diag P)   (so diag B = 0),

and B[h, c] is the weight history item h gives candidate c. The ranker adds
Σ_h B[h, c] over the user's history (scaled by a learned weight) to its score,
and B[h, c] biases its attention towards the history items that speak for
the candidate, so "because you watched h" reads off the same numbers.

B is dense: it covers the `max_items` most frequent train items (other items
get no evidence), a [M + 1, M + 1] float32 weight (M = 3,700 for ml-1m: 55 MB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_mm.schema.features import PADDING_ID


def cooccurrence(user_rows: np.ndarray, item_rows: np.ndarray, num_items: int) -> np.ndarray:
    """XᵀX [num_items, num_items] of the binary user × item matrix (repeated pairs count once)."""
    users, user_index = np.unique(np.asarray(user_rows), return_inverse=True)
    x = np.zeros([len(users), num_items], np.float32)
    x[user_index, np.asarray(item_rows, np.int64)] = 1.0
    return x.T @ x


def fit_ease(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE weights B [M, M] (zero diagonal) from the Gram matrix XᵀX and the ridge `l2` (λ > 0)."""
    if l2 <= 0:
        raise ValueError(f"the EASE ridge must be positive, got {l2}")
    precision = np.linalg.inv(gram.astype(np.float64) + l2 * np.eye(len(gram)))
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def frequent_items(item_ids: Sequence[str], counts: np.ndarray, max_items: int) -> list[str]:
    """The `max_items` items with the most train interactions (ties: catalog order), with any count."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    return [item_ids[i] for i in order[:max_items] if counts[i] > 0]


class ItemItemEvidence(tf.keras.layers.Layer):
    """(history [B, H], candidates [B, C]) → B[h, c] as [B, C, H]; 0 for padding and unknown items.

    Args:
        item_ids: The M items with weights, in the order of `weights`' rows.
        weights: [M, M] EASE weights; None leaves zeros for a checkpoint restore to fill.
        **kwargs: Base layer arguments.
    """

    def __init__(self, item_ids: Sequence[str], weights: np.ndarray | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.item_ids = [str(i) for i in item_ids]
        size = len(self.item_ids) + 1  # row and column 0: padding and items without evidence
        self.lookup = tf.keras.layers.StringLookup(
            vocabulary=self.item_ids or [PADDING_ID], num_oov_indices=1, mask_token=None
        )
        matrix = np.zeros([size, size], np.float32)
        if weights is not None:
            weights = np.asarray(weights, np.float32)
            if weights.shape != (size - 1, size - 1) or not np.isfinite(weights).all():
                raise ValueError(f"weights must be a finite [{size - 1}, {size - 1}] matrix")
            matrix[1:, 1:] = weights
        # Flat, so a [B, C, H] lookup is one gather of row * size + column.
        self.flat_weights = self.add_weight(
            name="item_item_weights",
            shape=[size * size],
            trainable=False,
            initializer=tf.constant_initializer(matrix.reshape(-1)),
        )
        self.size = size

    def call(self, history: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
        rows = self._rows(history)  # [B, H]
        columns = self._rows(candidates)  # [B, C]
        index = rows[:, None, :] * self.size + columns[:, :, None]
        return tf.gather(self.flat_weights, index)

    def _rows(self, item_ids: tf.Tensor) -> tf.Tensor:
        rows = tf.cast(self.lookup(item_ids), tf.int32)
        return tf.where(tf.equal(item_ids, PADDING_ID), tf.zeros_like(rows), rows)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "item_ids": list(self.item_ids)}
