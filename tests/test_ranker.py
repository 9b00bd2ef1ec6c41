"""The cross-attention ranker: shapes, well-formed explanations, losses, serialisation."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_mm.config import ModelConfig
from tfrs_mm.models import random_item_table
from tfrs_mm.models.ranker import HISTORY_ATTENTION, MODALITY_WEIGHTS, SCORES, CrossAttentionRanker
from tfrs_mm.models.ranking import CANDIDATE_IDS, LABELS, build_ranking_model, ranking_loss

DIMS = {"text": 8, "image": 6, "audio": 4}
ITEMS = [f"item_{i}" for i in range(30)]
CONFIG = ModelConfig(
    ranker_dim=16, ranker_heads=2, ranker_mlp=(16,), id_embedding_dim=8, modality_dropout=0.0
)
USERS = tf.constant(["u0", "u1", "stranger"])
HISTORY = tf.constant([["", "item_1", "item_2"], ["", "", ""], ["item_3", "item_29", "item_0"]])
CANDIDATES = tf.constant([["item_4", "item_5"], ["item_6", "item_25"], ["item_7", "nope"]])


def make_model(config=CONFIG):
    table = random_item_table(len(ITEMS), DIMS, missing_rate=0.3, seed=3, item_ids=ITEMS)
    return build_ranking_model(table, ITEMS[:20], ["u0", "u1", "u2"], config)


def features():
    return {"user_id": USERS, "history": HISTORY, CANDIDATE_IDS: CANDIDATES}


def test_scores_and_explanations_are_well_formed():
    model = make_model()
    out = model(features())
    assert out[SCORES].shape == (3, 2)
    attention, weights = out[HISTORY_ATTENTION].numpy(), out[MODALITY_WEIGHTS].numpy()
    assert attention.shape == (3, 2, 3) and weights.shape == (3, 2, 4)
    np.testing.assert_allclose(attention[0].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(attention[0, :, 0], 0.0)  # padding gets no attention
    np.testing.assert_array_equal(attention[1], 0.0)  # empty history: no attention at all
    np.testing.assert_allclose(attention[2].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    _, mask = model.ranker.item_tower.tokens(CANDIDATES)
    np.testing.assert_array_equal(weights[mask.numpy() == 0], 0.0)  # missing modalities get no weight
    assert np.isfinite(out[SCORES].numpy()).all()


def test_a_candidates_score_does_not_depend_on_the_other_candidates():
    model = make_model()
    pair = model(features())[SCORES].numpy()
    single = model({**features(), CANDIDATE_IDS: CANDIDATES[:, :1]})[SCORES].numpy()
    np.testing.assert_allclose(single[:, 0], pair[:, 0], atol=1e-5)


def test_losses_match_hand_computed_values():
    labels = tf.constant([[1.0, 0.0, 0.0]])
    logits = tf.constant([[2.0, 0.0, -1.0]])
    softmax = -np.log(np.exp(2.0) / (np.exp(2.0) + 1.0 + np.exp(-1.0)))
    assert ranking_loss("listwise")(labels, logits).numpy() == pytest.approx(softmax, rel=1e-5)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    bce = -(np.log(sig(2.0)) + np.log(1 - sig(0.0)) + np.log(1 - sig(-1.0))) / 3
    assert ranking_loss("pointwise")(labels, logits).numpy() == pytest.approx(bce, rel=1e-5)
    with pytest.raises(ValueError, match="listwise"):
        ranking_loss("pairwise")


@pytest.mark.parametrize("loss", ["pointwise", "listwise"])
def test_training_lowers_the_loss(loss):
    import dataclasses

    model = make_model(dataclasses.replace(CONFIG, ranking_loss=loss))
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    batch = {**features(), LABELS: tf.constant([[1.0, 0.0]] * 3)}
    dataset = tf.data.Dataset.from_tensors(batch).repeat(30)
    history = model.fit(dataset, epochs=1, verbose=0)
    first = model.compute_loss(batch).numpy()
    model.fit(dataset, epochs=2, verbose=0)
    assert model.compute_loss(batch).numpy() < first
    assert "auc" in history.history


def test_config_and_saved_model_round_trip(tmp_path):
    model = make_model()
    ranker = model.ranker
    expected = ranker(USERS, HISTORY, CANDIDATES)
    clone = CrossAttentionRanker.from_config(ranker.get_config())
    clone(USERS, HISTORY, CANDIDATES)
    clone.set_weights(ranker.get_weights())
    got = clone(USERS, HISTORY, CANDIDATES)
    for key in (SCORES, HISTORY_ATTENTION, MODALITY_WEIGHTS):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5)

    module = tf.Module()
    module.ranker = ranker
    module.rank = tf.function(
        lambda u, h, c: ranker(u, h, c),
        input_signature=[tf.TensorSpec([None], tf.string), *[tf.TensorSpec([None, None], tf.string)] * 2],
    )
    tf.saved_model.save(module, str(tmp_path / "ranker"))
    loaded = tf.saved_model.load(str(tmp_path / "ranker"))
    np.testing.assert_allclose(loaded.rank(USERS, HISTORY, CANDIDATES)[SCORES], expected[SCORES], atol=1e-5)


def test_an_untrained_ranker_on_a_retrieval_model_scores_with_its_logits_and_popularity_prior():
    import dataclasses

    from tfrs_mm.models import build_retrieval_model
    from tfrs_mm.training.warm_start import build_towers

    table = random_item_table(len(ITEMS), DIMS, missing_rate=0.3, seed=3, item_ids=ITEMS)
    config = dataclasses.replace(CONFIG, embedding_dim=8, temperature=0.1, popularity_prior=True)
    counts = np.arange(len(ITEMS)) % 5
    retrieval = build_retrieval_model(table, ITEMS[:20], ["u0", "u1"], config, item_frequencies=counts)
    build_towers(retrieval)
    retrieval.popularity_prior.prior_weight.assign(0.2)
    model = build_ranking_model(
        table,
        ITEMS[:20],
        ["u0", "u1"],
        config,
        retrieval_tower=retrieval.query_tower,
        retrieval_prior=retrieval.popularity_prior,
    )
    ranker = model.ranker
    query = retrieval.query_tower(USERS, HISTORY).numpy()
    items = retrieval.item_tower(CANDIDATES).numpy()
    rows = np.vectorize(lambda i: ITEMS.index(i) if i in ITEMS else -1)(CANDIDATES.numpy().astype(str))
    prior = np.where(rows >= 0, 0.2 * np.log1p(counts[np.maximum(rows, 0)]), 0.0)
    expected = (np.einsum("bd,bcd->bc", query, items) + prior) / 0.1  # the correction starts at zero
    np.testing.assert_allclose(ranker(USERS, HISTORY, CANDIDATES)[SCORES], expected, rtol=1e-5, atol=1e-5)
    clone = CrossAttentionRanker.from_config(ranker.get_config())
    clone(USERS, HISTORY, CANDIDATES)
    clone.set_weights(ranker.get_weights())
    np.testing.assert_allclose(clone(USERS, HISTORY, CANDIDATES)[SCORES], expected, rtol=1e-5, atol=1e-5)


def test_without_a_user_embedding_a_user_is_their_history():
    import dataclasses

    ranker = make_model(dataclasses.replace(CONFIG, ranker_user_embedding=False)).ranker
    assert ranker.user_embedding is None and not [w for w in ranker.weights if "user" in w.name]
    history = tf.constant([["item_3", "item_29", "item_0"]] * 2)
    candidates = tf.constant([["item_4", "item_5", "item_6"]] * 2)
    ranker(tf.constant(["u0"]), history[:1], candidates[:1])
    ranker.score.kernel.assign(np.random.default_rng(0).normal(size=ranker.score.kernel.shape))
    scores = ranker(tf.constant(["u0", "stranger"]), history, candidates)[SCORES].numpy()
    assert np.ptp(scores[0]) > 0  # candidates differ: the head is not all zero
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-6)
    clone = CrossAttentionRanker.from_config(ranker.get_config())
    assert clone.user_embedding is None
