"""Fusion layers, ItemTower and QueryTower on a tiny 30-item table."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfrs_mm.config import ModelConfig
from tfrs_mm.models import (
    AttentionFusion,
    ConcatFusion,
    GatedFusion,
    ItemTable,
    ItemTower,
    QueryTower,
    UserFeatures,
    UserTable,
    random_item_table,
)

DIMS = {"text": 8, "image": 6, "audio": 4}
CONFIG = ModelConfig(embedding_dim=16, id_embedding_dim=8, modality_dropout=0.0)
TRAIN_ITEMS = [f"item_{i}" for i in range(20)]  # items 20..29 are cold


def make_table() -> ItemTable:
    table = random_item_table(30, DIMS, missing_rate=0.3, seed=0)
    for m in DIMS:  # item_0 has no content; items 20 and 21 (cold) have all of it
        table.present[m][0], table.present[m][20], table.present[m][21] = False, True, True
        table.embeddings[m][0] = 0.0
    return table


def make_tower(config: ModelConfig = CONFIG, table: ItemTable | None = None) -> ItemTower:
    tf.keras.utils.set_random_seed(0)
    return ItemTower.from_table(table or make_table(), TRAIN_ITEMS, config)


def l2(x: tf.Tensor) -> np.ndarray:
    return np.linalg.norm(np.asarray(x), axis=-1)


@pytest.mark.parametrize("fusion_cls", [ConcatFusion, GatedFusion, AttentionFusion])
def test_fusion_masks_and_config_round_trip(fusion_cls):
    tokens = tf.random.stateless_normal([3, 4, 5], seed=[1, 2])
    mask = tf.constant([[1, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]], tf.float32)
    layer = fusion_cls(name="fusion")
    fused, weights = layer(tokens, mask, return_weights=True)
    assert fused.shape == (3, 5) and weights.shape == (3, 4)
    assert np.isfinite(fused.numpy()).all() and np.isfinite(weights.numpy()).all()
    np.testing.assert_array_equal(weights.numpy()[mask.numpy() == 0], 0.0)
    np.testing.assert_allclose(weights.numpy()[:2].sum(-1), 1.0, rtol=1e-6)
    # A masked token's value must not matter.
    changed = tf.tensor_scatter_nd_update(tokens, [[0, 2]], [tf.fill([5], 9.0)])
    np.testing.assert_allclose(layer(changed, mask), fused, atol=1e-6)
    clone = fusion_cls.from_config(layer.get_config())
    clone(tokens, mask)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(tokens, mask), fused, atol=1e-6)


@pytest.mark.parametrize("fusion", ["concat", "gated", "attention"])
def test_item_tower_shapes_and_unit_norm(fusion):
    tower = make_tower(dataclasses.replace(CONFIG, fusion=fusion))
    ids = tf.constant([["item_1", "item_25", ""], ["not_in_catalog", "item_0", "item_3"]])
    vectors = tower(ids)
    assert vectors.shape == (2, 3, 16)
    np.testing.assert_allclose(l2(vectors), 1.0, rtol=1e-5)
    assert tower(tf.constant(["item_1", "item_2"])).shape == (2, 16)


def test_masked_modality_content_is_ignored():
    table = make_table()
    tower = make_tower(table=table)
    item = next(i for i in range(1, 30) if not table.present["image"][i])
    before = tower(tf.constant([table.item_ids[item]]))
    tower.content["image"][item + 1].assign(tf.fill([DIMS["image"]], 5.0))
    np.testing.assert_allclose(tower(tf.constant([table.item_ids[item]])), before, atol=1e-6)


def test_item_without_content_gets_finite_vector_from_its_id():
    tower = make_tower()
    vectors, weights = tower(tf.constant(["item_0", "item_1"]), return_weights=True)
    np.testing.assert_allclose(l2(vectors), 1.0, rtol=1e-5)
    np.testing.assert_allclose(weights[0], [1.0, 0.0, 0.0, 0.0])
    assert not np.allclose(vectors[0], vectors[1])


def test_cold_items_are_content_driven():
    tower = make_tower()
    assert tower.id_lookup(tf.constant(["item_20", "item_21"])).numpy().tolist() == [0, 0]
    vectors = tower(tf.constant(["item_20", "item_21"]))
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3
    only_id = tower(tf.constant(["item_20", "item_21"]), active_modalities=("id",))
    np.testing.assert_allclose(only_id[0], only_id[1], atol=1e-6)  # same OOV row: content made them differ


def test_modality_dropout_only_in_training():
    tower = make_tower(dataclasses.replace(CONFIG, modality_dropout=0.5))
    ids = tf.constant([f"item_{i}" for i in range(30)] * 4)
    np.testing.assert_allclose(tower(ids), tower(ids, training=False))
    trained, weights = tower(ids, training=True, return_weights=True)
    assert np.abs(trained - tower(ids)).max() > 1e-3
    np.testing.assert_allclose(weights.numpy().sum(-1), 1.0, rtol=1e-5)  # never all dropped


@pytest.mark.parametrize(
    "active", [("id",), ("text",), ("image",), ("audio",), ("id", "text", "image", "audio")]
)
def test_ablation_keeps_only_active_tokens(active):
    tower = make_tower()
    ids = tf.constant(["item_20", "item_21", "item_5"])
    _, weights = tower(ids, active_modalities=active, return_weights=True)
    inactive = [i for i, name in enumerate(tower.token_names) if name not in active]
    np.testing.assert_array_equal(weights.numpy()[:, inactive], 0.0)
    tower.active_modalities = active
    np.testing.assert_allclose(tower(ids), tower(ids, active_modalities=active))
    with pytest.raises(ValueError, match="unknown modalities"):
        tower(ids, active_modalities=("smell",))


def test_item_tower_config_round_trip():
    tower = make_tower()
    ids = tf.constant(["item_1", "item_25", "nope"])
    expected = tower(ids)
    clone = ItemTower.from_config(tower.get_config())
    clone(ids)
    clone.set_weights(tower.get_weights())
    np.testing.assert_allclose(clone(ids), expected, atol=1e-6)


def make_user_features() -> UserFeatures:
    table = UserTable(
        np.array(["u0", "u1", "u9"]),
        categorical={"user.gender": np.array(["F", "", "M"])},
        vocabularies={"user.gender": ["F", "M"]},
        numeric={"user.age": np.array([20.0, 0.0, 40.0], np.float32)},
        numeric_present={"user.age": np.array([True, False, True])},
    )
    return UserFeatures.from_table(table, output_dim=8, name="user_features")


def make_query_tower(
    pooling: str = "attention", user_features: bool = False, user_dim: int = 8
) -> QueryTower:
    tower = make_tower()
    return QueryTower(
        tower,
        ["u0", "u1", "u2"],
        user_embedding_dim=user_dim,
        history_pooling=pooling,
        user_features=make_user_features() if user_features else None,
    )


class _Towers(tf.Module):
    def __init__(self, query_tower: QueryTower):
        super().__init__()
        self.query_tower = query_tower

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def items(self, item_ids):
        return self.query_tower.item_tower(item_ids, training=False)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None, None], tf.string)])
    def queries(self, user_id, history):
        return self.query_tower(user_id, history, training=False)


USERS = tf.constant(["u0", "u1", "stranger"])
HISTORY = tf.constant([["", "item_1", "item_25"], ["", "", ""], ["item_3", "nope", "item_0"]])


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_query_tower_shapes_and_empty_history(pooling):
    query_tower = make_query_tower(pooling)
    queries, weights = query_tower(USERS, HISTORY, return_weights=True)
    assert queries.shape == (3, 16) and weights.shape == (3, 3)
    assert np.isfinite(queries.numpy()).all()
    np.testing.assert_allclose(l2(queries), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(weights.numpy()[1], 0.0)
    np.testing.assert_array_equal(weights.numpy()[0, 0], 0.0)
    empty_only = query_tower(tf.constant(["u1"]), tf.constant([["", "", ""]]))
    np.testing.assert_allclose(empty_only[0], queries[1], atol=1e-6)


def test_a_query_tower_without_user_ids_encodes_users_by_history_alone():
    query_tower = make_query_tower(user_dim=0)
    queries, weights = query_tower(USERS, HISTORY, return_weights=True)
    assert queries.shape == (3, 16) and query_tower.user_embedding is None
    assert not [w for w in query_tower.weights if "user_embedding" in w.name]
    np.testing.assert_allclose(l2(queries)[[0, 2]], 1.0, rtol=1e-5)
    # An empty history leaves only the projection's bias: a learned default query (zero at init), no NaN.
    assert np.isfinite(queries.numpy()[1]).all()
    np.testing.assert_allclose(weights.numpy().sum(axis=1), [1.0, 0.0, 1.0], rtol=1e-5)
    # A stranger with u0's history is encoded exactly as u0.
    same = query_tower(tf.constant(["stranger"]), HISTORY[:1])
    np.testing.assert_allclose(same[0], queries[0], atol=1e-6)


@pytest.mark.parametrize(("user_features", "user_dim"), [(False, 8), (True, 8), (True, 0)])
def test_query_tower_config_round_trip(user_features, user_dim):
    query_tower = make_query_tower(user_features=user_features, user_dim=user_dim)
    expected = query_tower(USERS, HISTORY)
    clone = QueryTower.from_config(query_tower.get_config())
    clone(USERS, HISTORY)
    clone.set_weights(query_tower.get_weights())
    np.testing.assert_allclose(clone(USERS, HISTORY), expected, atol=1e-6)


@pytest.mark.parametrize("user_features", [False, True])
def test_towers_saved_model_round_trip(tmp_path, user_features):
    module = _Towers(make_query_tower(user_features=user_features))
    ids = tf.constant(["item_1", "item_25", "nope", ""])
    expected_items, expected_queries = module.items(ids), module.queries(USERS, HISTORY)
    tf.saved_model.save(module, str(tmp_path / "towers"))
    loaded = tf.saved_model.load(str(tmp_path / "towers"))
    np.testing.assert_allclose(loaded.items(ids), expected_items, atol=1e-6)
    np.testing.assert_allclose(loaded.queries(USERS, HISTORY), expected_queries, atol=1e-6)


def test_item_table_validates_shapes():
    with pytest.raises(ValueError, match="present"):
        ItemTable(np.array(["a", "b"]), {"text": np.zeros([2, 3])}, {"text": np.ones([3])})
    with pytest.raises(ValueError, match="unique"):
        ItemTable(np.array(["a", "a"]), {}, {})


def test_user_features_encode_values_and_treat_unknowns_as_missing():
    layer = make_user_features()
    out = layer(tf.constant(["u0", "u1", "u9", "stranger"]))
    assert out.shape == (4, 8) and np.isfinite(out.numpy()).all()
    codes, numeric = layer.codes.numpy(), layer.numeric.numpy()
    np.testing.assert_array_equal(codes[:, 0], [0, 1, 0, 2])  # row 0: unknown user; "" is missing
    np.testing.assert_allclose(numeric[:, 0], [0.0, -1.0, 0.0, 1.0])  # standardised over present ages
    np.testing.assert_array_equal(numeric[:, 1], [0.0, 1.0, 0.0, 1.0])  # presence bits
    # A user without features and a user missing from the table are encoded alike.
    np.testing.assert_allclose(out[1], out[3], atol=1e-6)
    assert not np.allclose(out[0], out[2])


def test_user_table_validates_shapes():
    with pytest.raises(ValueError, match="vocabularies"):
        UserTable(np.array(["a"]), categorical={"user.g": np.array(["F"])})
    with pytest.raises(ValueError, match=r"\[2\]"):
        UserTable(
            np.array(["a", "b"]), numeric={"user.x": np.zeros(3)}, numeric_present={"user.x": np.ones(3)}
        )
