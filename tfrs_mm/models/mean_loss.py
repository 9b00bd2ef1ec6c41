"""`MeanLossModel`: a `tfrs.Model` that logs the epoch's mean loss, not its last batch's."""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf
import tensorflow_recommenders as tfrs

MEAN_LOSS = "mean_loss"


class MeanLossModel(tfrs.Model):
    """Logs `loss` as the mean per-step loss of the epoch so far (and of evaluation).

    `tfrs.Model.train_step` logs the current batch's loss, so Keras's history,
    progress bar and TensorBoard would show the epoch's last batch (often a
    small leftover) rather than the epoch. Under a strategy each replica's
    SUM-reduced loss covers its share of the global batch; scaling by the
    replica count keeps the logged value a per-global-step loss, as on one device.
    Subclasses implement `compute_loss` as for any `tfrs.Model`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mean_loss = tf.keras.metrics.Mean(name=MEAN_LOSS)  # reset by Keras every epoch

    def train_step(self, inputs) -> dict[str, tf.Tensor]:
        return self._with_mean_loss(super().train_step(inputs))

    def test_step(self, inputs) -> dict[str, tf.Tensor]:
        return self._with_mean_loss(super().test_step(inputs))

    def _with_mean_loss(self, logs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        self.mean_loss.update_state(logs["loss"] * replicas)
        logs = {k: v for k, v in logs.items() if k != MEAN_LOSS}
        logs["loss"] = self.mean_loss.result()
        return logs
