"""Training histories drawn from the user's whole train set (`train.history_source: train_set`).

The Beam job gives each example the user's items *before* it (leakage-free
by time). Where there is no meaningful time order (MovieLens-1M here has no
timestamps; RecBole's random split shuffles each user's items), that makes a
user's first training examples see short histories while every evaluation
query carries a full one, so the query tower learns from the wrong inputs.

`TrainSetHistories` replaces the history of each training example with a
fresh random sample of up to H of the same user's *other* train items: never
the example's own item (the label), never a valid or test item. The sample
is drawn with stateless randomness from (seed, epoch, step), so a resumed run
sees exactly the histories an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfrs_mm import schema
from tfrs_mm.schema import features as F

HISTORY_SOURCES = ("earlier", "train_set")
_PADDING_ROW = 0  # row 0 of the item vocabulary is PADDING_ID
_DROPPED = 2.0  # sort key of the label item: after every real candidate (keys are in [0, 1))
_FILLER = 3.0  # sort key of padding beyond a user's row length


class TrainSetHistories:
    """Samples [batch, H] histories from each user's train items, excluding the example's own item.

    Args:
        users: User id of each train interaction.
        items: Item id of each train interaction (same length as `users`).
        history_length: H, the width of the histories produced.
    """

    def __init__(self, users: Sequence[str], items: Sequence[str], history_length: int):
        import tensorflow as tf

        if len(users) != len(items):
            raise ValueError(f"{len(users)} users but {len(items)} items")
        if history_length < 1:
            raise ValueError(f"history_length must be >= 1, got {history_length}")
        self.history_length = history_length
        user_vocab = sorted(set(users))
        item_vocab = sorted(set(items))
        user_row = {u: i for i, u in enumerate(user_vocab)}
        item_row = {it: i + 1 for i, it in enumerate(item_vocab)}
        per_user: list[list[int]] = [[] for _ in user_vocab]
        for user, item in zip(users, items):
            per_user[user_row[user]].append(item_row[item])
        lengths = np.array([len(rows) for rows in per_user], np.int64)
        flat = np.array([row for rows in per_user for row in rows], np.int64)
        self._user_items = tf.RaggedTensor.from_row_lengths(flat, lengths)
        self._items = tf.constant([F.PADDING_ID, *item_vocab])
        self._user_table = _table(user_vocab, first_row=0, default=-1)
        self._item_table = _table(item_vocab, first_row=1, default=_PADDING_ROW)

    @classmethod
    def from_dataset(cls, data_dir: str, manifest: schema.Manifest, length: int = 0) -> TrainSetHistories:
        """The sampler over a dataset directory's train split; `length` 0 is the dataset's history length."""
        from tfrs_mm.training.data import read_split

        users, items, histories = read_split(data_dir, manifest, "train")
        return cls(users, items, length or histories.shape[1])

    def __call__(self, features: dict, seed) -> dict:
        """`features` with its `history` replaced by samples; `seed` is a [2] int tensor.

        A user unknown to the train split gets an all-padding history.
        """
        import tensorflow as tf

        user_rows = self._user_table.lookup(features[F.USER_ID])
        candidates = self._candidates(user_rows, user_rows >= 0)
        label = tf.repeat(self._item_table.lookup(features[F.ITEM_ID]), candidates.row_lengths())
        keys = tf.random.stateless_uniform(tf.shape(candidates.flat_values), seed=seed)
        keys = tf.where(tf.equal(candidates.flat_values, label), _DROPPED, keys)
        chosen_rows, chosen_keys = self._smallest(candidates, candidates.with_flat_values(keys))
        chosen_rows = tf.where(chosen_keys < 1.0, chosen_rows, _PADDING_ROW)
        return {**features, F.HISTORY: tf.gather(self._items, chosen_rows)}

    def _candidates(self, user_rows, known):
        """[batch, None] item rows of each user; empty for users outside the train split."""
        import tensorflow as tf

        rows = tf.gather(self._user_items, tf.maximum(user_rows, 0))
        lengths = tf.where(known, rows.row_lengths(), tf.zeros_like(rows.row_lengths()))
        starts = rows.row_starts()
        flat = tf.gather(rows.flat_values, tf.ragged.range(starts, starts + lengths).flat_values)
        return tf.RaggedTensor.from_row_lengths(flat, lengths)

    def _smallest(self, rows, keys):
        """The H entries of each row with the smallest keys, as ([batch, H] rows, [batch, H] keys)."""
        import tensorflow as tf

        dense_keys = keys.to_tensor(default_value=_FILLER)
        dense_rows = rows.to_tensor(default_value=_PADDING_ROW)
        pad = tf.maximum(self.history_length - tf.shape(dense_keys)[1], 0)
        dense_keys = tf.pad(dense_keys, [[0, 0], [0, pad]], constant_values=_FILLER)
        dense_rows = tf.pad(dense_rows, [[0, 0], [0, pad]], constant_values=_PADDING_ROW)
        order = tf.argsort(dense_keys, axis=1, stable=True)[:, : self.history_length]
        # Most recent last in the Beam layout means padding first: reverse so real items end the row.
        order = tf.reverse(order, axis=[1])
        return tf.gather(dense_rows, order, batch_dims=1), tf.gather(dense_keys, order, batch_dims=1)


def _table(keys: list[str], first_row: int, default: int):
    import tensorflow as tf

    values = tf.range(first_row, first_row + len(keys), dtype=tf.int64)
    initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), values)
    return tf.lookup.StaticHashTable(initializer, default_value=default)
