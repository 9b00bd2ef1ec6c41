"""Model selection on the valid split: full-ranking Recall@K after every epoch, keep the best epoch.

The in-batch validation loss that Keras reports does not track what the model
is judged by, so with `train.early_stopping_patience` > 0 the retrieval
trainer ranks the whole catalog for every valid user after each epoch (train
items masked, the same protocol as the test evaluation), logs
`val_recall_at_K` and `val_ndcg_at_K`, stops when the recall has not improved
for `patience` epochs, and ends with the weights of the best epoch.

The best weights live in memory: a run killed and resumed from its backup
starts tracking the best epoch afresh from where it resumed.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def metric_names(k: int) -> tuple[str, str]:
    """The log keys of the valid-split recall and NDCG at `k`."""
    return f"val_recall_at_{k}", f"val_ndcg_at_{k}"


def best_epoch_callback(
    model, data, data_dir: str, manifest, k: int, patience: int, queries: str = "example"
):
    """A Keras callback: valid Recall@k / NDCG@k into the epoch logs; early stop; best weights at the end.

    Args:
        model: The `RetrievalModel` being trained.
        data: Its `RetrievalData` (catalog order and train counts).
        data_dir: The dataset directory (its valid split is read once, here).
        manifest: The dataset's manifest.
        k: The cut-off.
        patience: Epochs without a better recall before training stops.
        queries: The valid users' query histories (`retrieval_eval.load_eval_split`).
    """
    import numpy as np
    import tensorflow as tf

    from tfrs_mm.evaluation import retrieval_eval

    catalog = list(data.table.item_ids)
    truth = retrieval_eval.load_eval_split(data_dir, manifest, catalog, "valid", queries)
    recall_key, ndcg_key = metric_names(k)

    class BestEpoch(tf.keras.callbacks.Callback):
        """Tracks the best valid recall; stops after `patience` worse epochs; restores the best weights."""

        def __init__(self):
            super().__init__()
            self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, -1, None, 0

        def on_epoch_end(self, epoch, logs=None):
            metrics = retrieval_eval.evaluate_model(model, catalog, truth, data.frequencies, ks=(k,))
            recall, ndcg = float(metrics[f"recall@{k}"]), float(metrics[f"ndcg@{k}"])
            if logs is not None:
                logs[recall_key], logs[ndcg_key] = recall, ndcg
            if recall > self.best:
                self.best, self.best_epoch, self.wait = recall, epoch, 0
                self.best_weights = model.get_weights()
                return
            self.wait += 1
            if self.wait >= patience:
                logger.info("valid %s has not improved for %d epochs: stopping", recall_key, patience)
                model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                logger.info(
                    "keeping the weights of epoch %d (valid %s %.4f)",
                    self.best_epoch + 1,
                    recall_key,
                    self.best,
                )
                model.set_weights(self.best_weights)

    return BestEpoch()
