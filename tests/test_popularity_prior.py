"""The popularity prior: one extra coordinate that adds weight · log(1 + count), chosen on valid."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfrs_mm.config import ModelConfig
from tfrs_mm.models import build_retrieval_model, random_item_table
from tfrs_mm.training.warm_start import build_towers

DIMS = {"text": 8, "image": 6}
CONFIG = ModelConfig(
    embedding_dim=16, id_embedding_dim=8, modality_dropout=0.0, modalities=("text", "image"), temperature=0.1
)
PRIOR = dataclasses.replace(CONFIG, popularity_prior=True)
TABLE = random_item_table(30, DIMS, seed=0)
ITEMS = TABLE.item_ids.tolist()
COUNTS = (np.arange(30) * 5) % 13  # includes zero counts
USERS = ["u0", "u1", "u2"]
FEATURES = {
    "user_id": tf.constant(["u0", "u1", "u2"]),
    "item_id": tf.constant(["item_1", "item_4", "item_25"]),
    "history": tf.constant([["", "item_2", "item_3"], ["", "", ""], ["item_5", "item_6", "item_7"]]),
}


def _model(config=PRIOR, counts=COUNTS):
    tf.keras.utils.set_random_seed(0)
    model = build_retrieval_model(TABLE, ITEMS[:20], USERS, config, item_frequencies=counts)
    build_towers(model)
    return model


def test_scores_add_the_weight_times_log_count_through_one_coordinate():
    model = _model()
    model.popularity_prior.prior_weight.assign(0.3)
    ids = tf.constant([*ITEMS, "not_in_catalog"])
    items = model.candidate_vectors(ids).numpy()
    queries = model.query_vectors(FEATURES["user_id"], FEATURES["history"]).numpy()
    assert items.shape == (31, 17) and queries.shape == (3, 17) and model.scoring_dim == 17
    plain = (
        model.query_tower(FEATURES["user_id"], FEATURES["history"]).numpy() @ model.item_tower(ids).numpy().T
    )
    expected = plain + 0.3 * np.log1p(np.concatenate([COUNTS, [0]]))[None, :]
    np.testing.assert_allclose(queries @ items.T, expected, atol=1e-5)
    np.testing.assert_allclose(model.encode_catalog(ITEMS, batch_size=7), items[:30], atol=1e-6)


def test_without_the_prior_the_vectors_are_the_towers():
    model = _model(CONFIG)
    assert model.popularity_prior is None and model.scoring_dim == 16
    np.testing.assert_array_equal(
        model.candidate_vectors(FEATURES["item_id"]).numpy(), model.item_tower(FEATURES["item_id"]).numpy()
    )
    assert model.scoring_query_tower() is model.query_tower


def test_the_loss_never_sees_the_prior():
    model = _model()
    before = float(model.compute_loss(FEATURES))
    model.popularity_prior.prior_weight.assign(5.0)
    assert float(model.compute_loss(FEATURES)) == pytest.approx(before, rel=1e-6)


def test_counts_and_weight_travel_in_checkpoints(tmp_path):
    model = _model()
    model.popularity_prior.prior_weight.assign(0.25)
    model.save_weights(str(tmp_path / "ckpt"))
    restored = _model(counts=None)  # built without counts, as `load_towers_model` builds it
    assert float(restored.popularity_prior.prior_weight.numpy()) == 0.0
    restored.load_weights(str(tmp_path / "ckpt")).expect_partial()
    assert float(restored.popularity_prior.prior_weight.numpy()) == pytest.approx(0.25)
    np.testing.assert_allclose(restored.encode_catalog(ITEMS), model.encode_catalog(ITEMS), atol=1e-6)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="non-negative counts"):
        _model(counts=-np.ones(30))
    with pytest.raises(ValueError, match="non-negative counts"):
        _model(counts=np.ones(29))


def test_the_weight_is_chosen_on_the_valid_split(sample_dataset):
    from tfrs_mm import schema
    from tfrs_mm.evaluation import retrieval_eval
    from tfrs_mm.training.prior_tuning import tune_popularity_prior
    from tfrs_mm.training.retrieval import build_retrieval_model as build
    from tfrs_mm.training.retrieval import load_retrieval_data

    data_dir = str(sample_dataset / "data")
    manifest = schema.read_manifest(data_dir)
    config = dataclasses.replace(PRIOR, modalities=tuple(sorted(manifest.embedding_dims)))
    data = load_retrieval_data(data_dir, manifest, config.modalities)
    tf.keras.utils.set_random_seed(0)
    model = build(config, data)  # untrained towers: close to a random ranking
    build_towers(model)
    result = tune_popularity_prior(model, data, data_dir, manifest, alphas=(0.5, 2.0, 8.0), k=10)
    assert set(result["valid"]) == {"0.0", "0.5", "2.0", "8.0"} and result["chosen_on"] == "valid NDCG@10"
    ndcg = {float(a): m["ndcg@10"] for a, m in result["valid"].items()}
    assert result["alpha"] == max(ndcg, key=lambda a: (ndcg[a], -a))
    # On the sample catalog popular items are liked more often than random ones: the prior helps.
    assert result["alpha"] > 0 and ndcg[result["alpha"]] > ndcg[0.0]
    assert float(model.popularity_prior.prior_weight.numpy()) == pytest.approx(result["alpha"] * 0.1)
    truth = retrieval_eval.load_eval_split(data_dir, manifest, list(data.table.item_ids), "valid")
    again = retrieval_eval.evaluate_model(model, list(data.table.item_ids), truth, data.frequencies, ks=(10,))
    assert again["ndcg@10"] == pytest.approx(ndcg[result["alpha"]])
