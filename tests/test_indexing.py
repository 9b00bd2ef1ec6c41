"""The retrieval index: parameter choice, tuning against exact search, versions and new items."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict

import numpy as np
import pytest
import tensorflow as tf

from tfrs_mm import config as config_lib
from tfrs_mm import schema
from tfrs_mm.indexing import (
    INDEX_JSON,
    ITEM_IDS_FILE,
    VECTORS_FILE,
    IndexParams,
    build_index,
    choose_params,
    exact_top_k,
    format_index_summary,
    list_versions,
    make_index_layer,
    plot_tradeoff,
    read_version,
    recall_at_k,
    tune_index,
)
from tfrs_mm.models import ItemTable, random_item_table
from tfrs_mm.training.retrieval import build_retrieval_model, load_retrieval_data
from tfrs_mm.training.warm_start import FINAL_CHECKPOINT, build_towers, load_towers_model, save_towers

DIMS = {"text": 6, "image": 4}
MODEL = config_lib.ModelConfig(embedding_dim=8, id_embedding_dim=4, modalities=("text", "image"))
INDEX = config_lib.IndexConfig(k=10, tune_queries=50)
HISTORY = 5


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _numpy_top_k(queries, vectors, k):
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


# --- parameters --------------------------------------------------------------------------------


def test_small_catalogs_are_exact_and_large_ones_get_scann_around_sqrt_n_leaves():
    small = choose_params(19_999, config_lib.IndexConfig())
    assert small == IndexParams(exact=True, k=100)
    large = choose_params(40_000, config_lib.IndexConfig())
    assert not large.exact and large.k == 100 and large.num_leaves == 200
    assert large.num_leaves_to_search is None  # left to the tuner
    assert large.reorder_k == 400 and large.dimensions_per_block == 2
    assert large.anisotropic_quantization_threshold == 0.2
    assert choose_params(30, config_lib.IndexConfig()).k == 30  # k never exceeds the catalog


def test_explicit_config_values_win_and_exact_below_can_be_lowered():
    config = config_lib.IndexConfig(exact_below=100, num_leaves=50, num_leaves_to_search=7, reorder_k=150)
    params = choose_params(2_500, config)
    assert (params.num_leaves, params.num_leaves_to_search, params.reorder_k) == (50, 7, 150)
    assert choose_params(2_500, config_lib.IndexConfig(exact_below=100)).num_leaves == 50
    assert IndexParams.from_dict({**params.to_dict(), "n": 2_500}) == params
    with pytest.raises(ValueError, match="empty catalog"):
        choose_params(0, config)


# --- tuning ------------------------------------------------------------------------------------


def test_the_exact_route_equals_numpy_exact_top_k():
    rng = np.random.default_rng(3)
    vectors, queries = _unit(rng.normal(size=(100, 8))), _unit(rng.normal(size=(20, 8)))
    params = choose_params(100, config_lib.IndexConfig(k=10))
    tuned = tune_index(vectors, params, queries, recall_target=0.95)
    expected = _numpy_top_k(queries, vectors, 10)
    np.testing.assert_array_equal(exact_top_k(queries, vectors, 10), expected)
    np.testing.assert_array_equal(tuned.index(tf.constant(queries))[1].numpy(), expected)
    assert tuned.params.exact and tuned.recall == 1.0 and tuned.curve == []
    assert tuned.latency.single_p50_ms > 0 and tuned.latency.batched_queries_per_second > 0


def _clustered(rng, centers, n):
    """Points around shared centres with noise as large as the spread: neighbours straddle clusters."""
    return _unit(centers[rng.integers(0, len(centers), n)] + rng.normal(size=(n, centers.shape[1])))


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(100, 32))
    vectors, queries = _clustered(rng, centers, 30_000), _clustered(rng, centers, 500)
    params = choose_params(len(vectors), config_lib.IndexConfig(exact_below=1_000))
    return vectors, queries, tune_index(vectors, params, queries, recall_target=0.95)


def test_the_tuner_reaches_the_target_with_the_fewest_leaves_on_clustered_vectors(clustered):
    _, _, tuned = clustered
    params = tuned.params
    assert not params.exact and params.num_leaves == 173 and params.reorder_k == 400
    assert tuned.recall >= 0.95 and tuned.target_met
    leaves = [p.num_leaves_to_search for p in tuned.curve]
    assert leaves[:3] == [1, 2, 4]  # doubling from 1, then bisection fills in
    assert tuned.curve[0].recall < 0.95  # one leaf is not enough: the data makes the tuner work
    failing = [p.num_leaves_to_search for p in tuned.curve if p.recall < 0.95]
    passing = [p.num_leaves_to_search for p in tuned.curve if p.recall >= 0.95]
    assert max(failing) + 1 == min(passing)  # bisection converged on the smallest passing setting
    assert min(passing) <= params.num_leaves_to_search < params.num_leaves
    for point in [*tuned.curve]:
        assert point.latency.single_p99_ms >= point.latency.single_p50_ms > 0


def test_the_recorded_recall_is_what_the_built_index_returns(clustered):
    vectors, queries, tuned = clustered
    rows = tuned.index(tf.constant(queries))[1].numpy()
    truth = _numpy_top_k(queries, vectors, tuned.params.k)
    assert recall_at_k(rows, truth) == pytest.approx(tuned.recall, abs=1e-12)


def test_the_scann_layer_really_uses_anisotropic_quantization(clustered):
    _, _, tuned = clustered
    from scann.proto import scann_pb2

    # TFRS's own ScaNN layer leaves the threshold at NaN (isotropic); the built searcher's config says.
    config = scann_pb2.ScannConfig.FromString(tuned.index._serialized_searcher.scann_config.numpy()[0])
    assert config.hash.asymmetric_hash.noise_shaping_threshold == pytest.approx(0.2)
    assert config.partitioning.num_children == tuned.params.num_leaves
    assert config.partitioning.query_spilling.max_spill_centers == tuned.params.num_leaves_to_search
    assert config.exact_reordering.approx_num_neighbors == tuned.params.reorder_k


def test_a_layer_rebuilt_from_index_json_params_serves_string_ids(clustered):
    vectors, queries, tuned = clustered
    ids = np.array([f"item_{i}" for i in range(len(vectors))])
    layer = make_index_layer(IndexParams.from_dict(tuned.params.to_dict()), vectors, ids)
    found = layer(tf.constant(queries[:50]))[1].numpy().astype(str)
    rows = np.array([[int(i.split("_")[1]) for i in row] for row in found])
    assert recall_at_k(rows, _numpy_top_k(queries[:50], vectors, tuned.params.k)) >= 0.9


def test_plot_tradeoff_writes_a_png(clustered, tmp_path):
    path = tmp_path / "tradeoff.png"
    assert plot_tradeoff(clustered[2], str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- build_index on a tiny run -----------------------------------------------------------------


def _write_dataset(root, table: ItemTable, interactions: list[tuple[str, str]]) -> str:
    """A minimal dataset directory: items and train records, vocabularies, counts and manifest."""
    item_specs, example_specs = schema.item_features(DIMS), schema.interaction_features(HISTORY)
    (root / "vocab").mkdir(parents=True)
    with tf.io.TFRecordWriter(str(root / "items-00000-of-00001.tfrecord.gz"), "GZIP") as writer:
        for row, item in enumerate(table.item_ids):
            values = {"item_id": item, "title": item, "categories": np.array([], dtype=object)}
            for m in DIMS:
                values[f"{m}_embedding"] = table.embeddings[m][row]
                values[f"{m}_present"] = int(table.present[m][row])
            writer.write(schema.encode_example(item_specs, values))
    seen, counts = defaultdict(list), Counter()
    with tf.io.TFRecordWriter(str(root / "train-00000-of-00001.tfrecord.gz"), "GZIP") as writer:
        for user, item in interactions:
            history = ([""] * HISTORY + seen[user])[-HISTORY:]
            values = {"user_id": user, "item_id": item, "history": history, "timestamp": 0}
            writer.write(schema.encode_example(example_specs, {**values, "rating": 0.0, "weight": 1.0}))
            seen[user].append(item)
            counts[item] += 1
    items, users = sorted(table.item_ids, key=lambda i: -counts[i]), sorted(seen)
    (root / "vocab" / "item_id.txt").write_text("".join(f"{i}\n" for i in items))
    (root / "vocab" / "user_id.txt").write_text("".join(f"{u}\n" for u in users))
    (root / "vocab" / "item_frequencies.tsv").write_text("".join(f"{i}\t{counts[i]}\n" for i in items))
    manifest = schema.Manifest(
        item_features=item_specs,
        interaction_features=example_specs,
        encoders=tuple(schema.EncoderRecord(m, "test://random", m, "0", d) for m, d in DIMS.items()),
        vocabularies=(
            schema.VocabularyRecord("item_id", "vocab/item_id.txt", len(items)),
            schema.VocabularyRecord("user_id", "vocab/user_id.txt", len(users)),
        ),
        item_frequencies="vocab/item_frequencies.tsv",
        split=schema.SplitRecord("random", counts={"train": len(interactions)}),
        files={"items": "items-*.tfrecord.gz", "train": "train-*.tfrecord.gz"},
        created_by="tests/test_indexing.py",
    )
    schema.write_manifest(manifest, str(root))
    return str(root)


def _interactions(rng, users: int, items: list[str], per_user: int) -> list[tuple[str, str]]:
    return [(f"user_{u:02d}", str(i)) for u in range(users) for i in rng.choice(items, per_user)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A random (untrained) run over 100 items, 10 of them never in train (cold)."""
    root = tmp_path_factory.mktemp("index_run")
    rng = np.random.default_rng(7)
    table = random_item_table(100, DIMS, seed=1, item_ids=[f"item_{i:03d}" for i in range(100)])
    interactions = _interactions(rng, 20, table.item_ids[:90], per_user=6)
    data_dir = _write_dataset(root / "data", table, interactions)
    data = load_retrieval_data(data_dir, schema.read_manifest(data_dir), MODEL.modalities)
    model = build_retrieval_model(MODEL, data)
    build_towers(model)
    workdir = root / "work"
    config_lib.save_config(config_lib.Config(model=MODEL, index=INDEX), str(workdir))
    model.save_weights(str(workdir / FINAL_CHECKPOINT))
    save_towers(model, str(workdir))
    return {"root": root, "table": table, "data": data_dir, "work": str(workdir), "log": interactions}


def _content_only(table: ItemTable, trained_ids: set[str]) -> int:
    has_content = np.any(np.stack([table.present[m] for m in DIMS], axis=1), axis=1)
    return sum(1 for i, c in zip(table.item_ids, has_content) if c and i not in trained_ids)


def test_build_index_writes_version_1_then_2_with_the_three_files(run):
    first = build_index(run["data"], run["work"])
    second = build_index(run["data"], run["work"], recall_target=0.99)
    assert (first.version, second.version) == (1, 2) and list_versions(run["work"]) == [1, 2]
    for result in (first, second):
        files = sorted(p.name for p in (run["root"] / "work" / "index" / str(result.version)).iterdir())
        assert files == sorted([INDEX_JSON, ITEM_IDS_FILE, VECTORS_FILE])
    item_ids, vectors, info = read_version(second.path)
    assert item_ids == run["table"].item_ids.tolist() and vectors.dtype == np.float32
    assert vectors.shape == (100, MODEL.embedding_dim) and info == json.loads(json.dumps(second.info))
    assert info["exact"] is True and info["k"] == INDEX.k and info["recall_at_k"] == 1.0
    assert info["recall_target"] == 0.99 and info["new_items"] == 0 and info["removed_items"] == 0
    for key in ("num_leaves", "num_leaves_to_search", "reorder_k", "dimensions_per_block"):
        assert key in info and info[key] is None
    assert info["manifest_created_by"] == "tests/test_indexing.py" and info["data_dir"] == run["data"]
    assert info["tuning_queries"] == {"count": 20, "source": "train users' latest histories"}
    trained = load_towers_model(run["work"])
    assert info["content_only_items"] == _content_only(run["table"], set(trained.item_tower.train_item_ids))
    expected = trained.item_tower(tf.constant(item_ids)).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-6)  # same catalog: the trained vectors
    summary = format_index_summary(second)
    assert "index version 2" in summary and "exact" in summary and "recall@10 vs exact: 1.0000" in summary


def test_new_items_get_content_only_vectors_without_retraining(run, tmp_path):
    old = run["table"]
    extra_ids = [f"new_{i:02d}" for i in range(15)]
    extra = random_item_table(15, DIMS, missing_rate=0.3, seed=9, item_ids=extra_ids)
    extra.present["text"][:] = True  # every new item has some content
    extra.embeddings["text"][:] = np.random.default_rng(2).normal(size=(15, DIMS["text"]))
    table = ItemTable(
        np.concatenate([old.item_ids, extra.item_ids]),
        {m: np.concatenate([old.embeddings[m], extra.embeddings[m]]) for m in DIMS},
        {m: np.concatenate([old.present[m], extra.present[m]]) for m in DIMS},
    )
    # New items are in the new dataset's train split too; they still have no trained id row.
    interactions = run["log"] + _interactions(np.random.default_rng(8), 5, extra_ids, per_user=3)
    data_dir = _write_dataset(tmp_path / "data", table, interactions)
    result = build_index(data_dir, run["work"], config=dataclasses.replace(INDEX, exact_below=0, k=5))
    item_ids, vectors, info = read_version(result.path)
    assert item_ids == table.item_ids.tolist() and info["n"] == 115 and info["exact"] is False
    trained = load_towers_model(run["work"])
    assert info["new_items"] == 15
    assert info["content_only_items"] == _content_only(table, set(trained.item_tower.train_item_ids))
    rows = [item_ids.index(i) for i in extra_ids]
    np.testing.assert_allclose(vectors[rows], _content_only_vectors(trained.item_tower, extra), atol=1e-5)
    known = [item_ids.index(i) for i in old.item_ids]
    trained_vectors = trained.item_tower(tf.constant(old.item_ids)).numpy()
    np.testing.assert_allclose(vectors[known], trained_vectors, atol=1e-6)  # shared items keep theirs
    assert "15 new since training" in format_index_summary(result)


def _content_only_vectors(tower, table: ItemTable) -> np.ndarray:
    """The trained tower's fusion of content tokens alone (id token masked), rebuilt by hand."""
    count = table.num_items
    tokens = [tower.id_projection(tower.id_embedding(tf.zeros([count], tf.int64)))]
    masks = [tf.zeros([count])]
    for m in tower.modalities:
        tokens.append(tower.projections[m](tf.math.l2_normalize(table.embeddings[m], axis=-1)))
        masks.append(tf.constant(table.present[m], tf.float32))
    fused = tower.fusion_layer(tf.stack(tokens, axis=1), tf.stack(masks, axis=1))
    return tf.math.l2_normalize(fused, axis=-1).numpy()


def test_batches_that_come_back_narrower_are_padded_not_refused():
    from tfrs_mm.indexing.tuner import run_queries

    widths = iter([3, 2])  # ScaNN: a batch is as wide as the most neighbours one of its queries found

    def search(batch):
        width = next(widths)
        return tf.constant(np.arange(len(batch) * width).reshape(len(batch), width))

    found = run_queries(search, np.zeros([5, 4], np.float32), batch_size=3)
    assert found.shape == (5, 3) and (found[3:, 2] == -1).all() and (found[:3] >= 0).all()
    assert recall_at_k(found, np.array([[0, 1, 2]] * 5)) == pytest.approx((3 + 0 + 0 + 2 + 1) / 15)
