"""Held-out lists for the ranker (`model.ranking_lists=valid`), and the epoch chosen on held-out users.

A second stage should learn from what it will be asked to do: reorder the
retrieval model's top-K for a query whose positives retrieval never saw. The
valid split is exactly that. Each valid user's query is their known items
(`retrieval.eval_queries`), their top-K has train items masked, and:

- a **training list** is one valid item that made it into the user's top-K,
  plus negatives drawn from the rest of that top-K (the user's valid items
  removed) and, with `hard_negative_fraction` < 1, by popularity. Positives
  from outside the top-K would teach the ranker that a low retrieval score
  means "liked" (in a test list every candidate comes from the top-K), which
  inverts retrieval's order: measured, NDCG@10 on held-out users fell by half;
- a fixed share of the valid users (`ranking_selection_fraction`, chosen by a
  hash of the user id) never give lists: after each epoch their top-K is
  reranked and scored against their valid items, and the best epoch's weights
  are kept. Epoch 0 is the untrained ranker (its learned correction starts
  at zero): retrieval's own order, plus the fitted item-to-item evidence
  when the ranker has it. A ranker whose training does not help is not used.

The best weights are held in memory, as in retrieval's early stopping: a run
resumed from its backup chooses among the epochs it ran itself.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import zlib

import numpy as np

from tfrs_mm.evaluation.retrieval_eval import EvalSplit, load_eval_split
from tfrs_mm.schema import features as F
from tfrs_mm.training.ranking_data import NegativeSampler

logger = logging.getLogger(__name__)

SELECTION_METRIC = "val_rerank_ndcg_at_10"


@dataclasses.dataclass
class HeldOutLists:
    """The ranker's training lists and its epoch-selection users, from the valid split.

    Attributes:
        sampler: Negatives: per valid user, their top-K without their valid items.
        fit: `user_id` [E], `history` [E, H], `item_id` [E]: valid positives inside the top-K of
            users outside the selection share.
        selection: The selection users' queries, valid items and masks.
        held: Like `fit`, for the selection users (fixed lists for AUC / NDCG / MRR).
    """

    sampler: NegativeSampler
    fit: dict[str, np.ndarray]
    selection: EvalSplit
    held: dict[str, np.ndarray]


def held_out_lists(retrieval, data, data_dir: str, manifest, config, queries: str) -> HeldOutLists:
    """Builds `HeldOutLists` with `retrieval` (its popularity prior included) for `config.model`'s sizes.

    Raises:
        ValueError: if no valid positive lands in any user's top-K (nothing to learn from).
    """
    catalog = np.asarray(data.table.item_ids, dtype=object)
    valid = load_eval_split(data_dir, manifest, catalog.tolist(), "valid", queries)
    k = min(config.export.retrieval_k, len(catalog))
    top, pools = _top_k_rows(retrieval, catalog, valid, k)
    fraction = config.model.ranking_selection_fraction
    chosen = np.array([_share(u, config.train.seed) < fraction for u in valid.users], bool)
    popularity = np.maximum(data.frequencies, 0.5)
    popular = catalog[np.argsort(-popularity, kind="stable")[: pools.shape[1]]]
    pools = np.where(pools >= 0, catalog[np.maximum(pools, 0)], popular[None, :])
    sampler = NegativeSampler(
        users=np.asarray(valid.users, dtype=object),
        hard=np.concatenate([popular[None, :], pools]),
        catalog=catalog,
        popularity=popularity,
        num_negatives=config.model.ranking_negatives,
        hard_fraction=config.model.hard_negative_fraction,
    )
    fit, held = _positives(valid, top, catalog, ~chosen), _positives(valid, top, catalog, chosen)
    if not len(fit[F.ITEM_ID]):
        raise ValueError(
            f"no valid item of any user is in retrieval's top-{k}: the ranker has no held-out lists "
            "(train retrieval longer, or use model.ranking_lists=train)"
        )
    logger.info(
        "held-out ranker lists: %d from %d users; %d users choose the epoch",
        len(fit[F.ITEM_ID]),
        int((~chosen).sum()),
        int(chosen.sum()),
    )
    return HeldOutLists(sampler, fit, _subset(valid, chosen), held)


def _top_k_rows(retrieval, catalog, valid: EvalSplit, k: int, batch: int = 512):
    """(top [U, k] rows with train masked, pools [U, k] rows with train and valid items masked)."""
    import tensorflow as tf

    from tfrs_mm.evaluation.ranking import top_k

    vectors = retrieval.encode_catalog(catalog.tolist())
    tops, pools = [], []
    for start in range(0, len(valid.users), batch):
        end = start + batch
        users, histories = tf.constant(valid.users[start:end]), tf.constant(valid.histories[start:end])
        scores = retrieval.query_vectors(users, histories).numpy() @ vectors.T
        tops.append(top_k(scores, k, exclude=valid.known[start:end]))
        masked = [np.concatenate([a, b]) for a, b in zip(valid.known[start:end], valid.relevant[start:end])]
        pools.append(top_k(scores, k, exclude=masked))
    if not tops:
        return np.zeros([0, k], np.int64), np.zeros([0, k], np.int64)
    return np.concatenate(tops), np.concatenate(pools)


def _share(user: str, seed: int) -> float:
    """A stable number in [0, 1) per (user, seed): the selection share does not depend on file order."""
    return zlib.crc32(f"{seed}:{user}".encode()) / 2**32


def _positives(valid: EvalSplit, top: np.ndarray, catalog: np.ndarray, users: np.ndarray) -> dict:
    rows = [(i, item) for i in np.flatnonzero(users) for item in np.intersect1d(valid.relevant[i], top[i])]
    index = np.array([i for i, _ in rows], np.int64)
    width = valid.histories.shape[1]
    return {
        F.USER_ID: np.asarray(valid.users, dtype=object)[index].astype(str),
        F.HISTORY: valid.histories[index].astype(str).reshape(len(index), width),
        F.ITEM_ID: catalog[np.array([item for _, item in rows], np.int64)].astype(str),
    }


def _subset(split: EvalSplit, keep: np.ndarray) -> EvalSplit:
    return EvalSplit(
        users=[u for u, k in zip(split.users, keep) if k],
        histories=split.histories[keep],
        relevant=[r for r, k in zip(split.relevant, keep) if k],
        known=[m for m, k in zip(split.known, keep) if k],
    )


def steps_per_epoch(lists: dict[str, np.ndarray], batch_size: int) -> int:
    return max(1, math.ceil(len(lists[F.ITEM_ID]) / batch_size))


def list_stream(lists: dict[str, np.ndarray], batch_size: int, *, epochs: int, seed: int, start=(0, 0)):
    """`lists` shuffled afresh every epoch (seeded by (seed, epoch)), batched, from (epoch, step) `start` on.

    Like `data.train_stream`, a run resumed at (epoch, step) continues with the batches an
    uninterrupted run would see next.
    """
    import tensorflow as tf

    examples = tf.data.Dataset.from_tensor_slices(lists)
    size, steps = len(lists[F.ITEM_ID]), steps_per_epoch(lists, batch_size)

    def epoch_batches(epoch: int):
        order = examples.shuffle(size, seed=seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
        return order.batch(batch_size).apply(tf.data.experimental.assert_cardinality(steps))

    epoch, step = start
    parts = [epoch_batches(e) for e in range(epoch, epochs)] or [epoch_batches(0).take(0)]
    return functools.reduce(lambda done, part: done.concatenate(part), parts).skip(step)


def best_reranking_callback(retrieval, ranking_model, catalog, selection: EvalSplit, k: int, patience: int):
    """A Keras callback: reranking NDCG@10 of the selection users per epoch; keeps the best epoch's weights.

    Epoch 0 (before training) is measured too, so "no epoch beat the untrained ranker" keeps it:
    that is retrieval's order, plus the item-to-item evidence fitted before training when the ranker
    has it (`item_item_fit`). `summary()` gives retrieval's own NDCG@10 beside epoch 0's and the best.
    With `patience` > 0 training stops after that many epochs without a better NDCG.
    """
    import tensorflow as tf

    from tfrs_mm.evaluation.two_stage import evaluate_two_stage

    def measure() -> tuple[float, float]:
        """(retrieval's NDCG@10, the ranker's) on the selection users."""
        result = evaluate_two_stage(retrieval, ranking_model.ranker, catalog, selection, k=k, ks=(10,))
        return tuple(float(result[stage].get("ndcg@10", 0.0)) for stage in ("retrieval", "retrieval+ranking"))

    class BestReranking(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, -1, None, 0
            self.retrieval = self.epoch_0 = None

        def on_train_begin(self, logs=None):
            self.retrieval, self.best = measure()
            self.epoch_0, self.best_epoch, self.best_weights = self.best, 0, ranking_model.get_weights()
            logger.info(
                "selection users' NDCG@10: retrieval %.4f, untrained ranker %.4f", self.retrieval, self.best
            )

        def on_epoch_end(self, epoch, logs=None):
            _, ndcg = measure()
            if logs is not None:
                logs[SELECTION_METRIC] = ndcg
            if ndcg > self.best:
                self.best, self.best_epoch, self.wait = ndcg, epoch + 1, 0
                self.best_weights = ranking_model.get_weights()
                return
            self.wait += 1
            if patience and self.wait >= patience:
                ranking_model.stop_training = True

        def on_train_end(self, logs=None):
            logger.info("keeping the ranker of epoch %d (selection NDCG@10 %.4f)", self.best_epoch, self.best)
            ranking_model.set_weights(self.best_weights)

        def summary(self) -> dict:
            """Selection users' reranking NDCG@10: retrieval alone, epoch 0, and the kept epoch."""
            return {"retrieval": self.retrieval, "epoch_0": self.epoch_0, "best": self.best}

    return BestReranking()
