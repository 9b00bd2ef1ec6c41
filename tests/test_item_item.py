"""Item-to-item evidence: EASE weights, their lookup, the ranker's use of them, and their fit."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfrs_mm.config import ModelConfig
from tfrs_mm.models import random_item_table
from tfrs_mm.models.item_item import ItemItemEvidence, cooccurrence, fit_ease, frequent_items
from tfrs_mm.models.ranker import HISTORY_ATTENTION, SCORES, CrossAttentionRanker
from tfrs_mm.models.ranking import build_ranking_model
from tfrs_mm.training.item_item_fit import best_weight, log_likelihood


def test_ease_columns_are_ridge_regressions_on_the_other_items():
    rng = np.random.default_rng(0)
    x = (rng.random([40, 6]) < 0.4).astype(np.float64)
    weights = fit_ease(x.T @ x, l2=3.0)
    np.testing.assert_array_equal(np.diag(weights), 0.0)
    for j in range(6):  # B[:, j] minimises |x_j - X_{-j} b|^2 + l2 |b|^2 (Steck 2019)
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        ridge = np.linalg.solve(a.T @ a + 3.0 * np.eye(5), a.T @ x[:, j])
        np.testing.assert_allclose(weights[others, j], ridge, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        fit_ease(x.T @ x, l2=0.0)


def test_cooccurrence_counts_each_user_item_pair_once():
    gram = cooccurrence(["a", "a", "a", "b"], [0, 1, 1, 1], 3)
    np.testing.assert_array_equal(gram, [[1, 1, 0], [1, 2, 0], [0, 0, 0]])


def test_frequent_items_keeps_the_most_counted_and_drops_unseen():
    assert frequent_items(["a", "b", "c", "d"], np.array([1, 5, 0, 5]), 3) == ["b", "d", "a"]
    assert frequent_items(["a", "b", "c"], np.array([1, 5, 0]), 5) == ["b", "a"]


def test_evidence_looks_up_history_to_candidate_weights():
    weights = np.arange(9, dtype=np.float32).reshape(3, 3)
    layer = ItemItemEvidence(["x", "y", "z"], weights)
    history = tf.constant([["", "x", "z"], ["y", "unknown", "x"]])
    candidates = tf.constant([["y", "z"], ["x", "unknown"]])
    got = layer(history, candidates).numpy()  # [B, C, H]
    expected = np.array([[[0, 1, 7], [0, 2, 8]], [[3, 0, 0], [0, 0, 0]]], np.float32)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="3, 3"):
        ItemItemEvidence(["x", "y", "z"], np.zeros([2, 2]))


DIMS = {"text": 8, "image": 6}
ITEMS = [f"item_{i}" for i in range(12)]


def _ranker(evidence=None):
    table = random_item_table(len(ITEMS), DIMS, missing_rate=0.0, seed=1, item_ids=ITEMS)
    config = ModelConfig(
        ranker_dim=8,
        ranker_heads=2,
        ranker_mlp=(8,),
        id_embedding_dim=4,
        modality_dropout=0.0,
        modalities=("text", "image"),
    )
    ranker = build_ranking_model(table, ITEMS, ["u0"], config, item_item=evidence).ranker
    ranker(tf.constant(["u0"]), tf.constant([[""]]), tf.constant([[""]]))
    return ranker


def test_the_ranker_adds_the_weighted_evidence_sum_to_its_score():
    rng = np.random.default_rng(2)
    weights = rng.normal(size=[len(ITEMS), len(ITEMS)]).astype(np.float32)
    ranker = _ranker(ItemItemEvidence(ITEMS, weights))
    history = tf.constant([["item_1", "item_2", ""]])
    candidates = tf.constant([["item_3", "item_4", "item_5"]])
    before = ranker(tf.constant(["u0"]), history, candidates)[SCORES].numpy()
    ranker.evidence_weight.assign(0.7)
    after = ranker(tf.constant(["u0"]), history, candidates)[SCORES].numpy()
    expected = 0.7 * (weights[1, [3, 4, 5]] + weights[2, [3, 4, 5]])
    np.testing.assert_allclose(after - before, expected[None], rtol=1e-5, atol=1e-5)


def test_with_zero_projections_attention_is_the_softmax_of_similarity_and_evidence():
    weights = np.zeros([len(ITEMS), len(ITEMS)], np.float32)
    weights[1, 3], weights[2, 3] = 2.0, -1.0
    ranker = _ranker(ItemItemEvidence(ITEMS, weights))
    query = ranker.cross_attention.query_dense
    query.kernel.assign(tf.zeros_like(query.kernel))
    ranker.evidence_scale.assign(0.5)
    history, candidate = ["item_1", "item_2", "item_0"], "item_3"
    out = ranker(tf.constant(["u0"]), tf.constant([history]), tf.constant([[candidate]]))
    tokens, _ = ranker.item_tower.tokens(tf.constant([[candidate, *history]]))
    tokens = tokens.numpy()[0] / np.linalg.norm(tokens.numpy()[0], axis=-1, keepdims=True)  # [4, T, D]
    mean, std = ranker.similarity_mean.numpy(), ranker.similarity_std.numpy()
    z = (np.einsum("td,htd->th", tokens[0], tokens[1:]) - mean[:, None]) / std[:, None]  # [T, H]
    logits = ranker.similarity_scale.numpy() * z + 0.5 * np.array([2.0, -1.0, 0.0])[None]
    per_token = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    modality = out["modality_weights"].numpy()[0, 0]
    np.testing.assert_allclose(out[HISTORY_ATTENTION].numpy()[0, 0], modality @ per_token, rtol=1e-4)


def test_calibrated_similarity_is_standardised_over_the_catalog():
    ranker = _ranker()
    ranker.calibrate_similarity(ITEMS, pairs=20000)
    tokens, _ = ranker.item_tower.tokens(tf.constant([ITEMS]))
    unit = tokens.numpy()[0] / np.linalg.norm(tokens.numpy()[0], axis=-1, keepdims=True)  # [N, T, D]
    cosine = np.einsum("itd,jtd->tij", unit, unit).reshape(unit.shape[1], -1)  # every ordered pair
    z = (cosine - ranker.similarity_mean.numpy()[:, None]) / ranker.similarity_std.numpy()[:, None]
    np.testing.assert_allclose(z.mean(-1), 0.0, atol=0.1)
    np.testing.assert_allclose(z.std(-1), 1.0, atol=0.1)


def test_evidence_round_trips_through_config_and_checkpoint(tmp_path):
    weights = np.random.default_rng(3).normal(size=[len(ITEMS), len(ITEMS)]).astype(np.float32)
    ranker = _ranker(ItemItemEvidence(ITEMS, weights))
    ranker.evidence_weight.assign(1.3)
    tf.train.Checkpoint(ranker=ranker).write(str(tmp_path / "ckpt"))
    spec = tf.keras.layers.serialize(ranker)
    twin = tf.keras.layers.deserialize(spec, custom_objects={"CrossAttentionRanker": CrossAttentionRanker})
    twin(tf.constant(["u0"]), tf.constant([[""]]), tf.constant([[""]]))
    tf.train.Checkpoint(ranker=twin).read(str(tmp_path / "ckpt")).expect_partial()
    args = (tf.constant(["u0"]), tf.constant([["item_1", "item_5"]]), tf.constant([["item_2", "item_9"]]))
    np.testing.assert_allclose(twin(*args)[SCORES].numpy(), ranker(*args)[SCORES].numpy(), rtol=1e-5)


def test_the_fitted_weight_maximises_the_lists_likelihood():
    rng = np.random.default_rng(4)
    base = rng.normal(size=[200, 6])
    labels = np.zeros([200, 6])
    labels[:, 0] = 1.0
    evidence = rng.normal(size=[200, 6]) + 0.8 * labels  # evidence favours the positive
    gamma = best_weight(base, evidence, labels)
    grid = np.linspace(0, 5, 2001)
    on_grid = grid[np.argmax([log_likelihood(base + g * evidence, labels) for g in grid])]
    assert gamma == pytest.approx(on_grid, abs=5e-3) and gamma > 0.1
    assert best_weight(base, -evidence, labels) == 0.0  # evidence against the positives is not used


def test_item_item_evidence_needs_held_out_lists(sample_dataset, tmp_path):
    from tfrs_mm.training.ranking import ListPlan, fit_item_item

    config = dataclasses.replace(ModelConfig(), ranker_item_item=True)
    plan = ListPlan(batches=None, steps=1, lists=1, valid={})
    with pytest.raises(ValueError, match="ranking_lists=valid"):
        fit_item_item(config, None, None, sample_dataset, None, plan)


def test_an_empty_ridge_grid_is_a_clear_error():
    from tfrs_mm.training.item_item_fit import fit_evidence

    config = dataclasses.replace(ModelConfig(), ranker_item_item=True, ranker_item_item_l2s=())
    with pytest.raises(ValueError, match="ranker_item_item_l2s"):
        fit_evidence(None, None, "", None, {}, config)


def test_a_checkpoint_without_the_rankers_weights_is_refused(tmp_path):
    from tfrs_mm.training.ranking import FINAL_CHECKPOINT, load_ranker, ranking_workdir, save_ranker

    out = ranking_workdir(str(tmp_path))
    (tmp_path / "ranking").mkdir()
    weights = np.zeros([len(ITEMS), len(ITEMS)], np.float32)
    save_ranker(_ranker(ItemItemEvidence(ITEMS, weights)), out)  # the architecture has evidence
    tf.train.Checkpoint(ranker=_ranker()).write(f"{out}/{FINAL_CHECKPOINT}")  # the weights do not
    with pytest.raises(AssertionError):
        load_ranker(str(tmp_path))
