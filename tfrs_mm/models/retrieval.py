"""The two-tower retrieval model: in-batch softmax with logQ correction and cross-replica negatives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_mm.config import ModelConfig
from tfrs_mm.models.item_table import ItemTable
from tfrs_mm.models.item_tower import ItemTower
from tfrs_mm.models.mean_loss import MeanLossModel
from tfrs_mm.models.popularity_prior import PopularityPrior, QueryWithPrior
from tfrs_mm.models.query_tower import QueryTower
from tfrs_mm.models.user_features import UserFeatures, UserTable
from tfrs_mm.schema.features import HISTORY, ITEM_ID, USER_ID

# Ids are hashed to int64 for accidental-hit removal: collectives gather numbers, not strings.
_ID_HASH_BUCKETS = 2**62


class RetrievalModel(MeanLossModel):
    """Query tower × item tower, scored by `tfrs.tasks.Retrieval` over in-batch negatives.

    The loss is TFRS's SUM-reduced softmax cross-entropy, so per-replica losses add
    up to the global-batch loss. With `cross_replica_negatives` under a strategy
    with more than one replica, each replica scores its queries against the
    candidates of *every* replica (gathered with `all_gather`, rolled so its own
    candidates come first, since TFRS labels query i with candidate i); the summed
    loss and gradients then equal single-device training on the global batch.
    No FactorizedTopK metrics are computed here; evaluation lives elsewhere.

    With `config.popularity_prior`, retrieval scores (`candidate_vectors` ·
    `query_vectors`) add `PopularityPrior`'s weight × log(1 + train count) through
    one extra coordinate; the loss never sees it.

    Args:
        query_tower: Encodes `user_id` [batch] and `history` [batch, history].
        item_tower: Encodes `item_id` [batch]; the query tower's shared instance.
        config: Temperature, logQ, accidental hits and cross-replica switches.
        item_frequencies: [num_catalog_items] training counts aligned to
            `item_tower.catalog_ids`, for logQ correction; None disables it.
        frequency_floor: Count given to items never seen in training (and unknown ids),
            so their sampling probability is small but positive.
        num_hard_negatives: Hook for hard-negative mining: keep only this many
            highest-scoring negatives per query (`tfrs.tasks.Retrieval`); None keeps all.
    """

    def __init__(
        self,
        query_tower: QueryTower,
        item_tower: ItemTower,
        config: ModelConfig,
        item_frequencies: np.ndarray | None = None,
        frequency_floor: float = 0.5,
        num_hard_negatives: int | None = None,
    ):
        super().__init__()
        self.query_tower = query_tower
        self.item_tower = item_tower
        self.config = config
        self.num_hard_negatives = num_hard_negatives
        self.task = tfrs.tasks.Retrieval(
            temperature=config.temperature,
            remove_accidental_hits=config.remove_accidental_hits,
            num_hard_negatives=num_hard_negatives,
        )
        self.sampling_probability = None
        if config.logq_correction and item_frequencies is not None:
            self.sampling_probability = tf.constant(
                sampling_probabilities(item_frequencies, len(item_tower.catalog_ids), frequency_floor)
            )
        self.popularity_prior = None
        if config.popularity_prior:
            self.popularity_prior = PopularityPrior(
                len(item_tower.catalog_ids), item_frequencies, name="popularity_prior"
            )

    @property
    def scoring_dim(self) -> int:
        """Width of `candidate_vectors` and `query_vectors`: D, or D + 1 with the popularity prior."""
        return self.item_tower.embedding_dim + (self.popularity_prior is not None)

    def candidate_vectors(self, item_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """[..., scoring_dim] vectors that retrieval scores items with (the item tower, plus the prior)."""
        vectors = self.item_tower(item_ids, training=training)
        if self.popularity_prior is None:
            return vectors
        return self.popularity_prior.items(self.item_tower.catalog_index(item_ids), vectors)

    def encode_catalog(self, item_ids: Sequence[str], batch_size: int = 4096) -> np.ndarray:
        """[N, scoring_dim] float32 `candidate_vectors` of `item_ids` (inference mode), in batches."""
        ids = [str(i) for i in item_ids]
        parts = [
            self.candidate_vectors(tf.constant(ids[i : i + batch_size])).numpy()
            for i in range(0, len(ids), batch_size)
        ]
        if not parts:
            return np.zeros([0, self.scoring_dim], np.float32)
        return np.concatenate(parts).astype(np.float32)

    def query_vectors(self, user_ids: tf.Tensor, history: tf.Tensor, training: bool = False) -> tf.Tensor:
        """[batch, scoring_dim] query vectors matching `candidate_vectors`."""
        return self.scoring_query_tower()(user_ids, history, training=training)

    def scoring_query_tower(self) -> tf.keras.layers.Layer:
        """The layer `query_vectors` calls: the query tower, wrapped to add the prior's coordinate."""
        if self.popularity_prior is None:
            return self.query_tower
        return QueryWithPrior(self.query_tower, self.popularity_prior, name="query_with_prior")

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """SUM-reduced in-batch softmax loss of this replica's examples.

        Args:
            features: `user_id` [batch], `history` [batch, history], `item_id` [batch]
                strings; optional `weight` [batch] example weights.
            training: Enables modality dropout.

        Returns:
            Scalar loss.
        """
        query = self.query_tower(features[USER_ID], features[HISTORY], training=training)
        item_ids = features[ITEM_ID]
        candidates = self.item_tower(item_ids, training=training)
        hashed_ids = tf.strings.to_hash_bucket_fast(item_ids, _ID_HASH_BUCKETS)
        probability = None
        if self.sampling_probability is not None:
            probability = tf.gather(self.sampling_probability, self.item_tower.catalog_index(item_ids))
        if self.config.cross_replica_negatives:
            candidates, hashed_ids, probability = gather_from_replicas(candidates, hashed_ids, probability)
        return self.task(
            query,
            candidates,
            sample_weight=features.get("weight"),
            candidate_sampling_probability=probability,
            candidate_ids=hashed_ids if self.config.remove_accidental_hits else None,
            compute_metrics=False,
            compute_batch_metrics=False,
        )


def sampling_probabilities(item_frequencies: np.ndarray, num_items: int, floor: float) -> np.ndarray:
    """[num_items + 1] float32 sampling probabilities indexed by catalog row + 1 (row 0: unknown id).

    Raises:
        ValueError: if `item_frequencies` is not [num_items] or has negative counts.
    """
    counts = np.asarray(item_frequencies, np.float64)
    if counts.shape != (num_items,) or (counts < 0).any():
        raise ValueError(f"item_frequencies must be [{num_items}] non-negative counts, got {counts.shape}")
    counts = np.maximum(np.concatenate([[0.0], counts]), floor)
    return (counts / counts.sum()).astype(np.float32)


def gather_from_replicas(
    candidates: tf.Tensor, ids: tf.Tensor, probability: tf.Tensor | None
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """Candidates of every replica, this replica's first; a no-op without >1 replica in sync.

    Args:
        candidates: [batch, dim] this replica's candidate vectors.
        ids: [batch] int64 candidate ids.
        probability: [batch] sampling probabilities, or None.

    Returns:
        The same three, each [global_batch, ...], rolled so rows 0..batch-1 are this replica's.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return candidates, ids, probability
    sizes = context.all_gather(tf.shape(candidates, out_type=tf.int32)[:1], axis=0)
    offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])

    def gather(x: tf.Tensor) -> tf.Tensor:
        return tf.roll(context.all_gather(x, axis=0), shift=-offset, axis=0)

    return gather(candidates), gather(ids), None if probability is None else gather(probability)


def build_retrieval_model(
    table: ItemTable,
    train_item_ids: Sequence[str],
    train_user_ids: Sequence[str],
    config: ModelConfig,
    item_frequencies: np.ndarray | None = None,
    num_hard_negatives: int | None = None,
    user_table: UserTable | None = None,
) -> RetrievalModel:
    """Wires an `ItemTower`, a `QueryTower` sharing it, and a `RetrievalModel` from config.

    User features are used when `user_table` has any and `config.user_features` is on.
    """
    item_tower = ItemTower.from_table(table, train_item_ids, config, name="item_tower")
    user_features = None
    if config.user_features and user_table is not None and user_table.feature_names:
        user_features = UserFeatures.from_table(user_table, config.id_embedding_dim, name="user_features")
    query_tower = QueryTower(
        item_tower,
        train_user_ids,
        user_embedding_dim=config.id_embedding_dim if config.user_id_embedding else 0,
        num_oov_buckets=config.num_oov_buckets,
        history_pooling=config.history_pooling,
        user_features=user_features,
        name="query_tower",
    )
    return RetrievalModel(
        query_tower,
        item_tower,
        config,
        item_frequencies=item_frequencies,
        num_hard_negatives=num_hard_negatives,
    )
