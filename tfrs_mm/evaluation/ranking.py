"""Full-ranking top-K selection and per-user accuracy metrics (RecBole definitions).

Every catalog item is scored for every test user; `top_k` masks the user's
training items and keeps the best K, and `accuracy_at_ks` turns those lists
into per-user metrics. Notation for one user: `R` = relevant (test) items,
`rel_i` = 1 when the item at rank i (1-based) is in `R`, `hits@K` = Σ_{i≤K} rel_i.

- Recall@K    = hits@K / |R|
- Precision@K = hits@K / K  (K, not the list length: RecBole's choice)
- F1@K        = 2·P@K·R@K / (P@K + R@K) per user (0 when both are 0), then
  averaged over users. RecBole has no F1; the per-user mean is the usual
  choice in top-K papers and keeps F1 a per-user metric like the others.
- Hit@K       = 1 if hits@K > 0 else 0 (HitRate)
- NDCG@K      = DCG@K / IDCG@K with DCG@K = Σ_{i≤K} rel_i / log2(i + 1) and
  IDCG@K = Σ_{i≤min(|R|,K)} 1 / log2(i + 1)   (binary relevance)
- MAP@K       = (1 / min(|R|, K)) · Σ_{i≤K} P@i · rel_i   (RecBole's AP@K)

Users with no relevant item are skipped by every metric (their recall is
undefined); callers report how many users were counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ACCURACY_METRICS = ("recall", "precision", "f1", "hit", "ndcg", "map")
PAD = -1  # index used in top-K lists where fewer than K unmasked items exist

Exclusion = Sequence[np.ndarray] | tuple[np.ndarray, np.ndarray]


def _exclusion_rows(exclude: Exclusion, num_users: int) -> list[np.ndarray]:
    """Normalizes a list of per-user index arrays or a CSR pair `(indptr, indices)`."""
    if isinstance(exclude, tuple) and len(exclude) == 2 and np.ndim(exclude[0]) == 1:
        indptr, indices = (np.asarray(a) for a in exclude)
        if len(indptr) == num_users + 1:
            return [indices[indptr[u] : indptr[u + 1]] for u in range(num_users)]
    if len(exclude) != num_users:
        raise ValueError(f"exclude has {len(exclude)} rows for {num_users} users")
    return [np.asarray(row, dtype=np.int64) for row in exclude]


def top_k(scores: np.ndarray, k: int, exclude: Exclusion | None = None) -> np.ndarray:
    """The K best items per user, excluding each user's training items.

    Ranking is by descending score; ties are broken by the lower item index,
    so the result is deterministic. NaN scores rank like -inf. Excluded items
    are never returned: when a user has fewer than K eligible items, the list
    is padded with `PAD` (-1), which every metric here ignores.

    Args:
      scores: [users, items] scores over the whole catalog.
      k: list length K; clipped to the number of items.
      exclude: items to mask per user (e.g. training interactions), either a
        list of `users` int arrays or a CSR pair `(indptr [users + 1],
        indices [nnz])`; None masks nothing.

    Returns:
      [users, min(k, items)] int64 item indices, best first.
    """
    scores = np.asarray(scores)
    # A float copy (masking must not touch the caller's array); float32 stays float32 to halve memory.
    scores = np.array(scores, dtype=np.promote_types(scores.dtype, np.float32))
    num_users, num_items = scores.shape
    k = min(int(k), num_items)
    if k <= 0:
        raise ValueError("k must be positive")
    scores[np.isnan(scores)] = -np.inf
    masked = np.zeros_like(scores, dtype=bool)
    if exclude is not None:
        for u, row in enumerate(_exclusion_rows(exclude, num_users)):
            masked[u, row] = True
    scores[masked] = -np.inf
    # The k-th best score per row; every item at or above it is a candidate, so
    # ties straddling the boundary are resolved by index below, not by argpartition.
    neg = -scores
    kth = np.partition(neg, k - 1, axis=1)[:, k - 1]
    out = np.empty((num_users, k), dtype=np.int64)
    for u in range(num_users):
        cand = np.flatnonzero(neg[u] <= kth[u])  # ascending index
        cand = cand[np.argsort(neg[u, cand], kind="stable")][:k]
        out[u] = cand
    out[np.take_along_axis(masked, out, axis=1)] = PAD
    return out


def hit_matrix(topk: np.ndarray, relevant: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Which recommended items are relevant.

    Args:
      topk: [users, K] item indices (PAD entries never hit).
      relevant: `users` arrays of relevant item indices (duplicates ignored).

    Returns:
      `(hits [users, K] bool, num_relevant [users] int64)`.
    """
    topk = np.asarray(topk)
    if len(relevant) != topk.shape[0]:
        raise ValueError(f"relevant has {len(relevant)} rows for {topk.shape[0]} users")
    hits = np.zeros(topk.shape, dtype=bool)
    num_relevant = np.zeros(topk.shape[0], dtype=np.int64)
    for u, rel in enumerate(relevant):
        rel = np.unique(np.asarray(rel, dtype=np.int64))
        num_relevant[u] = rel.size
        hits[u] = np.isin(topk[u], rel) & (topk[u] != PAD)
    return hits, num_relevant


def accuracy_at_ks(hits: np.ndarray, num_relevant: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user accuracy metrics at each K (module docstring has the formulas).

    Args:
      hits: [users, K_max] bool, relevance of each ranked item.
      num_relevant: [users] |R| per user; must be ≥ 1 (filter users first).
      ks: cut-offs, each ≤ K_max.

    Returns:
      `{"recall@k": [users] float64, ...}` for every metric in ACCURACY_METRICS.
    """
    hits = np.asarray(hits, dtype=np.float64)
    n_rel = np.asarray(num_relevant, dtype=np.float64)[:, None]
    k_max = hits.shape[1]
    if any(k > k_max or k < 1 for k in ks):
        raise ValueError(f"every k must be in [1, {k_max}], got {list(ks)}")
    ranks = np.arange(1, k_max + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    cum_hits = np.cumsum(hits, axis=1)
    dcg = np.cumsum(hits * discount, axis=1)
    ideal_cum = np.cumsum(discount)
    ap_sum = np.cumsum(cum_hits / ranks * hits, axis=1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = cum_hits[:, k - 1]
        cut = np.minimum(n_rel[:, 0], k).astype(np.int64)
        recall, precision = h / n_rel[:, 0], h / k
        denom = precision + recall
        out[f"recall@{k}"] = recall
        out[f"precision@{k}"] = precision
        out[f"f1@{k}"] = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        out[f"hit@{k}"] = (h > 0).astype(np.float64)
        out[f"ndcg@{k}"] = dcg[:, k - 1] / ideal_cum[cut - 1]
        out[f"map@{k}"] = ap_sum[:, k - 1] / cut
    return out


def recall_on_subset(
    topk: np.ndarray,
    relevant: Sequence[np.ndarray],
    subset_mask: np.ndarray,
    ks: Sequence[int] = (5, 10, 20, 50, 100),
) -> dict[str, float | int | None]:
    """Recall@K restricted to relevant items inside an item subset (e.g. cold items).

    For each user, R_S = R ∩ S; Recall_S@K = |top-K ∩ R_S| / |R_S|, averaged
    over the users with |R_S| ≥ 1. Recommending non-subset items is not
    penalised beyond taking list slots.

    Args:
      topk: [users, K_max] item indices from `top_k`.
      relevant: `users` arrays of relevant item indices.
      subset_mask: [items] bool, True for items in the subset.
      ks: cut-offs (those > K_max are dropped).

    Returns:
      `{"recall@k": mean or None, "users": count}`.
    """
    subset_mask = np.asarray(subset_mask, dtype=bool)
    sub_rel = [np.asarray(r, dtype=np.int64)[subset_mask[np.asarray(r, dtype=np.int64)]] for r in relevant]
    hits, n_rel = hit_matrix(topk, sub_rel)
    keep = n_rel > 0
    ks = [k for k in ks if k <= hits.shape[1]]
    result: dict[str, float | int | None] = {"users": int(keep.sum())}
    for k in ks:
        per_user = hits[keep, :k].sum(axis=1) / n_rel[keep]
        result[f"recall@{k}"] = float(per_user.mean()) if keep.any() else None
    return result
