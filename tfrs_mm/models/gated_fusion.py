"""Gated fusion of modality tokens."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


class GatedFusion(tf.keras.layers.Layer):
    """A learned sigmoid gate per token, normalised over the present tokens.

    `weights = gate * mask / sum(gate * mask)`; the fused vector is the weighted sum
    of tokens. Unlike a softmax the gates are independent, so one strong modality
    does not have to suppress the others. An all-masked row fuses to zeros.

    Args:
        epsilon: Floor of the gate sum, keeping all-masked rows finite.
        **kwargs: Base layer arguments.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs: Any):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape: tf.TensorShape):
        self.gate = tf.keras.layers.Dense(1, activation="sigmoid", name="gate")
        self.gate.build(input_shape)
        super().build(input_shape)

    def call(self, tokens: tf.Tensor, mask: tf.Tensor, return_weights: bool = False):
        """Fuses tokens.

        Args:
            tokens: [batch, modalities, dim] float.
            mask: [batch, modalities], 1 where the modality is present.
            return_weights: Also return the modality weights.

        Returns:
            [batch, dim] fused vectors, and [batch, modalities] weights if asked.
        """
        mask = tf.cast(mask, tokens.dtype)
        gates = tf.squeeze(self.gate(tokens), axis=-1) * mask
        weights = gates / tf.maximum(tf.reduce_sum(gates, axis=-1, keepdims=True), self.epsilon)
        fused = tf.einsum("bm,bmd->bd", weights, tokens)
        return (fused, weights) if return_weights else fused

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}
