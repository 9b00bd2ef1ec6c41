"""`RankingAccumulator`: feeds batches of users' top-K lists, reports every metric at the end.

Each user contributes once; all metrics are means over the users with ≥ 1
relevant item ("users" in the result), so the result does not depend on how
users are split into batches. Memory is O(len(ks) · items) plus the caller's
[users, K] batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from tfrs_mm.evaluation.beyond_accuracy import (
    intra_list_diversity,
    long_tail_mask,
    self_information,
    unit_rows,
)
from tfrs_mm.evaluation.ranking import ACCURACY_METRICS, PAD, accuracy_at_ks, hit_matrix

DEFAULT_KS = (5, 10, 20, 50, 100)
GROUP_METRICS = ("recall", "ndcg")


def _as_mask(items: np.ndarray, num_items: int) -> np.ndarray:
    """A bool mask from either a [items] bool mask or an array of item indices."""
    items = np.asarray(items)
    if items.dtype == bool:
        if items.shape != (num_items,):
            raise ValueError(f"item mask has shape {items.shape}, expected ({num_items},)")
        return items
    mask = np.zeros(num_items, dtype=bool)
    mask[items.astype(np.int64)] = True
    return mask


def _group_labels(label: str | Sequence[str]) -> list[str]:
    return [label] if isinstance(label, str) else list(label)


class RankingAccumulator:
    """Accumulates full-ranking metrics over batches of users.

    Result keys, for each K in `ks`: `recall@K`, `precision@K`, `f1@K`,
    `hit@K`, `ndcg@K`, `map@K` (formulas in `tfrs_mm.evaluation.ranking`),
    `coverage@K` = |∪_u top-K(u)| / items (catalog coverage), `novelty@K`
    (mean self-information of recommended items per user, then over users;
    needs `item_popularity`) and `diversity@K` (mean intra-list diversity,
    needs `item_vectors`; users with < 2 valid items are skipped). Nested:
    `fairness` (needs `item_popularity` or `item_groups`) gives, per item
    group (the Pareto `long_tail` plus each of `item_groups`), its share of
    the catalog, its share of top-K exposure (slots filled by its items /
    all filled slots) and the ratio exposure / catalog share (1 = parity);
    `groups` gives `users`, `recall@K`, `ndcg@K` per user group label.

    Example:
        acc = RankingAccumulator(ks=(10, 20), num_items=n, item_popularity=counts)
        for scores, train, test in batches:
            acc.add(top_k(scores, 20, exclude=train), test)
        metrics = acc.result()   # {"recall@10": ..., "users": ..., ...}

    Args:
      ks: cut-offs; those above `num_items` are dropped.
      num_items: catalog size N.
      item_popularity: [items] train interaction counts (novelty, long tail).
      item_groups: name → [items] bool mask or item index array (exposure).
      item_vectors: [items, dim] item vectors (diversity), e.g. content embeddings.
    """

    def __init__(
        self,
        ks: Sequence[int] = DEFAULT_KS,
        num_items: int = 0,
        item_popularity: np.ndarray | None = None,
        item_groups: dict[str, np.ndarray] | None = None,
        item_vectors: np.ndarray | None = None,
    ) -> None:
        if num_items <= 0:
            raise ValueError("num_items must be positive")
        self.ks = tuple(sorted({int(k) for k in ks if 0 < int(k) <= num_items}))
        if not self.ks:
            raise ValueError(f"no k in {list(ks)} is within [1, {num_items}]")
        self.num_items = num_items
        self.item_popularity = item_popularity
        self.item_groups = item_groups
        self.item_vectors = item_vectors
        self._self_info = None if item_popularity is None else self_information(item_popularity)
        self._unit_vectors = None if item_vectors is None else unit_rows(item_vectors)
        self._item_masks: dict[str, np.ndarray] = {}
        if item_popularity is not None:
            self._item_masks["long_tail"] = long_tail_mask(item_popularity)
        for name, items in (item_groups or {}).items():
            self._item_masks[name] = _as_mask(items, num_items)
        self.reset()

    def reset(self) -> None:
        """Forgets every user added so far."""
        self._users = 0
        self._sums: dict[str, float] = defaultdict(float)
        self._diversity_users = dict.fromkeys(self.ks, 0)
        self._exposure = np.zeros((len(self.ks), self.num_items), dtype=np.int64)
        self._group_users: dict[str, int] = defaultdict(int)
        self._group_sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def add(
        self,
        topk: np.ndarray,
        relevant: Sequence[np.ndarray],
        user_groups: Sequence[str | Sequence[str]] | None = None,
    ) -> None:
        """Adds one batch of users.

        Args:
          topk: [users, K] item indices, best first (`top_k` output), K ≥ max(ks).
          relevant: `users` arrays of relevant (test) item indices.
          user_groups: per user, a label (e.g. "gender=F") or several labels
            (e.g. ["gender=F", "age=25-34"]).
        """
        topk = np.asarray(topk, dtype=np.int64)
        if topk.ndim != 2 or topk.shape[1] < self.ks[-1]:
            raise ValueError(f"topk must be [users, >= {self.ks[-1]}], got {topk.shape}")
        hits, n_rel = hit_matrix(topk, relevant)
        keep = n_rel > 0
        topk, hits, n_rel = topk[keep], hits[keep], n_rel[keep]
        if user_groups is not None:
            if len(user_groups) != keep.size:
                raise ValueError(f"user_groups has {len(user_groups)} rows for {keep.size} users")
            user_groups = [g for g, k in zip(user_groups, keep) if k]
        self._users += int(keep.sum())
        per_user = accuracy_at_ks(hits, n_rel, self.ks)
        for key, values in per_user.items():
            self._sums[key] += float(values.sum())
        self._add_beyond_accuracy(topk)
        if user_groups is not None:
            self._add_groups(per_user, user_groups)

    def _add_beyond_accuracy(self, topk: np.ndarray) -> None:
        for i, k in enumerate(self.ks):
            lists = topk[:, :k]
            valid = lists[lists != PAD]
            self._exposure[i] += np.bincount(valid, minlength=self.num_items)
            if self._self_info is not None:
                info = np.where(lists != PAD, self._self_info[np.maximum(lists, 0)], 0.0)
                count = (lists != PAD).sum(axis=1)
                self._sums[f"novelty@{k}"] += float((info.sum(axis=1)[count > 0] / count[count > 0]).sum())
                self._sums[f"_novelty_users@{k}"] += float((count > 0).sum())
            if self._unit_vectors is not None:
                ild = intra_list_diversity(lists, self._unit_vectors)
                self._sums[f"diversity@{k}"] += float(np.nansum(ild))
                self._diversity_users[k] += int(np.isfinite(ild).sum())

    def _add_groups(self, per_user: dict[str, np.ndarray], user_groups: Sequence) -> None:
        for u, label in enumerate(user_groups):
            for group in _group_labels(label):
                self._group_users[group] += 1
                sums = self._group_sums[group]
                for k in self.ks:
                    for metric in GROUP_METRICS:
                        sums[f"{metric}@{k}"] += float(per_user[f"{metric}@{k}"][u])

    def result(self) -> dict:
        """All metrics as a JSON-ready dict (floats, ints, None when undefined)."""
        out: dict = {"users": self._users}
        for k in self.ks:
            for metric in ACCURACY_METRICS:
                key = f"{metric}@{k}"
                out[key] = self._sums[key] / self._users if self._users else None
        for i, k in enumerate(self.ks):
            out[f"coverage@{k}"] = float((self._exposure[i] > 0).mean())
            if self._self_info is not None:
                n = self._sums[f"_novelty_users@{k}"]
                out[f"novelty@{k}"] = self._sums[f"novelty@{k}"] / n if n else None
            if self._unit_vectors is not None:
                n = self._diversity_users[k]
                out[f"diversity@{k}"] = self._sums[f"diversity@{k}"] / n if n else None
        if self._item_masks:
            out["fairness"] = {name: self._exposure_report(mask) for name, mask in self._item_masks.items()}
        if self._group_users:
            out["groups"] = {
                group: {"users": n, **{key: v / n for key, v in self._group_sums[group].items()}}
                for group, n in sorted(self._group_users.items())
            }
        return out

    def _exposure_report(self, mask: np.ndarray) -> dict:
        catalog_share = float(mask.mean())
        report: dict = {"items": int(mask.sum()), "catalog_share": catalog_share}
        for i, k in enumerate(self.ks):
            slots = int(self._exposure[i].sum())
            share = float(self._exposure[i][mask].sum() / slots) if slots else None
            report[f"exposure_share@{k}"] = share
            ratio = share / catalog_share if share is not None and catalog_share > 0 else None
            report[f"exposure_ratio@{k}"] = ratio
        return report
