"""Concatenation fusion of modality tokens."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


class ConcatFusion(tf.keras.layers.Layer):
    """Zeroes missing tokens, concatenates all of them and projects with a Dense layer.

    The reported modality weights are uniform over present modalities (concatenation
    has no learned weighting); they exist so every fusion explains itself the same way.

    Args:
        output_dim: Width of the fused vector; defaults to the token width D.
        **kwargs: Base layer arguments.
    """

    def __init__(self, output_dim: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.output_dim = output_dim

    def build(self, input_shape: tf.TensorShape):
        num_tokens, dim = int(input_shape[-2]), int(input_shape[-1])
        self.projection = tf.keras.layers.Dense(self.output_dim or dim, name="projection")
        self.projection.build(tf.TensorShape([None, num_tokens * dim]))
        super().build(input_shape)

    def call(self, tokens: tf.Tensor, mask: tf.Tensor, return_weights: bool = False):
        """Fuses tokens.

        Args:
            tokens: [batch, modalities, dim] float.
            mask: [batch, modalities], 1 where the modality is present.
            return_weights: Also return the modality weights.

        Returns:
            [batch, output_dim] fused vectors, and [batch, modalities] weights if asked.
        """
        mask = tf.cast(mask, tokens.dtype)
        flat = tf.reshape(
            tokens * mask[..., None], [tf.shape(tokens)[0], tokens.shape[-2] * tokens.shape[-1]]
        )
        fused = self.projection(flat)
        if not return_weights:
            return fused
        return fused, mask / tf.maximum(tf.reduce_sum(mask, axis=-1, keepdims=True), 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_dim": self.output_dim}
