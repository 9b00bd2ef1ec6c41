"""Lists for the ranker: each interaction's positive item plus hard and popularity negatives.

Hard negatives come from the trained retrieval model: per user, its top-K
items (the user's train items excluded), queried with the user id and the
history of the user's last train example, which is what the ranker will be
asked to reorder at serving time. Popularity negatives are drawn in
proportion to train counts. Both are drawn afresh every epoch, in-graph, so
the pipeline runs under any tf.distribute strategy. A negative that happens to
equal the positive is labelled positive (the listwise loss normalises labels);
a popularity negative may be another of the user's positives (rare noise, as
in any sampled-negative training).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from tfrs_mm import schema
from tfrs_mm.schema import features as F
from tfrs_mm.training import data as data_lib

CANDIDATE_IDS, LABELS = "candidate_ids", "labels"


@dataclasses.dataclass
class NegativeSampler:
    """Where negatives come from.

    Attributes:
        users: [U] user ids with a row in `hard`.
        hard: [U + 1, K] item ids; row 0 (unknown users) holds the most popular items.
        catalog: [N] item ids.
        popularity: [N] sampling weights (train counts, floored above zero).
        num_negatives: Negatives per list.
        hard_fraction: Share of them taken from `hard`.
    """

    users: np.ndarray
    hard: np.ndarray
    catalog: np.ndarray
    popularity: np.ndarray
    num_negatives: int
    hard_fraction: float

    @property
    def num_hard(self) -> int:
        return min(round(self.num_negatives * self.hard_fraction), self.hard.shape[1])


def last_train_queries(data_dir: str, manifest: schema.Manifest):
    """(users, their last train example's history [U, H], their train item sets), users sorted."""
    users, items, histories = data_lib.read_split(data_dir, manifest, "train")
    last, known = {}, defaultdict(set)
    for index, (user, item) in enumerate(zip(users, items)):
        last[user] = index  # examples of a user come in order: the last one wins
        known[user].add(item)
    ordered = sorted(last)
    return ordered, histories[[last[u] for u in ordered]], [known[u] for u in ordered]


def hard_negatives(
    retrieval_model, data_dir: str, manifest: schema.Manifest, catalog, k: int, skip: int = 0, batch=512
):
    """[U + 1, k - skip] retrieval ranks skip..k per train user (its train items excluded); row 0: popular.

    The top ranks of a good retrieval model are where the user's unseen positives (their
    valid and test items, unknown to training) sit; labelling them negative would teach the
    ranker to push exactly those down, so the first `skip` ranks are left out.

    Returns:
        (users [U], table [U + 1, k] item ids).
    """
    import tensorflow as tf

    from tfrs_mm.evaluation.ranking import top_k

    catalog = np.asarray(catalog, dtype=object)
    row = {item: i for i, item in enumerate(catalog)}
    users, histories, known = last_train_queries(data_dir, manifest)
    item_vectors = retrieval_model.encode_catalog(catalog.tolist())
    k = min(k, len(catalog) - 1)
    frequencies = data_lib.read_item_frequencies(data_dir, manifest)
    counts = np.array([frequencies.get(i, 0) for i in catalog], np.float64)
    rows = [catalog[np.argsort(-counts, kind="stable")[:k]][None, :]]
    for start in range(0, len(users), batch):
        end = start + batch
        query = retrieval_model.query_vectors(
            tf.constant(users[start:end]), tf.constant(histories[start:end])
        )
        exclude = [np.array([row[i] for i in items if i in row], np.int64) for items in known[start:end]]
        best = top_k(query.numpy() @ item_vectors.T, k, exclude=exclude)
        # A user who met almost the whole catalog has fewer than k eligible items (PAD = -1):
        # fill those slots with popular items.
        rows.append(np.where(best >= 0, catalog[np.maximum(best, 0)], rows[0]))
    skip = min(skip, k - 1)
    return np.array(users, dtype=object), np.concatenate(rows)[:, skip:]


def add_candidates(dataset, sampler: NegativeSampler):
    """Maps batches of interactions to batches of lists: `candidate_ids` [B, 1 + N] and `labels`."""
    import tensorflow as tf

    user_lookup = tf.keras.layers.StringLookup(
        vocabulary=sampler.users.tolist(), num_oov_indices=1, mask_token=None
    )
    hard = tf.constant(sampler.hard.astype(str))
    catalog = tf.constant(sampler.catalog.astype(str))
    logits = tf.math.log(tf.constant(sampler.popularity, tf.float32))[None, :]
    num_hard, num_pop = sampler.num_hard, sampler.num_negatives - sampler.num_hard

    def sample(batch):
        positives = batch[F.ITEM_ID]
        size = tf.shape(positives)[0]
        pools = tf.gather(hard, user_lookup(batch[F.USER_ID]))  # [B, K]
        # Without replacement within a list: the first num_hard of a random permutation.
        order = tf.argsort(tf.random.uniform(tf.shape(pools)), axis=-1)[:, :num_hard]
        negatives = [tf.gather(pools, order, batch_dims=1)]
        if num_pop:
            drawn = tf.random.categorical(logits, size * num_pop, dtype=tf.int32)
            negatives.append(tf.reshape(tf.gather(catalog, drawn[0]), [size, num_pop]))
        candidates = tf.concat([positives[:, None], *negatives], axis=1)
        labels = tf.cast(tf.equal(candidates, positives[:, None]), tf.float32)
        return {**batch, CANDIDATE_IDS: candidates, LABELS: labels}

    return dataset.map(sample, num_parallel_calls=tf.data.AUTOTUNE)


def fixed_lists(dataset) -> dict[str, np.ndarray]:
    """One pass over a list dataset as arrays, so evaluation sees the same negatives every time."""
    parts = defaultdict(list)
    for batch in dataset:
        for key in (F.USER_ID, F.HISTORY, CANDIDATE_IDS, LABELS):
            parts[key].append(batch[key].numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}
