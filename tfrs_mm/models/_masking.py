"""Masked softmax shared by the attention layers."""

from __future__ import annotations

import tensorflow as tf


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Softmax over the last axis where masked positions get −inf; all-masked rows give zeros, not NaN.

    Args:
        logits: [..., n] float.
        mask: [..., n] bool or 0/1, True where a position may be attended.

    Returns:
        [..., n] weights summing to 1 over present positions, or all 0 on an all-masked row.
    """
    mask = tf.cast(mask, tf.bool)
    any_present = tf.reduce_any(mask, axis=-1, keepdims=True)
    logits = tf.where(mask, logits, tf.constant(-float("inf"), logits.dtype))
    # An all-masked row would be softmax(-inf, ...) = NaN; give it finite logits, then zero it.
    logits = tf.where(any_present, logits, tf.zeros_like(logits))
    return tf.nn.softmax(logits, axis=-1) * tf.cast(mask, logits.dtype)
