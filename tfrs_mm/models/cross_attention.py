"""Multi-head cross-attention whose logits take an additive bias.

Keras' `MultiHeadAttention` accepts only a mask. The ranker needs more: it
grounds each attention logit in evidence it can name (how alike the
candidate and the history item are in this modality, and the item-to-item
weight between them), so that the attention is an explanation from the first
step of training instead of a random projection waiting for enough lists.

    logits[n, head, c, h] = (queries W_q)[c] · (keys W_k)[h] / √key_dim + bias[n, c, h]
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfrs_mm.models._masking import masked_softmax


class BiasedCrossAttention(tf.keras.layers.Layer):
    """Queries [N, C, D] attend to keys/values [N, H, D] with a bias [N, C, H] and a mask [N, C, H].

    Args:
        num_heads: Attention heads.
        key_dim: Width of each head's queries, keys and values.
        output_dim: Width of the returned context.
        dropout: Dropout on the attention weights, in training (the returned weights have none).
        **kwargs: Base layer arguments.
    """

    def __init__(self, num_heads: int, key_dim: int, output_dim: int, dropout: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_heads, self.key_dim, self.output_dim, self.dropout = num_heads, key_dim, output_dim, dropout
        width = num_heads * key_dim
        self.query_dense = tf.keras.layers.Dense(width, use_bias=False, name="query")
        self.key_dense = tf.keras.layers.Dense(width, use_bias=False, name="key")
        self.value_dense = tf.keras.layers.Dense(width, use_bias=False, name="value")
        self.output_dense = tf.keras.layers.Dense(output_dim, name="attention_output")
        self.weights_dropout = tf.keras.layers.Dropout(dropout)

    def call(self, queries, keys, values, bias, mask, training: bool | None = None):
        """Returns context [N, C, output_dim] (zero where a row has nothing to attend to) and the
        attention [N, heads, C, H] (sums to 1 over unmasked h; all zero on an all-masked row)."""
        q = self._heads(self.query_dense(queries))  # [N, heads, C, k]
        k = self._heads(self.key_dense(keys))  # [N, heads, H, k]
        v = self._heads(self.value_dense(values))
        logits = tf.einsum("nxck,nxhk->nxch", q, k) / tf.sqrt(float(self.key_dim)) + bias[:, None]
        attention = masked_softmax(logits, tf.broadcast_to(mask[:, None], tf.shape(logits)))
        mixed = tf.einsum("nxch,nxhk->nxck", self.weights_dropout(attention, training=training), v)
        shape = tf.shape(mixed)
        merged = tf.reshape(tf.transpose(mixed, [0, 2, 1, 3]), [shape[0], shape[2], -1])
        present = tf.cast(tf.reduce_any(mask, axis=-1, keepdims=True), merged.dtype)
        return self.output_dense(merged) * present, attention

    def _heads(self, x: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(x)
        return tf.transpose(tf.reshape(x, [shape[0], shape[1], self.num_heads, self.key_dim]), [0, 2, 1, 3])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "output_dim": self.output_dim,
            "dropout": self.dropout,
        }
