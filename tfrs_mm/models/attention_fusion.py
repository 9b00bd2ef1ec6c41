"""Modality attention fusion."""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from tfrs_mm.models._masking import masked_softmax


class AttentionFusion(tf.keras.layers.Layer):
    """A learned query attends over the present modality tokens.

    Missing modalities get −inf logits; an all-masked row fuses to zeros (never NaN).

    Args:
        key_dim: Width of the keys and the learned query; defaults to the token width D.
        **kwargs: Base layer arguments.
    """

    def __init__(self, key_dim: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.key_dim = key_dim

    def build(self, input_shape: tf.TensorShape):
        key_dim = self.key_dim or int(input_shape[-1])
        self.keys = tf.keras.layers.Dense(key_dim, use_bias=False, name="keys")
        self.keys.build(input_shape)
        self.query = self.add_weight(
            name="query", shape=[key_dim], initializer="random_normal", trainable=True
        )
        super().build(input_shape)

    def call(self, tokens: tf.Tensor, mask: tf.Tensor, return_weights: bool = False):
        """Fuses tokens.

        Args:
            tokens: [batch, modalities, dim] float.
            mask: [batch, modalities], 1 where the modality is present.
            return_weights: Also return the attention weights.

        Returns:
            [batch, dim] fused vectors, and [batch, modalities] weights if asked.
        """
        keys = self.keys(tokens)
        logits = tf.einsum("bmk,k->bm", keys, self.query) / math.sqrt(float(keys.shape[-1]))
        weights = masked_softmax(logits, mask)
        fused = tf.einsum("bm,bmd->bd", weights, tokens)
        return (fused, weights) if return_weights else fused

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "key_dim": self.key_dim}
