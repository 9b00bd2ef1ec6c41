"""Training: reading a dataset directory, and (to come) the training loops."""

from tfrs_mm.training.data import (
    interaction_dataset,
    read_item_frequencies,
    read_item_records,
    read_vocabulary,
)

__all__ = ["interaction_dataset", "read_item_frequencies", "read_item_records", "read_vocabulary"]
