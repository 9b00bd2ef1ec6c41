"""The TFRS basic-retrieval tutorial metric: FactorizedTopK top-K categorical accuracy.

This is the number `tfrs.metrics.FactorizedTopK` reports (as
`factorized_top_k/top_{k}_categorical_accuracy`): over (query, positive item)
test pairs, how often the positive is among the top K of ALL candidates, with
no masking of training items. It is a per-pair, not per-user, metric and is
not comparable with the masked full-ranking Recall@K of `RankingAccumulator`.

Tie handling, read from tensorflow_recommenders 0.7 (`metrics/factorized_top_k.py`,
score-based branch, i.e. no `true_candidate_ids`): the candidate layer
(`BruteForce` / `Streaming`) returns the top max(ks) scores via `tf.math.top_k`;
the metric prepends the positive's score s⁺ and calls
`tf.math.in_top_k(targets=0, predictions=[s⁺, top scores], k)`, which counts a
target as in the top k when fewer than k predictions are strictly greater
(ties at the boundary count as inside). Since the top max(ks) scores contain
every score above s⁺ up to that many, this equals

    hit@k(p) = 1  iff  #{j ∈ catalog : s_pj > s⁺_p} < k,

i.e. ties are resolved in the positive's favour (the positive itself, also in
the index, never counts against it). Scores should be finite; a non-finite s⁺
never hits (as in `in_top_k`). TFRS computes s⁺ as a row-wise dot product and the index scores by
matmul, which can differ in the last float bit; here s⁺ is read from the same
score matrix, the exact-arithmetic version of the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TUTORIAL_KS = (1, 5, 10, 50, 100)  # FactorizedTopK's default ks
METRIC_NAME = "factorized_top_k/top_{k}_categorical_accuracy"


def factorized_top_k_accuracy(
    scores_for_pairs: np.ndarray,
    positive_index: np.ndarray,
    ks: Sequence[int] = TUTORIAL_KS,
    sample_weight: np.ndarray | None = None,
) -> dict[str, float]:
    """Top-K categorical accuracy with `tfrs.metrics.FactorizedTopK` semantics.

    accuracy@k = Σ_p w_p · [#{j : s_pj > s_p,pos(p)} < k] / Σ_p w_p.

    Args:
      scores_for_pairs: [pairs, items] scores of every candidate for the query
        of each test pair (a user with several test items appears once per item).
      positive_index: [pairs] index of each pair's positive item.
      ks: cut-offs; a k above the catalog size always hits.
      sample_weight: optional [pairs] weights, like the metric's `sample_weight`.

    Returns:
      `{"factorized_top_k/top_{k}_categorical_accuracy": float}` per k, the keys
      Keras logs for the tutorial model.
    """
    scores = np.asarray(scores_for_pairs, dtype=np.float64)
    positive_index = np.asarray(positive_index, dtype=np.int64)
    if scores.ndim != 2 or positive_index.shape != (scores.shape[0],):
        raise ValueError(
            f"need scores [pairs, items] and positive_index [pairs], got "
            f"{scores.shape} and {positive_index.shape}"
        )
    positive = scores[np.arange(scores.shape[0]), positive_index]
    # Scores are assumed finite (tf.math.in_top_k reports a miss for non-finite rows); a non-finite
    # positive is forced to miss below, and NaN candidates compare False, so they never outrank it.
    better = (scores > positive[:, None]).sum(axis=1)
    finite = np.isfinite(positive)
    weights = np.ones(scores.shape[0]) if sample_weight is None else np.asarray(sample_weight, np.float64)
    total = weights.sum()
    out = {}
    for k in ks:
        hit = (better < k) & finite
        out[METRIC_NAME.format(k=k)] = float((weights * hit).sum() / total) if total > 0 else 0.0
    return out
