"""Training histories sampled from the user's train set (`train.history_source: train_set`)."""

from collections import defaultdict

import numpy as np
import pytest

from tfrs_mm import schema
from tfrs_mm.schema.features import HISTORY, ITEM_ID, PADDING_ID, USER_ID
from tfrs_mm.training import train_stream
from tfrs_mm.training.history_sampler import TrainSetHistories

TRAIN = {"a": ["1", "2", "3", "4", "5"], "b": ["1", "6"], "c": ["7"]}


def _sampler(history_length):
    users = [u for u, items in TRAIN.items() for _ in items]
    items = [i for items in TRAIN.values() for i in items]
    return TrainSetHistories(users, items, history_length)


def _sample(sampler, users, items, seed=(1, 2)):
    import tensorflow as tf

    width = sampler.history_length
    features = {
        USER_ID: tf.constant(users),
        ITEM_ID: tf.constant(items),
        HISTORY: tf.constant([["stale"] * width] * len(users)),
    }
    out = sampler(features, tf.constant(seed, tf.int64))
    return [[h.decode() for h in row] for row in out[HISTORY].numpy()]


def test_histories_hold_the_users_other_train_items_padded_on_the_left():
    rows = _sample(_sampler(6), ["a", "b", "c", "a"], ["2", "1", "7", "9"])
    assert rows[0][:2] == [PADDING_ID] * 2 and sorted(rows[0][2:]) == ["1", "3", "4", "5"]
    assert rows[1] == [PADDING_ID] * 5 + ["6"]
    assert rows[2] == [PADDING_ID] * 6  # the only train item is the label itself
    assert sorted(rows[3][1:]) == TRAIN["a"]  # an item outside the user's train set removes nothing


def test_a_user_outside_the_train_split_gets_an_all_padding_history():
    assert _sample(_sampler(3), ["stranger"], ["1"]) == [[PADDING_ID] * 3]


def test_long_train_sets_are_sampled_down_to_h_and_the_sample_follows_the_seed():
    sampler = _sampler(2)
    draws = {tuple(_sample(sampler, ["a"], ["1"], seed=(7, step))[0]) for step in range(40)}
    for draw in draws:
        assert len(set(draw)) == 2 and set(draw) <= {"2", "3", "4", "5"}
    assert len(draws) > 4  # different steps draw different subsets
    assert _sample(sampler, ["a"], ["1"], seed=(7, 3)) == _sample(sampler, ["a"], ["1"], seed=(7, 3))


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="2 users but 1 items"):
        TrainSetHistories(["a", "b"], ["1"], 3)
    with pytest.raises(ValueError, match="history_length"):
        TrainSetHistories(["a"], ["1"], 0)


def test_the_train_stream_samples_leakage_free_histories_and_resumes_exactly(sample_dataset):
    data = str(sample_dataset / "data")
    manifest = schema.read_manifest(data)
    sampler = TrainSetHistories.from_dataset(data, manifest)
    width = next(s for s in manifest.interaction_features if s.name == HISTORY).shape[0]
    assert sampler.history_length == width
    assert TrainSetHistories.from_dataset(data, manifest, length=4).history_length == 4
    train_items = defaultdict(set)
    for batch in train_stream(data, manifest, 256, epochs=1, seed=3):
        for user, item in zip(batch[USER_ID].numpy(), batch[ITEM_ID].numpy()):
            train_items[user].add(item)

    def batches(start):
        stream = train_stream(data, manifest, 64, epochs=2, seed=3, start=start, history_sampler=sampler)
        return [(b[ITEM_ID].numpy(), b[HISTORY].numpy()) for b in stream]

    full = batches((0, 0))
    for _items, histories in full:
        assert histories.shape[1] == sampler.history_length
    users = [b[USER_ID].numpy() for b in train_stream(data, manifest, 64, epochs=2, seed=3)]
    for (items, histories), batch_users in zip(full, users):
        for user, item, history in zip(batch_users, items, histories):
            real = {h for h in history if h != PADDING_ID.encode()}
            assert item not in real and real <= train_items[user]
    steps = len(full) // 2
    resumed = batches((1, 3))
    assert len(resumed) == steps - 3
    for (items, histories), (items_again, histories_again) in zip(full[steps + 3 :], resumed):
        np.testing.assert_array_equal(items, items_again)
        np.testing.assert_array_equal(histories, histories_again)
