"""Two-stage evaluation: retrieval's top-K per test user, then the ranker's reordering of it.

Both orders are scored on the same candidates in the same run with the same
full-ranking protocol as retrieval (train and valid items masked), so the
difference is the ranker's doing alone. The ranker can only reorder: items
outside retrieval's top-K stay unrecommended, so Recall@K for K = the list
length is the same in both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfrs_mm.evaluation.accumulator import RankingAccumulator
from tfrs_mm.evaluation.ranking import top_k
from tfrs_mm.evaluation.retrieval_eval import EvalSplit

REPORTED = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "hit@10", "map@10")


def retrieve_and_rerank(
    retrieval_model,
    ranker,
    catalog_ids: Sequence[str],
    truth: EvalSplit,
    k: int = 100,
    batch_users: int = 128,
):
    """Yields (start, retrieval top-k rows [b, k], reranked rows [b, k]) per batch of test users."""
    import tensorflow as tf

    from tfrs_mm.models.ranker import SCORES

    catalog = np.asarray(catalog_ids, dtype=object)
    item_vectors = retrieval_model.encode_catalog(catalog.tolist())
    k = min(k, len(catalog))
    for start in range(0, len(truth.users), batch_users):
        end = start + batch_users
        users, histories = tf.constant(truth.users[start:end]), tf.constant(truth.histories[start:end])
        query = retrieval_model.query_vectors(users, histories).numpy()
        rows = top_k(query @ item_vectors.T, k, exclude=truth.known[start:end])
        valid = rows >= 0
        candidates = np.where(valid, catalog[np.maximum(rows, 0)], "")
        scores = ranker(users, histories, tf.constant(candidates.astype(str)))[SCORES].numpy()
        scores = np.where(valid, scores, -np.inf)  # padding (catalog smaller than k) stays last
        order = np.argsort(-scores, axis=1, kind="stable")
        yield start, rows, np.take_along_axis(rows, order, axis=1)


def evaluate_two_stage(
    retrieval_model,
    ranker,
    catalog_ids: Sequence[str],
    truth: EvalSplit,
    k: int = 100,
    ks: Sequence[int] = (10, 20),
) -> dict:
    """Metrics of retrieval order and of retrieval + ranking order on the same top-`k` lists."""
    accumulators = {
        name: RankingAccumulator(ks, len(catalog_ids)) for name in ("retrieval", "retrieval+ranking")
    }
    for start, retrieved, reranked in retrieve_and_rerank(retrieval_model, ranker, catalog_ids, truth, k):
        relevant = truth.relevant[start : start + len(retrieved)]
        accumulators["retrieval"].add(retrieved, relevant)
        accumulators["retrieval+ranking"].add(reranked, relevant)
    results = {name: acc.result() for name, acc in accumulators.items()}
    out = {name: {key: value[key] for key in REPORTED if key in value} for name, value in results.items()}
    before, after = out["retrieval"].get("ndcg@10", 0.0), out["retrieval+ranking"].get("ndcg@10", 0.0)
    out["candidates"] = k
    out["users"] = results["retrieval"].get("users")
    out["ndcg@10_change"] = after - before
    out["ndcg@10_relative_change"] = (after - before) / before if before else None
    return out
