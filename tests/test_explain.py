"""Recommendations with explanations from small random retrieval and ranking models."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_mm import explain
from tfrs_mm.config import ModelConfig
from tfrs_mm.models import build_retrieval_model, random_item_table
from tfrs_mm.models.ranker import SCORES
from tfrs_mm.models.ranking import build_ranking_model

DIMS = {"text": 8, "image": 6, "audio": 4}
ITEMS = [f"item_{i}" for i in range(30)]
USERS = ["u0", "u1", "u2"]
CONFIG = ModelConfig(
    embedding_dim=16, id_embedding_dim=8, ranker_dim=16, ranker_heads=2, ranker_mlp=(16,), modality_dropout=0
)
HISTORY = ["item_1", "item_2", "item_3", "item_2"]  # a repeat: its attention is summed


@pytest.fixture(scope="module")
def models():
    tf.keras.utils.set_random_seed(0)
    table = random_item_table(len(ITEMS), DIMS, missing_rate=0.3, seed=3, item_ids=ITEMS)
    retrieval = build_retrieval_model(table, ITEMS[:20], USERS, CONFIG)
    ranker = build_ranking_model(table, ITEMS[:20], USERS, CONFIG).ranker
    return retrieval, ranker


def test_recommendations_are_reranked_retrieval_candidates(models):
    retrieval, ranker = models
    recs = explain.recommend(retrieval, ranker, ITEMS, "u0", HISTORY, k=5, candidates=12)
    assert len(recs) == 5
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    assert len({r.item_id for r in recs}) == 5
    assert all(1 <= r.retrieval_rank <= 12 for r in recs)
    # The scores are the ranker's on retrieval's own candidate list.
    full = explain.recommend(retrieval, ranker, ITEMS, "u0", HISTORY, k=12, candidates=12)
    assert [r.item_id for r in full[:5]] == [r.item_id for r in recs]
    query = retrieval.query_tower(tf.constant(["u0"]), tf.constant([HISTORY])).numpy()[0]
    vectors = explain.catalog_vectors(retrieval, ITEMS)
    unseen = [i for i in range(len(ITEMS)) if ITEMS[i] not in HISTORY]
    best = sorted(unseen, key=lambda i: -query @ vectors[i])[:12]
    assert {r.item_id for r in full} == {ITEMS[i] for i in best}
    by_rank = sorted(full, key=lambda r: r.retrieval_rank)
    assert [r.item_id for r in by_rank] == [ITEMS[i] for i in best]
    direct = ranker(tf.constant(["u0"]), tf.constant([HISTORY]), tf.constant([[recs[0].item_id]]))
    assert recs[0].score == pytest.approx(float(direct[SCORES][0, 0]), abs=1e-5)


def test_history_and_excluded_items_are_never_recommended(models):
    retrieval, ranker = models
    exclude = ["item_4", "item_5"]
    recs = explain.recommend(retrieval, ranker, ITEMS, "u1", HISTORY, k=30, candidates=30, exclude=exclude)
    # Every unseen item comes back once the lists are as long as the catalog.
    assert sorted(r.item_id for r in recs) == sorted(set(ITEMS) - set(HISTORY) - set(exclude))


def test_padding_and_bytes_in_the_history_change_nothing(models):
    retrieval, ranker = models
    plain = explain.recommend(retrieval, ranker, ITEMS, "u2", HISTORY, k=4, candidates=10)
    padded = [b"", b""] + [h.encode() for h in HISTORY]
    same = explain.recommend(retrieval, ranker, ITEMS, "u2", padded, k=4, candidates=10)
    assert [r.item_id for r in same] == [r.item_id for r in plain]
    np.testing.assert_allclose([r.score for r in same], [r.score for r in plain], atol=1e-5)


def test_explanation_weights_are_well_formed(models):
    retrieval, ranker = models
    vectors = explain.catalog_vectors(retrieval, ITEMS)
    recs = explain.recommend(retrieval, ranker, ITEMS, "u0", HISTORY, k=6, item_vectors=vectors)
    tokens = list(ranker.item_tower.token_names)
    for rec in recs:
        assert list(rec.attention) == ["item_1", "item_2", "item_3"]  # history order, repeats merged
        assert sum(rec.attention.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(w >= 0 for w in rec.attention.values())
        assert 1 <= len(rec.top_history) <= 3
        assert rec.top_history[0] == max(rec.attention.items(), key=lambda kv: kv[1])
        assert [w for _, w in rec.top_history] == sorted((w for _, w in rec.top_history), reverse=True)
        assert list(rec.modality_weights) == tokens
        assert sum(rec.modality_weights.values()) == pytest.approx(1.0, abs=1e-5)
        assert rec.top_modality[1] == max(rec.modality_weights.values())


def test_an_unknown_user_without_history_gets_unexplained_recommendations(models):
    retrieval, ranker = models
    recs = explain.recommend(retrieval, ranker, ITEMS, "stranger", [], k=3, candidates=5)
    assert len(recs) == 3
    assert all(r.attention == {} and r.top_history == () for r in recs)
    assert "because you watched" not in explain.format_recommendations(recs)


def test_format_recommendations_names_the_reasons(models):
    retrieval, ranker = models
    recs = explain.recommend(retrieval, ranker, ITEMS, "u0", HISTORY, k=3, candidates=8)
    titles = {item: f"Title {item[5:]}" for item in ITEMS}
    lines = explain.format_recommendations(recs, titles).splitlines()
    assert len(lines) == 3
    first = recs[0]
    token, token_weight = first.top_modality
    assert lines[0].startswith(f" 1. {titles[first.item_id]} ({first.item_id})  score {first.score:.2f}: ")
    label = explain.TOKEN_LABELS.get(token, token)
    assert f"{label} mattered most ({token_weight:.2f})" in lines[0]
    assert titles[first.top_history[0][0]] in lines[0]
    assert explain.format_recommendations(recs).startswith(f" 1. {first.item_id}  score")  # no titles


def recommendation(attention: dict[str, float]) -> explain.Recommendation:
    top = tuple(sorted(attention.items(), key=lambda kv: -kv[1])[:3])
    weights = {"id": 0.2, "text": 0.5, "image": 0.3, "audio": 0.0}
    return explain.Recommendation("item_9", 1.234, 4, attention, top, weights)


@pytest.mark.parametrize(
    "attention, expected",
    [
        ({"a": 0.5, "b": 0.3, "c": 0.2}, "because you watched A (0.50)"),  # 0.5 >= 1.5 / 3
        ({"a": 0.26, "b": 0.25, "c": 0.25, "d": 0.24}, "no history item stands out (top: A 0.26)"),
        ({"a": 1.0}, "because you watched A (1.00)"),  # the only history item
    ],
)
def test_a_history_item_is_named_only_when_its_attention_stands_out(attention, expected):
    line = explain.format_recommendations([recommendation(attention)], {"a": "A", "item_9": "Nine"})
    assert line == f" 1. Nine (item_9)  score 1.23: {expected}; text mattered most (0.50)"
