"""MeanLossModel logs the epoch's mean loss, where tfrs.Model logs the last batch's."""

import pytest
import tensorflow as tf

import tfrs_mm  # noqa: F401  (tf-keras first)
from tfrs_mm.models.mean_loss import MeanLossModel


class ConstantLoss(MeanLossModel):
    """Loss = the batch's value; the weight only gives the optimizer something to update."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(0.0)

    def compute_loss(self, inputs, training=False):
        return tf.reduce_sum(inputs) + 0.0 * self.w


def test_history_holds_the_mean_of_the_epochs_batches_not_the_last():
    model = ConstantLoss()
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
    batches = tf.data.Dataset.from_tensor_slices([[1.0], [2.0], [6.0]])
    history = model.fit(batches, validation_data=batches.take(2), epochs=2, verbose=0)
    assert history.history["loss"] == pytest.approx([3.0, 3.0])  # reset every epoch, not 6.0 (last batch)
    assert history.history["val_loss"] == pytest.approx([1.5, 1.5])
    assert "mean_loss" not in history.history
    assert model.evaluate(batches, return_dict=True, verbose=0)["loss"] == pytest.approx(3.0)
