"""Reading a preprocessed dataset directory for training."""

import numpy as np

from tfrs_mm import schema
from tfrs_mm.training import interaction_dataset, read_item_frequencies, read_item_records, read_vocabulary


def test_item_records_are_complete_and_sorted(sample_dataset):
    data = str(sample_dataset / "data")
    manifest = schema.read_manifest(data)
    items = read_item_records(data, manifest)
    assert list(items["item_id"]) == sorted(read_vocabulary(data, manifest, "item_id"))
    for modality, dim in manifest.embedding_dims.items():
        assert items[f"{modality}_embedding"].shape == (120, dim)
        assert set(np.unique(items[f"{modality}_present"])) <= {0, 1}


def test_item_frequencies_sum_to_the_train_split(sample_dataset):
    data = str(sample_dataset / "data")
    manifest = schema.read_manifest(data)
    frequencies = read_item_frequencies(data, manifest)
    assert sum(frequencies.values()) == manifest.split.counts["train"]
    assert set(frequencies) == set(read_vocabulary(data, manifest, "item_id"))


def test_interaction_dataset_batches_every_example_once(sample_dataset):
    data = str(sample_dataset / "data")
    manifest = schema.read_manifest(data)
    seen = 0
    for batch in interaction_dataset(data, manifest, "valid", batch_size=32):
        assert batch["history"].shape[1:] == manifest.interaction_features[2].shape
        seen += int(batch["item_id"].shape[0])
    assert seen == manifest.split.counts["valid"]


def test_shuffling_mixes_users_that_the_records_keep_together(sample_dataset):
    data = str(sample_dataset / "data")
    manifest = schema.read_manifest(data)

    def users_in_first_batch(**kwargs):
        batch = next(iter(interaction_dataset(data, manifest, "train", batch_size=64, **kwargs)))
        return len(set(batch["user_id"].numpy().tolist()))

    # About 80 users with ~30 train examples each: unshuffled, a batch holds 2-4 of them.
    assert users_in_first_batch() <= 6
    assert users_in_first_batch(shuffle=True, seed=1) >= 30


def test_eval_queries_from_known_items_hold_the_users_train_and_valid_items(sample_dataset):
    from collections import defaultdict

    import pytest

    from tfrs_mm.evaluation.retrieval_eval import load_eval_split

    data = str(sample_dataset / "data")
    manifest = schema.read_manifest(data)
    catalog = read_vocabulary(data, manifest, "item_id")
    seen = defaultdict(list)
    for split in ("train", "valid"):
        for batch in interaction_dataset(data, manifest, split, batch_size=4096):
            for user, item in zip(batch["user_id"].numpy(), batch["item_id"].numpy()):
                seen[user.decode()].append(item)
    example = load_eval_split(data, manifest, catalog, "test")
    known = load_eval_split(data, manifest, catalog, "test", queries="known")
    assert known.users == example.users and known.histories.shape == example.histories.shape
    width = known.histories.shape[1]
    longer = 0
    for user, query, before in zip(known.users, known.histories, example.histories):
        items = [h for h in query if h != b""]
        assert items == seen[user][-width:]  # the last H known items, in file order
        longer += len(items) > len([h for h in before if h != b""])
    assert longer > 0  # some users' last test example came before some of their known items
    with pytest.raises(ValueError, match="queries must be one of"):
        load_eval_split(data, manifest, catalog, "test", queries="future")
