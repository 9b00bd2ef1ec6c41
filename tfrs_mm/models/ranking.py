"""The ranking model: a `CrossAttentionRanker` trained with TFRS's `Ranking` task.

Each example is one list: the positive item and N negatives, `candidate_ids`
[B, 1 + N] with `labels` [B, 1 + N] (1 for the positive). Losses:

- `pointwise`: binary cross-entropy on every (user, candidate) score;
- `listwise`: softmax cross-entropy over the list (labels normalised to sum 1).

Losses are SUM-reduced over examples, like the retrieval task, so per-replica
losses add up to the global-batch loss under MirroredStrategy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_mm.config import ModelConfig
from tfrs_mm.models.item_table import ItemTable
from tfrs_mm.models.item_tower import ItemTower
from tfrs_mm.models.mean_loss import MeanLossModel
from tfrs_mm.models.ranker import SCORES, CrossAttentionRanker
from tfrs_mm.schema.features import HISTORY, USER_ID

CANDIDATE_IDS, LABELS = "candidate_ids", "labels"
LOSSES = ("pointwise", "listwise")


class ListwiseSoftmaxLoss(tf.keras.losses.Loss):
    """Softmax cross-entropy over a list of logits against labels normalised to sum to 1."""

    def call(self, y_true, y_pred):
        labels = tf.math.divide_no_nan(y_true, tf.reduce_sum(y_true, axis=-1, keepdims=True))
        return tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=y_pred)


def ranking_loss(name: str) -> tf.keras.losses.Loss:
    """The SUM-reduced loss called `name` (`pointwise` or `listwise`)."""
    if name == "pointwise":
        return tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.SUM)
    if name == "listwise":
        return ListwiseSoftmaxLoss(reduction=tf.keras.losses.Reduction.SUM)
    raise ValueError(f"ranking loss must be one of {LOSSES}, got {name!r}")


class RankingModel(MeanLossModel):
    """`tfrs.tasks.Ranking` over the ranker's list scores, with AUC as its metric.

    Args:
        ranker: Scores `candidate_ids` for (`user_id`, `history`).
        loss: `pointwise` or `listwise`.
    """

    def __init__(self, ranker: CrossAttentionRanker, loss: str = "listwise"):
        super().__init__()
        self.ranker = ranker
        self.loss_name = loss
        self.task = tfrs.tasks.Ranking(
            loss=ranking_loss(loss), metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")]
        )

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> dict[str, tf.Tensor]:
        return self.ranker(features[USER_ID], features[HISTORY], features[CANDIDATE_IDS], training=training)

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        scores = self(features, training=training)[SCORES]
        return self.task(labels=features[LABELS], predictions=scores)


def build_ranking_model(
    table: ItemTable,
    train_item_ids: Sequence[str],
    train_user_ids: Sequence[str],
    config: ModelConfig,
    retrieval_tower=None,
    retrieval_prior=None,
    item_tower: ItemTower | None = None,
    item_item=None,
) -> RankingModel:
    """A `RankingModel` whose token encoder has width `config.ranker_dim`, from config.

    `retrieval_tower` (a trained retrieval model's `query_tower`) makes the ranker a learned
    correction on top of the retrieval score (see `CrossAttentionRanker`), including the retrieval
    model's `retrieval_prior` (its `popularity_prior`) when it has one. `item_tower` replaces the
    ranker's own token encoder (e.g. the retrieval model's item tower, frozen). `item_item` is an
    `ItemItemEvidence` for the ranker, or None.
    """
    token_config = dataclasses.replace(config, embedding_dim=config.ranker_dim)
    if item_tower is None:
        item_tower = ItemTower.from_table(table, train_item_ids, token_config, name="ranker_item_tower")
    ranker = CrossAttentionRanker(
        item_tower,
        train_user_ids,
        num_heads=config.ranker_heads,
        mlp=config.ranker_mlp,
        user_embedding_dim=config.id_embedding_dim if config.ranker_user_embedding else 0,
        retrieval_tower=retrieval_tower,
        retrieval_temperature=config.temperature,
        retrieval_prior=retrieval_prior,
        item_item=item_item,
        name="ranker",
    )
    return RankingModel(ranker, loss=config.ranking_loss)
