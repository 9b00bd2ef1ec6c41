"""Metrics of scored lists (one or more positives among sampled negatives): AUC, NDCG@K, MRR.

Every metric is computed per list and averaged over lists with at least one
positive and one negative (AUC) or one positive (NDCG, MRR). Ties are broken
pessimistically for NDCG and MRR (a positive tied with a negative ranks after
it) and count one half for AUC, so a constant scorer gets no credit from ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pessimistic_ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[n, L] 1-based rank of each entry; a positive tied with negatives ranks after them."""
    order = np.lexsort((labels, -scores), axis=-1)  # by score desc, then negatives (0) first
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def list_metrics(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """Mean per-list `auc`, `ndcg@K` and `mrr` of [n, L] scores against [n, L] 0/1 labels."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels) > 0
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(
            f"scores and labels must both be [lists, length], got {scores.shape} and {labels.shape}"
        )
    has_positive = labels.any(axis=1)
    ranks = _pessimistic_ranks(scores, labels.astype(np.int64))
    out: dict[str, float] = {"lists": int(has_positive.sum())}
    pos = np.where(labels, ranks, np.inf)
    out["mrr"] = float(np.mean(1.0 / pos.min(axis=1)[has_positive])) if has_positive.any() else 0.0
    for k in ks:
        gains = np.where(labels & (ranks <= k), 1.0 / np.log2(ranks + 1.0), 0.0).sum(axis=1)
        ideal = np.array([np.sum(1.0 / np.log2(np.arange(2, min(n, k) + 2))) for n in labels.sum(axis=1)])
        out[f"ndcg@{k}"] = (
            float(np.mean(gains[has_positive] / ideal[has_positive])) if has_positive.any() else 0.0
        )
    out["auc"] = _mean_auc(scores, labels)
    return out


def _mean_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over lists of P(positive scores above negative), ties counting 1/2."""
    values = []
    for s, y in zip(scores, labels):
        positives, negatives = s[y], s[~y]
        if len(positives) and len(negatives):
            greater = (positives[:, None] > negatives[None, :]).mean()
            ties = (positives[:, None] == negatives[None, :]).mean()
            values.append(greater + 0.5 * ties)
    return float(np.mean(values)) if values else 0.0
