"""Fits the ranker's item-to-item evidence (`models.item_item`) before the ranker trains.

EASE weights come from the train split alone. Their ridge λ and the weight γ
of Σ_h B[h, c] in the score are then fitted on the ranker's own held-out
training lists (valid positives inside retrieval's top-K, `ranking_lists`),
with the ranker's other corrections at zero:

    score(c) = retrieval logit(c) + γ · Σ_h B[h, c].

For a fixed λ the lists' softmax log-likelihood is concave in γ, so γ is found
by bisection on its derivative, over γ ≥ 0 (the evidence is used as fitted,
never inverted); λ is the grid value with the best likelihood. Training then
starts from that blend and refines γ (unconstrained) with everything else, so
the ranker's epoch 0 (the first candidate of the epoch selection) is retrieval
+ evidence. The retrieval logit is the one the ranker computes: the retrieval
model's temperature, its prior included.

Evidence needs held-out lists: on the train split, B would be scoring the very
interactions it was fitted on.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from tfrs_mm.models import item_item
from tfrs_mm.schema import features as F
from tfrs_mm.training import ranking_data
from tfrs_mm.training.data import read_split

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FittedEvidence:
    """What `fit_evidence` chose: the ranker's `ItemItemEvidence` weights and its initial scalars."""

    item_ids: list[str]  # the rows of `weights`
    weights: np.ndarray  # [M, M] EASE weights B
    weight: float  # γ
    scale: float  # 1 / the spread of B over the lists' (history item, candidate) pairs
    record: dict  # for metrics.json


def fit_evidence(retrieval, data, data_dir: str, manifest, lists: dict, config) -> FittedEvidence:
    """EASE on the train split, λ and γ on fixed `lists` (`ranking_data.fixed_lists` arrays)."""
    if not config.ranker_item_item_l2s or config.ranker_item_item_max_items < 1:
        raise ValueError(
            "model.ranker_item_item needs at least one ridge in ranker_item_item_l2s and max_items >= 1"
        )
    catalog = [str(i) for i in data.table.item_ids]
    ids = item_item.frequent_items(catalog, data.frequencies, config.ranker_item_item_max_items)
    row = {item: i for i, item in enumerate(ids)}
    gram = _train_gram(data_dir, manifest, row)
    base = retrieval_logits(retrieval, lists)
    history_rows = _rows(lists[F.HISTORY], row)  # [E, H], -1: no evidence
    candidate_rows = _rows(lists[ranking_data.CANDIDATE_IDS], row)  # [E, C]
    labels = lists[ranking_data.LABELS].astype(np.float64)
    labels /= np.maximum(labels.sum(-1, keepdims=True), 1e-12)
    trials = []  # (log-likelihood, λ, γ)
    for l2 in config.ranker_item_item_l2s:
        evidence = _pair_weights(item_item.fit_ease(gram, l2), history_rows, candidate_rows).sum(-1)
        gamma = best_weight(base, evidence, labels)
        trials.append((log_likelihood(base + gamma * evidence, labels), l2, gamma))
        logger.info(
            "item-item evidence: l2 %g, weight %.4g, list log-likelihood %.5f", l2, gamma, trials[-1][0]
        )
    _, l2, gamma = max(trials)
    weights = item_item.fit_ease(gram, l2)
    present = (history_rows >= 0)[:, None, :] & (candidate_rows >= 0)[:, :, None]
    spread = (
        float(_pair_weights(weights, history_rows, candidate_rows)[present].std()) if present.any() else 0.0
    )
    record = {
        "items": len(ids),
        "l2": l2,
        "weight": gamma,
        "list_log_likelihood": {str(t[1]): round(t[0], 5) for t in trials},
        "retrieval_only_log_likelihood": round(log_likelihood(base, labels), 5),
    }
    return FittedEvidence(
        item_ids=ids,
        weights=weights,
        weight=gamma,
        scale=1.0 / spread if spread > 0 else 1.0,
        record=record,
    )


def retrieval_logits(retrieval, lists: dict, batch: int = 1024) -> np.ndarray:
    """[E, C] the retrieval model's logits (its prior included) for every list's candidates."""
    import tensorflow as tf

    parts = []
    for i in range(0, len(lists[F.USER_ID]), batch):
        query = retrieval.query_vectors(
            tf.constant(lists[F.USER_ID][i : i + batch]), tf.constant(lists[F.HISTORY][i : i + batch])
        )
        candidates = retrieval.candidate_vectors(
            tf.constant(lists[ranking_data.CANDIDATE_IDS][i : i + batch])
        )
        parts.append(tf.einsum("bd,bcd->bc", query, candidates).numpy() / retrieval.config.temperature)
    return np.concatenate(parts).astype(np.float64)


def log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean listwise softmax log-likelihood of `labels` (rows sum to 1) under `logits` [E, C]."""
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float((labels * log_probs).sum(-1).mean())


def best_weight(base: np.ndarray, evidence: np.ndarray, labels: np.ndarray, iterations: int = 60) -> float:
    """argmax over γ ≥ 0 of the log-likelihood of base + γ · evidence (concave in γ: bisection)."""

    def slope(gamma):  # d log-likelihood / dγ = E_labels[evidence] − E_softmax[evidence]
        logits = base + gamma * evidence
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        return float(((labels - probs) * evidence).sum(-1).mean())

    if slope(0.0) <= 0:
        return 0.0
    low, high = 0.0, 1.0
    while slope(high) > 0 and high < 1e6:
        low, high = high, high * 2
    for _ in range(iterations):
        middle = (low + high) / 2
        low, high = (middle, high) if slope(middle) > 0 else (low, middle)
    return (low + high) / 2


def _train_gram(data_dir: str, manifest, row: dict) -> np.ndarray:
    """XᵀX over the items in `row` (item id → row), from the train split."""
    users, items, _ = read_split(data_dir, manifest, "train")
    kept = [(user, row[item]) for user, item in zip(users, items) if item in row]
    return item_item.cooccurrence([u for u, _ in kept], [i for _, i in kept], len(row))


def _rows(item_ids: np.ndarray, row: dict) -> np.ndarray:
    flat = [row.get(i, -1) for i in np.asarray(item_ids).astype(str).reshape(-1)]
    return np.asarray(flat, np.int64).reshape(np.shape(item_ids))


def _pair_weights(weights: np.ndarray, history_rows: np.ndarray, candidate_rows: np.ndarray) -> np.ndarray:
    """[E, C, H] B[h, c], 0 where either item has no row."""
    padded = np.zeros([len(weights) + 1, len(weights) + 1], np.float32)
    padded[1:, 1:] = weights
    return padded[history_rows[:, None, :] + 1, candidate_rows[:, :, None] + 1]
