"""Beyond-accuracy building blocks: long tail, self-information, intra-list diversity.

- Long tail (Pareto): sort items by train interaction count, descending (ties
  by lower index); the *head* is the shortest prefix holding ≥ 80% of all
  train interactions; every other item (including never-seen items) is tail.
- Self-information of item i: I(i) = −log2(pop_i), pop_i = max(c_i, 1) / Σ_j c_j,
  with c_i the train interaction count. Smoothing: an unseen item counts as
  seen once, i.e. it is exactly as novel as the rarest observed item (no
  infinite values, and observed items keep their exact share).
- Intra-list diversity of one list L: ILD(L) = mean over pairs {i, j} ⊂ L,
  i ≠ j, of (1 − cos(v_i, v_j)); a zero vector has cosine 0 with everything.
"""

from __future__ import annotations

import numpy as np

from tfrs_mm.evaluation.ranking import PAD

HEAD_SHARE = 0.8  # Pareto 80/20: the head holds 80% of the interactions


def long_tail_mask(popularity: np.ndarray, head_share: float = HEAD_SHARE) -> np.ndarray:
    """Marks the long-tail items.

    Args:
      popularity: [items] train interaction counts.
      head_share: share of interactions the head must hold, in (0, 1].

    Returns:
      [items] bool, True for tail items. All items are tail when there are no
      interactions.
    """
    counts = np.asarray(popularity, dtype=np.float64)
    total = counts.sum()
    tail = np.ones(counts.shape, dtype=bool)
    if total <= 0:
        return tail
    order = np.argsort(-counts, kind="stable")
    cum = np.cumsum(counts[order]) / total
    # Tolerance so 0.8 reached through float sums (0.1 + 0.7) still closes the head.
    head_size = int(np.searchsorted(cum, head_share - 1e-12) + 1)
    tail[order[:head_size]] = False
    return tail


def self_information(popularity: np.ndarray) -> np.ndarray:
    """−log2 of each item's smoothed train interaction share.

    Args:
      popularity: [items] train interaction counts.

    Returns:
      [items] float64 bits; pop_i = max(c_i, 1) / Σ c (module docstring).
    """
    counts = np.asarray(popularity, dtype=np.float64)
    total = max(counts.sum(), 1.0)
    return -np.log2(np.maximum(counts, 1.0) / total)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalized rows; zero rows stay zero. [items, dim] → [items, dim]."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def intra_list_diversity(topk: np.ndarray, unit_vectors: np.ndarray) -> np.ndarray:
    """ILD of each top-K list, ignoring PAD entries.

    Args:
      topk: [users, K] item indices.
      unit_vectors: [items, dim] L2-normalized item vectors (`unit_rows`).

    Returns:
      [users] float64; NaN for lists with fewer than 2 valid items.
    """
    topk = np.asarray(topk)
    out = np.full(topk.shape[0], np.nan)
    for u, row in enumerate(topk):
        row = row[row != PAD]
        n = row.size
        if n < 2:
            continue
        v = unit_vectors[row]
        sim = v @ v.T
        pair_sim = (sim.sum() - np.trace(sim)) / (n * (n - 1))
        out[u] = 1.0 - pair_sim
    return out
