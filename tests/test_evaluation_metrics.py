"""Evaluation metrics against hand-computed values, TFRS's FactorizedTopK, and report writing."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tfrs_mm.evaluation import (
    PAD,
    RankingAccumulator,
    factorized_top_k_accuracy,
    long_tail_mask,
    recall_on_subset,
    self_information,
    top_k,
    write_report,
)

# The worked example: 5 items, 3 users, K ∈ {1, 3}.
#   user A: scores descend with the index, train item 1 masked → top-3 [0, 2, 3]; relevant {2, 4}
#   user B: scores ascend with the index, nothing masked       → top-3 [4, 3, 2]; relevant {4, 2, 0}
#   user C: no relevant item → skipped by every metric (users = 2)
SCORES = np.array(
    [[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]], dtype=np.float32
)
TRAIN = [np.array([1]), np.array([], dtype=np.int64), np.array([3])]
TEST = [np.array([2, 4]), np.array([4, 2, 0]), np.array([], dtype=np.int64)]
POPULARITY = np.array([5, 3, 1, 1, 0])  # 10 train interactions
VECTORS = np.array([[1, 0], [0, 0], [0, 1], [1, 1], [1, -1]], dtype=np.float64)
LOG2_3 = math.log2(3)


def _flat(result: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in result.items():
        flat.update(_flat(value, f"{prefix}{key}/") if isinstance(value, dict) else {prefix + key: value})
    return flat


def _worked_accumulator(**kwargs) -> RankingAccumulator:
    acc = RankingAccumulator(ks=(1, 3), num_items=5, **kwargs)
    acc.add(top_k(SCORES, 3, exclude=TRAIN), TEST, user_groups=["gender=F", ["gender=M", "age=25-34"], "x"])
    return acc


def test_top_k_masks_training_items():
    assert top_k(SCORES, 3, exclude=TRAIN).tolist() == [[0, 2, 3], [4, 3, 2], [0, 1, 2]]
    # The same exclusion as a CSR pair (indptr, indices).
    csr = (np.array([0, 1, 1, 2]), np.array([1, 3]))
    assert top_k(SCORES, 3, exclude=csr).tolist() == [[0, 2, 3], [4, 3, 2], [0, 1, 2]]
    # Fewer eligible items than K: padded with PAD, masked items never returned.
    assert top_k(np.array([[3.0, 2.0, 1.0]]), 3, exclude=[np.array([0, 1])]).tolist() == [[2, PAD, PAD]]
    assert top_k(np.array([[1.0, 2.0]]), 5).tolist() == [[1, 0]]  # k clipped to the catalog


def test_top_k_breaks_ties_by_lower_index():
    assert top_k(np.ones((1, 4)), 2).tolist() == [[0, 1]]
    assert top_k(np.array([[0.5, 0.9, 0.5, 0.9, 0.5]]), 3).tolist() == [[1, 3, 0]]
    assert top_k(np.array([[np.nan, 0.1, 0.1]]), 2).tolist() == [[1, 2]]  # NaN ranks last
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(20, 30)).astype(np.float64)  # many ties
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(top_k(scores, 7), expected)
    np.testing.assert_array_equal(top_k(scores, 7), top_k(scores, 7))


def test_accuracy_metrics_hand_computed():
    r = _worked_accumulator().result()
    assert r["users"] == 2
    # K=3. A: hits [0,1,0], |R|=2. B: hits [1,0,1], |R|=3.
    assert r["recall@3"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # 7/12
    assert r["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)  # 1/2
    assert r["f1@3"] == pytest.approx((2 / 5 + 2 / 3) / 2)  # A: 2·(1/3)(1/2)/(5/6) = 2/5; mean 8/15
    assert r["hit@3"] == pytest.approx(1.0)
    ndcg_a = (1 / LOG2_3) / (1 + 1 / LOG2_3)  # IDCG over min(2, 3) = 2 positions
    ndcg_b = (1 + 1 / 2) / (1 + 1 / LOG2_3 + 1 / 2)  # DCG: ranks 1 and 3 (1/log2 4 = 1/2)
    assert r["ndcg@3"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    # MAP: A = (P@2 · 1) / min(2, 3) = (1/2)/2 = 1/4; B = (P@1 + P@3) / 3 = (1 + 2/3)/3 = 5/9.
    assert r["map@3"] == pytest.approx((1 / 4 + 5 / 9) / 2)  # 29/72
    # K=1. A: top-1 [0] misses. B: top-1 [4] hits: recall 1/3, P 1, F1 1/2, NDCG 1, MAP 1/min(3,1) = 1.
    # Means over A and B:
    expected_k1 = dict(recall=1 / 6, precision=1 / 2, f1=1 / 4, hit=1 / 2, ndcg=1 / 2, map=1 / 2)
    for metric, value in expected_k1.items():
        assert r[f"{metric}@1"] == pytest.approx(value), metric
    json.dumps(r)  # JSON-ready


def test_coverage_novelty_diversity_hand_computed():
    r = _worked_accumulator(item_popularity=POPULARITY, item_vectors=VECTORS).result()
    assert r["coverage@1"] == pytest.approx(2 / 5)  # {0, 4}
    assert r["coverage@3"] == pytest.approx(4 / 5)  # {0, 2, 3, 4}
    # Self-information: item 0: −log2(5/10) = 1; items 2, 3: log2 10;
    # item 4 (unseen) is smoothed to count 1: log2 10.
    log2_10 = math.log2(10)
    np.testing.assert_allclose(self_information(POPULARITY)[[0, 2, 4]], [1, log2_10, log2_10])
    assert r["novelty@1"] == pytest.approx((1 + log2_10) / 2)
    assert r["novelty@3"] == pytest.approx(((1 + 2 * log2_10) / 3 + log2_10) / 2)
    # ILD, A = [0, 2, 3]: 1−cos pairs (0,2)=1, (0,3)=1−1/√2, (2,3)=1−1/√2 → (3−√2)/3.
    #      B = [4, 3, 2]: (4,3)=1, (4,2)=1+1/√2, (3,2)=1−1/√2 → 1.
    assert r["diversity@3"] == pytest.approx(((3 - math.sqrt(2)) / 3 + 1) / 2)
    assert r["diversity@1"] is None  # no list with two items


def test_long_tail_and_exposure_hand_computed():
    # Counts [5, 3, 1, 1, 0]: head {0, 1} holds 8/10 = 80% → tail {2, 3, 4}, catalog share 3/5.
    assert long_tail_mask(POPULARITY).tolist() == [False, False, True, True, True]
    r = _worked_accumulator(item_popularity=POPULARITY, item_groups={"cold": np.array([4])}).result()
    tail = r["fairness"]["long_tail"]
    assert tail["items"] == 3 and tail["catalog_share"] == pytest.approx(3 / 5)
    assert tail["exposure_share@3"] == pytest.approx(5 / 6)  # A: 2 tail slots, B: 3, of 6
    assert tail["exposure_ratio@3"] == pytest.approx((5 / 6) / (3 / 5))
    assert tail["exposure_share@1"] == pytest.approx(1 / 2)  # items 0 (head) and 4 (tail)
    cold = r["fairness"]["cold"]
    assert cold["catalog_share"] == pytest.approx(1 / 5)
    assert cold["exposure_share@3"] == pytest.approx(1 / 6)
    assert cold["exposure_ratio@3"] == pytest.approx(5 / 6)


def test_per_user_group_metrics():
    groups = _worked_accumulator().result()["groups"]
    assert set(groups) == {"gender=F", "gender=M", "age=25-34"}  # user C ("x") has no relevant item
    assert groups["gender=F"]["users"] == 1
    assert groups["gender=F"]["recall@3"] == pytest.approx(1 / 2)
    assert groups["gender=F"]["ndcg@3"] == pytest.approx(1 / math.log2(6))  # 1/(1 + log2 3)
    assert groups["gender=M"] == groups["age=25-34"]
    assert groups["gender=M"]["recall@3"] == pytest.approx(2 / 3)


def test_recall_on_cold_subset():
    cold = np.array([True, False, False, False, True])  # items 0 and 4
    topk = top_k(SCORES, 3, exclude=TRAIN)
    relevant = [TEST[0], TEST[1], np.array([1])]  # C's only relevant item is not cold → skipped
    r = recall_on_subset(topk, relevant, cold, ks=(1, 3, 10))
    # A: R∩S = {4}, top-3 [0,2,3] → 0.  B: R∩S = {4, 0}, top-1 [4] → 1/2, top-3 [4,3,2] → 1/2.
    assert r == {"users": 2, "recall@1": pytest.approx(1 / 4), "recall@3": pytest.approx(1 / 4)}


def test_batching_invariance():
    rng = np.random.default_rng(1)
    num_users, num_items = 30, 40
    scores = rng.integers(0, 10, size=(num_users, num_items)).astype(np.float32)
    train = [rng.choice(num_items, size=rng.integers(0, 6), replace=False) for _ in range(num_users)]
    test = [rng.choice(num_items, size=rng.integers(0, 4), replace=False) for _ in range(num_users)]
    groups = [f"g={u % 3}" for u in range(num_users)]
    kwargs = dict(
        ks=(2, 5, 10), num_items=num_items, item_popularity=rng.integers(0, 20, num_items),
        item_vectors=rng.normal(size=(num_items, 4)), item_groups={"even": np.arange(0, num_items, 2)},
    )  # fmt: skip
    whole = RankingAccumulator(**kwargs)
    whole.add(top_k(scores, 10, exclude=train), test, groups)
    batched = RankingAccumulator(**kwargs)
    for lo, hi in [(0, 7), (7, 18), (18, 30)]:
        batched.add(top_k(scores[lo:hi], 10, exclude=train[lo:hi]), test[lo:hi], groups[lo:hi])
    # Equal up to float summation order.
    assert _flat(batched.result()) == pytest.approx(_flat(whole.result()), rel=1e-12)
    assert whole.result()["users"] == sum(len(t) > 0 for t in test)


def test_accumulator_rejects_short_lists_and_drops_large_ks():
    acc = RankingAccumulator(num_items=8)  # default ks: only 5 fits the catalog
    assert acc.ks == (5,)
    with pytest.raises(ValueError):
        acc.add(np.zeros((1, 3), dtype=np.int64), [np.array([0])])


def test_factorized_top_k_accuracy_hand_computed():
    scores = np.array([[3.0, 1.0, 2.0, 2.0], [0.0, 1.0, 1.0, 1.0]])
    # Pair 0: positive item 2 (score 2): one score (3) is strictly greater → hit at k ≥ 2.
    # Pair 1: positive item 3 (score 1): none strictly greater (ties count in its favour) → hit at k ≥ 1.
    r = factorized_top_k_accuracy(scores, np.array([2, 3]), ks=(1, 2))
    assert r == {
        "factorized_top_k/top_1_categorical_accuracy": 0.5,
        "factorized_top_k/top_2_categorical_accuracy": 1.0,
    }


def test_factorized_top_k_accuracy_matches_tfrs():
    import tensorflow as tf
    import tensorflow_recommenders as tfrs  # after tfrs_mm (conftest), so tf-keras is selected

    rng = np.random.default_rng(2)
    # Small integer embeddings: scores are exact in float32 and full of ties (here a rule counting
    # ties against the positive would give different accuracies at k = 3, 5, 10).
    queries = rng.integers(-2, 3, size=(25, 3)).astype(np.float32)
    candidates = rng.integers(-2, 3, size=(30, 3)).astype(np.float32)
    positives = rng.integers(0, 30, size=25)
    ks = (1, 3, 5, 10)
    index = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
    index.index(tf.constant(candidates))
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=ks)
    metric.update_state(tf.constant(queries), tf.constant(candidates[positives]))
    expected = {m.name: float(m.result()) for m in metric._top_k_metrics}
    ours = factorized_top_k_accuracy(queries @ candidates.T, positives, ks=ks)
    assert ours == pytest.approx(expected, abs=1e-6)
    assert len(set(ours.values())) > 1  # the case is not degenerate


def test_write_report(tmp_path):
    metrics = _worked_accumulator(item_popularity=POPULARITY).result()
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.2, 2.4, 2.1]}
    ablation = {"all": {"recall@10": 0.2, "ndcg@10": 0.1}, "ids only": {"recall@10": 0.15, "ndcg@10": None}}
    path = write_report(metrics, history, ablation, str(tmp_path / "run"))
    text = Path(path).read_text(encoding="utf-8")
    for png in ("loss_curves.png", "recall_at_k.png", "ablation.png"):
        assert (tmp_path / "run" / png).stat().st_size > 0
        assert f"]({png})" in text
    assert "| recall@3 |" in text and "| fairness/long_tail/catalog_share | 0.6000 |" in text
    # Missing parts are left out, not errors.
    bare = Path(write_report(None, None, None, str(tmp_path / "bare"))).read_text(encoding="utf-8")
    assert "png" not in bare
