"""Training: reading a dataset directory, checking its numbers, and resumable training loops."""

from tfrs_mm.training.data import (
    interaction_dataset,
    read_item_frequencies,
    read_item_records,
    read_vocabulary,
    steps_per_epoch,
    train_stream,
)
from tfrs_mm.training.numeric_checks import NonFiniteFeatureError, NonFiniteLossError

__all__ = [
    "NonFiniteFeatureError",
    "NonFiniteLossError",
    "interaction_dataset",
    "read_item_frequencies",
    "read_item_records",
    "read_vocabulary",
    "steps_per_epoch",
    "train_stream",
]
