"""Full-ranking evaluation of a trained two-tower model on a dataset directory's test split.

One query per test user: the user's id and the history carried by their last
test example (earlier train and valid items only, by construction of the
split). Every catalog item is scored; items the user met in train (and valid,
for the test split) are masked, so metrics are over the items a recommender
could still show. The per-modality ablation re-scores with one trained model,
switching the item tower's tokens (`id`, `text`, `image`, `audio`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from tfrs_mm import schema
from tfrs_mm.evaluation.accumulator import RankingAccumulator
from tfrs_mm.evaluation.ranking import recall_on_subset, top_k
from tfrs_mm.schema import features as F
from tfrs_mm.training.data import read_split

ABLATIONS = {"ids only": ("id",), "text only": ("text",), "image only": ("image",), "audio only": ("audio",)}


@dataclasses.dataclass
class EvalSplit:
    """Per-user ground truth of one split, as catalog row indices."""

    users: list[str]
    histories: np.ndarray  # [users, H] item id strings (bytes), the query input
    relevant: list[np.ndarray]  # per user, test item rows
    known: list[np.ndarray]  # per user, rows to mask (train, and valid when testing)


QUERY_HISTORIES = ("example", "known")


def load_eval_split(
    data_dir: str,
    manifest: schema.Manifest,
    catalog_ids: Sequence[str],
    split: str = "test",
    queries: str = "example",
):
    """Ground truth for `split` and the items to mask for each of its users.

    `queries` chooses each user's query history: `example` takes the history
    the Beam job wrote on the user's last `split` example (their items before
    it, for time-ordered data); `known` takes the user's known items (train,
    and valid when testing), the last H of them in file order, for data
    without a time order, where "before the last test example" is an
    arbitrary part of what the user is known to like.
    """
    if queries not in QUERY_HISTORIES:
        raise ValueError(f"queries must be one of {QUERY_HISTORIES}, got {queries!r}")
    row = {item: i for i, item in enumerate(catalog_ids)}
    known, known_order = defaultdict(set), defaultdict(list)
    for earlier in ("train", "valid") if split == "test" else ("train",):
        for user, item in zip(*read_split(data_dir, manifest, earlier)[:2]):
            known[user].add(row[item])
            known_order[user].append(item)
    users, items, histories = read_split(data_dir, manifest, split)
    relevant, last = defaultdict(set), {}
    for index, (user, item) in enumerate(zip(users, items)):
        relevant[user].add(row[item])
        last[user] = index  # examples of a user come in time order: keep the last one's history
    ordered = sorted(relevant)
    if queries == "known":
        query_histories = _padded([known_order[u] for u in ordered], histories.shape[1])
    else:
        query_histories = histories[[last[u] for u in ordered]]
    return EvalSplit(
        users=ordered,
        histories=query_histories,
        relevant=[np.array(sorted(relevant[u]), np.int64) for u in ordered],
        known=[np.array(sorted(known[u] - relevant[u]), np.int64) for u in ordered],
    )


def _padded(item_lists: Sequence[Sequence[str]], width: int) -> np.ndarray:
    """[len(item_lists), width] the last `width` items of each list, left-padded, as bytes."""
    out = np.full([len(item_lists), width], F.PADDING_ID.encode(), dtype=object)
    for i, items in enumerate(item_lists):
        tail = [item.encode() for item in items[max(0, len(items) - width) :]] if width else []
        if tail:
            out[i, width - len(tail) :] = tail
    return out


def read_user_groups(raw_dir: str, users: Sequence[str]) -> list[list[str]] | None:
    """`gender=…` and `age=…` labels per user from RAW/users.csv, or None when there are none."""
    path = os.path.join(raw_dir or "", "users.csv")
    if not raw_dir or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", newline="") as f:
        rows = {r["user_id"]: r for r in csv.DictReader(f)}
    if not rows or not ({"gender", "age"} & set(next(iter(rows.values())))):
        return None
    labels = []
    for user in users:
        r = rows.get(user, {})
        groups = [f"gender={r['gender']}"] if r.get("gender") else []
        age = r.get("age", "")
        if age.replace(".", "", 1).isdigit():
            groups.append(f"age={int(float(age)) // 10 * 10}s")
        labels.append(groups)
    return labels if any(labels) else None


@contextlib.contextmanager
def active_modalities(item_tower, tokens: Sequence[str] | None):
    """Runs the (eager) towers with only `tokens` active; the query tower's history follows suit."""
    previous = item_tower.active_modalities
    item_tower.active_modalities = tuple(tokens) if tokens is not None else None
    try:
        yield
    finally:
        item_tower.active_modalities = previous


def evaluate_model(
    model,
    catalog_ids: Sequence[str],
    truth: EvalSplit,
    train_counts: np.ndarray,
    ks: Sequence[int] = (5, 10, 20, 50, 100),
    tokens: Sequence[str] | None = None,
    user_groups: list[list[str]] | None = None,
    batch_users: int = 256,
) -> dict:
    """Full-ranking metrics (accuracy, coverage, diversity, novelty, exposure, groups, cold items).

    Args:
        model: A trained `RetrievalModel` (its `candidate_vectors` and `query_vectors`, eagerly).
        catalog_ids: [N] the catalog, in the item tower's row order.
        truth: The split's users, query histories, relevant and known items.
        train_counts: [N] train interactions per item (popularity, long tail, cold items).
        ks: Cut-offs.
        tokens: Ablation: item-tower tokens to keep (None keeps all).
        user_groups: Per user, group labels for per-group recall/NDCG.
        batch_users: Users scored per batch ([batch_users, N] scores in memory).
    """
    import tensorflow as tf

    with active_modalities(model.item_tower, tokens):
        item_vectors = model.encode_catalog(catalog_ids)
        cold = train_counts == 0
        accumulator = RankingAccumulator(
            ks,
            len(catalog_ids),
            item_popularity=train_counts,
            item_groups={"cold": cold},
            item_vectors=item_vectors[:, : model.item_tower.embedding_dim],  # diversity: not the prior
        )
        lists = []
        for start in range(0, len(truth.users), batch_users):
            end = start + batch_users
            users, histories = tf.constant(truth.users[start:end]), tf.constant(truth.histories[start:end])
            query = model.query_vectors(users, histories).numpy()
            topk = top_k(query @ item_vectors.T, max(accumulator.ks), exclude=truth.known[start:end])
            accumulator.add(topk, truth.relevant[start:end], user_groups[start:end] if user_groups else None)
            lists.append(topk)
    result = accumulator.result()
    if cold.any() and lists:
        result["cold_items"] = recall_on_subset(np.concatenate(lists), truth.relevant, cold, accumulator.ks)
    return result


def modality_ablation(
    model, catalog_ids, truth: EvalSplit, train_counts, modalities: Sequence[str], ks
) -> dict:
    """Metrics with only ids / only one modality / everything, from the same trained model."""
    settings = {
        name: tokens for name, tokens in ABLATIONS.items() if tokens[0] == "id" or tokens[0] in modalities
    }
    results = {
        name: evaluate_model(model, catalog_ids, truth, train_counts, ks, tokens)
        for name, tokens in settings.items()
    }
    results["all"] = evaluate_model(model, catalog_ids, truth, train_counts, ks)
    return results
