"""Exact top-k by dot product in numpy: the ground truth the tuner measures recall against."""

from __future__ import annotations

import numpy as np

# Bounds the [queries, items] score block held in memory at once (2^25 floats = 128 MiB).
_SCORE_BLOCK = 1 << 25


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Rows of the `k` highest dot products per query, best first.

    Args:
        queries: [Q, d] float query vectors.
        vectors: [n, d] float item vectors.
        k: Neighbours per query, at most n.

    Returns:
        [Q, k] int64 item rows.
    """
    queries = np.asarray(queries, np.float32)
    vectors = np.asarray(vectors, np.float32)
    if not 1 <= k <= len(vectors):
        raise ValueError(f"k must be in [1, {len(vectors)}], got {k}")
    step = max(1, _SCORE_BLOCK // max(1, len(vectors)))
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), step):
        scores = queries[start : start + step] @ vectors.T
        if k < scores.shape[1]:
            best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            best = np.tile(np.arange(k), (len(scores), 1))
        # lexsort's last key is primary: score descending, then row ascending.
        order = np.lexsort((best, -np.take_along_axis(scores, best, axis=1)), axis=1)
        out[start : start + step] = np.take_along_axis(best, order, axis=1)
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k: the share of exact neighbours an index returns.

    Args:
        found: [Q, k'] item rows an index returned (padding rows < 0 are ignored).
        truth: [Q, k] exact item rows.
    """
    found, truth = np.asarray(found), np.asarray(truth)
    if found.shape[0] != truth.shape[0]:
        raise ValueError(f"{found.shape[0]} result rows for {truth.shape[0]} queries")
    if truth.size == 0:
        return float("nan")
    hits = [len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth)]
    return float(np.sum(hits) / truth.size)
