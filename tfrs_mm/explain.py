"""Recommendations with explanations: retrieval's candidates, reranked by the ranker, and why.

For one user, the retrieval model scores the whole catalog and keeps the best
`candidates` items the user has not met; the cross-attention ranker reorders
them and says, for each, which history items its attention went to and how
much each modality token weighed:

    recs = recommend(retrieval_model, ranker, catalog_ids, "u00007", history, k=10)
    print(format_recommendations(recs, item_titles(data_dir)))
    #  1. Velvet Harbor (i00123)  score 2.31: because you watched Night Tide (0.41); text mattered most (0.52)

The notebook `03_train_ranking.ipynb` and `tfrs-mm demo` both show these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from tfrs_mm.schema.features import PADDING_ID

TOKEN_LABELS = {"id": "who else chose it (id)"}  # how a token reads in a sentence; others as named
# A history item is named as the reason only when its attention is clearly above an even split:
# a near-uniform attention picks its "top" item by noise, and saying "because you watched" it would mislead.
STANDOUT = 1.5  # times the uniform share, 1 / distinct history items


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One reranked recommendation and the ranker's reasons for it.

    Attributes:
        item_id: The recommended item.
        score: The ranker's logit; the list is sorted by it, highest first.
        retrieval_rank: 1-based position in retrieval's candidate list (before reranking).
        attention: History item → attention weight, in history order (oldest first);
            sums to 1, or is empty when the user has no history. A repeated item's
            weights are summed.
        top_history: Up to three (history item, weight) pairs, highest weight first.
        modality_weights: Token name (`id`, then the modalities) → weight; sums to 1
            over the item's present tokens, 0 for absent ones.
    """

    item_id: str
    score: float
    retrieval_rank: int
    attention: dict[str, float]
    top_history: tuple[tuple[str, float], ...]
    modality_weights: dict[str, float]

    @property
    def top_modality(self) -> tuple[str, float]:
        """The token with the largest weight and that weight."""
        return max(self.modality_weights.items(), key=lambda kv: kv[1])


@dataclasses.dataclass(frozen=True)
class UserContext:
    """What `recommend` needs to know about one evaluation user.

    Attributes:
        user_id: The user.
        history: The query history, most recent last, without padding.
        seen: Every item the user met before the evaluated split (never recommended).
        held_out: The user's items in the evaluated split (hits to look for).
    """

    user_id: str
    history: tuple[str, ...]
    seen: tuple[str, ...]
    held_out: tuple[str, ...]


def catalog_vectors(retrieval_model, catalog_ids: Sequence[str]) -> np.ndarray:
    """[items, scoring_dim] retrieval item vectors of the catalog, row i for `catalog_ids[i]`."""
    return retrieval_model.encode_catalog(catalog_ids)


def recommend(
    retrieval_model,
    ranker,
    catalog_ids: Sequence[str],
    user_id: str,
    history: Sequence[str | bytes],
    k: int = 10,
    candidates: int = 100,
    exclude: Iterable[str] = (),
    item_vectors: np.ndarray | None = None,
) -> list[Recommendation]:
    """The user's top-`k` items: retrieval's top-`candidates`, reranked by the ranker, explained.

    Args:
        retrieval_model: A trained two-tower model (`query_tower`, `item_tower`).
        ranker: A trained `CrossAttentionRanker`.
        catalog_ids: [items] every recommendable item id.
        user_id: The user.
        history: Item ids the user chose, most recent last; padding (`""`) is ignored.
        k: Recommendations returned (at most `candidates`).
        candidates: Retrieval's list length, the items the ranker reorders.
        exclude: More items never to recommend (history items never are).
        item_vectors: `catalog_vectors(retrieval_model, catalog_ids)`, to reuse across users.

    Returns:
        Up to `k` recommendations, highest ranker score first (fewer when the
        catalog has fewer unseen items).
    """
    import tensorflow as tf

    from tfrs_mm.models.ranker import HISTORY_ATTENTION, MODALITY_WEIGHTS, SCORES

    catalog = np.asarray([str(i) for i in catalog_ids], dtype=object)
    history = [_text(h) for h in history if _text(h) != PADDING_ID]
    picked = _retrieve(retrieval_model, catalog, user_id, history, candidates, exclude, item_vectors)
    if not picked:
        return []
    model_history = tf.constant([history or [PADDING_ID]])  # [1, H]: an empty history is one pad
    out = ranker(tf.constant([user_id]), model_history, tf.constant([catalog[picked].tolist()]))
    scores = out[SCORES].numpy()[0]
    attention = out[HISTORY_ATTENTION].numpy()[0][:, : len(history)]  # [C, H]
    weights = out[MODALITY_WEIGHTS].numpy()[0]  # [C, T]
    tokens = list(ranker.item_tower.token_names)
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        _explained(catalog[picked[c]], scores[c], int(c) + 1, history, attention[c], tokens, weights[c])
        for c in order
    ]


def _retrieve(retrieval_model, catalog, user_id, history, candidates, exclude, item_vectors) -> list[int]:
    """Catalog rows of retrieval's top-`candidates` for the user, history and `exclude` masked."""
    import tensorflow as tf

    from tfrs_mm.evaluation.ranking import top_k

    vectors = catalog_vectors(retrieval_model, catalog) if item_vectors is None else item_vectors
    query = retrieval_model.query_vectors(tf.constant([user_id]), tf.constant([history or [PADDING_ID]]))
    banned = set(history) | {str(i) for i in exclude}
    masked = np.flatnonzero([item in banned for item in catalog])
    rows = top_k(query.numpy() @ np.asarray(vectors).T, candidates, exclude=[masked])[0]
    return [int(r) for r in rows if r >= 0]


def _explained(item_id, score, retrieval_rank, history, attention, tokens, weights) -> Recommendation:
    per_item: dict[str, float] = {}
    for item, weight in zip(history, attention):
        per_item[item] = per_item.get(item, 0.0) + float(weight)
    ranked = sorted(per_item.items(), key=lambda kv: -kv[1])
    return Recommendation(
        item_id=str(item_id),
        score=float(score),
        retrieval_rank=retrieval_rank,
        attention=per_item,
        top_history=tuple((item, weight) for item, weight in ranked[:3] if weight > 0),
        modality_weights={token: float(w) for token, w in zip(tokens, weights)},
    )


def format_recommendations(recs: Sequence[Recommendation], titles: Mapping[str, str] | None = None) -> str:
    """One line per recommendation: title, score and the ranker's main reasons.

    Args:
        recs: From `recommend`.
        titles: Item id → title; ids without one are shown as ids.

    Returns:
        Lines like ` 1. Velvet Harbor (i00123)  score 2.31: because you watched
        Night Tide (0.41); text mattered most (0.52)`. When no history item's
        attention reaches `STANDOUT` times an even split, the line says so
        (`no history item stands out (top: Night Tide 0.12)`) instead of naming one.
    """
    titles = titles or {}
    name = lambda item: titles.get(item) or item  # noqa: E731
    lines = []
    for rank, rec in enumerate(recs, start=1):
        reasons = []
        if rec.top_history:
            item, weight = rec.top_history[0]
            if weight >= min(STANDOUT / len(rec.attention), 1.0):  # a lone history item is the reason
                reasons.append(f"because you watched {name(item)} ({weight:.2f})")
            else:
                reasons.append(f"no history item stands out (top: {name(item)} {weight:.2f})")
        token, weight = rec.top_modality
        if weight > 0:
            reasons.append(f"{TOKEN_LABELS.get(token, token)} mattered most ({weight:.2f})")
        label = f"{name(rec.item_id)} ({rec.item_id})" if name(rec.item_id) != rec.item_id else rec.item_id
        lines.append(f"{rank:>2}. {label}  score {rec.score:.2f}: " + "; ".join(reasons or ["no reasons"]))
    return "\n".join(lines)


def item_titles(data_dir: str) -> dict[str, str]:
    """Item id → title from a preprocessed dataset's item records (items without one left out)."""
    from tfrs_mm import schema
    from tfrs_mm.schema import features as F
    from tfrs_mm.training.data import read_item_records

    records = read_item_records(data_dir, schema.read_manifest(data_dir))
    if F.TITLE not in records:
        return {}
    return {str(i): str(t) for i, t in zip(records[F.ITEM_ID], records[F.TITLE]) if t}


def evaluation_users(data_dir: str, catalog_ids: Sequence[str], split: str = "test") -> list[UserContext]:
    """The users of `split` with their query history, seen items and held-out items."""
    from tfrs_mm import schema
    from tfrs_mm.evaluation.retrieval_eval import load_eval_split

    truth = load_eval_split(data_dir, schema.read_manifest(data_dir), catalog_ids, split)
    catalog = np.asarray([str(i) for i in catalog_ids], dtype=object)
    users = []
    for user, history, relevant, known in zip(truth.users, truth.histories, truth.relevant, truth.known):
        history = tuple(h for h in map(_text, history) if h != PADDING_ID)
        seen = tuple(dict.fromkeys([*history, *catalog[known].tolist()]))
        users.append(UserContext(user, history, seen, tuple(catalog[relevant].tolist())))
    return users


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
