"""Offline evaluation: full-ranking metrics, the TFRS tutorial metric, Markdown reports.

numpy only (matplotlib for reports); no model or TensorFlow dependency. The
model scores every catalog item for a batch of test users; `top_k` masks each
user's training items and keeps the best K (ties → lower index), and
`RankingAccumulator` turns batches of those lists into metrics:

    acc = RankingAccumulator(ks=(10, 20), num_items=n, item_popularity=train_counts)
    for scores, train_items, test_items in batches:      # scores [users, items]
        acc.add(top_k(scores, 20, exclude=train_items), test_items)
    metrics = acc.result()  # {"recall@10": ..., "ndcg@10": ..., "coverage@10": ..., "users": ...}
    write_report(metrics, history=history.history, out_dir="reports/run1")

Definitions (RecBole's for accuracy) are in the `ranking`, `beyond_accuracy`
and `accumulator` module docstrings; `factorized_top_k_accuracy` reproduces
the unmasked, per-pair `tfrs.metrics.FactorizedTopK` number of the TFRS
retrieval tutorial.
"""

from tfrs_mm.evaluation.accumulator import DEFAULT_KS, RankingAccumulator
from tfrs_mm.evaluation.beyond_accuracy import intra_list_diversity, long_tail_mask, self_information
from tfrs_mm.evaluation.ranking import PAD, accuracy_at_ks, hit_matrix, recall_on_subset, top_k
from tfrs_mm.evaluation.report import write_report
from tfrs_mm.evaluation.tutorial import factorized_top_k_accuracy

__all__ = [
    "DEFAULT_KS",
    "PAD",
    "RankingAccumulator",
    "accuracy_at_ks",
    "factorized_top_k_accuracy",
    "hit_matrix",
    "intra_list_diversity",
    "long_tail_mask",
    "recall_on_subset",
    "self_information",
    "top_k",
    "write_report",
]
