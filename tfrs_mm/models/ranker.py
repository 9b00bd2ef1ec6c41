"""The cross-attention ranker: scores (user, history, candidates) and says why.

Built from swappable parts, in the manner of TFRS's experimental `Ranking`
model: a token encoder (an `ItemTower` of its own, or retrieval's: id, text,
image and audio tokens of candidates and history items), a modality-aligned
cross-attention (the candidate's text token attends to the history items'
text tokens, its image token to their images, and so on, so "this poster
looks like that poster" is one attention weight), an attention across the
candidate's modality tokens, a user embedding, optional item-to-item evidence
(`item_item.ItemItemEvidence`), and an MLP head.

Grounding: each attention logit carries a bias its explanation can name: how
alike the two tokens are (cosine, standardised per modality with statistics
measured on the catalog by `calibrate_similarity`, times a learned scale)
plus the item-to-item weight of history item → candidate. A modality's
weight likewise carries the candidate's mean standardised similarity to the
history in that modality. So attention points at the history items that
speak for the candidate before training has fitted anything else.

Explanations: `history_attention` [B, C, H] is each candidate token's history
attention, averaged over heads and weighted by that token's modality weight
(over the tokens that had history to attend to), so per candidate it sums to 1
over the non-padding history items (0 everywhere when the history is empty);
`modality_weights` [B, C, T] sums to 1 over the candidate's present tokens
(`id`, then the modalities).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_mm.models._masking import masked_softmax
from tfrs_mm.models.cross_attention import BiasedCrossAttention
from tfrs_mm.models.item_item import ItemItemEvidence
from tfrs_mm.models.item_tower import ItemTower
from tfrs_mm.models.popularity_prior import PopularityPrior
from tfrs_mm.models.query_tower import QueryTower
from tfrs_mm.models.user_features import UserFeatures
from tfrs_mm.schema.features import PADDING_ID

SCORES, HISTORY_ATTENTION, MODALITY_WEIGHTS = "scores", "history_attention", "modality_weights"
SHARED_TOKENS = "retrieval_tower.item_tower"  # `item_tower` in the config when the ranker reuses retrieval's


class CrossAttentionRanker(tf.keras.layers.Layer):
    """(user_id [B], history [B, H], candidate_ids [B, C]) → scores and explanations.

    Args:
        item_tower: Token encoder for candidates and history (width `item_tower.embedding_dim`):
            its own, or the retrieval tower's item tower (frozen with it).
        train_user_ids: Users with a learned embedding; others share an OOV row.
        num_heads: Heads of the cross-attention.
        mlp: Hidden widths of the scoring head.
        user_embedding_dim: Width of the user embedding; 0 gives the ranker none (a user is then
            their history alone, and nothing per user can memorise their unseen items as negatives).
        dropout: Dropout in the attention and the head, in training.
        max_history: Longest history with its own recency vector (older items share the last).
        retrieval_tower: Optional trained retrieval `QueryTower` (with its item tower), frozen.
            When given, the score is the retrieval logit (query · candidate / temperature)
            plus the ranker's learned correction, which starts at zero: an untrained ranker
            keeps retrieval's order (plus the item-to-item evidence, if any), and training
            moves away from it only where that lowers the loss on the ranker's lists.
        retrieval_temperature: The retrieval model's softmax temperature.
        retrieval_prior: The retrieval model's `PopularityPrior`, if it has one: the retrieval
            logit then includes it, as retrieval's own order does.
        item_item: Optional `ItemItemEvidence`: the score adds `evidence_weight` · Σ_h B[h, c]
            (set `evidence_weight` and `evidence_scale`, the inverse spread of B, from data;
            `training.item_item_fit` does), and B biases the history attention.
        **kwargs: Base layer arguments.
    """

    def __init__(
        self,
        item_tower: ItemTower,
        train_user_ids: Sequence[str],
        num_heads: int = 4,
        mlp: Sequence[int] = (128, 64),
        user_embedding_dim: int = 32,
        dropout: float = 0.1,
        max_history: int = 200,
        retrieval_tower: QueryTower | None = None,
        retrieval_temperature: float = 0.05,
        retrieval_prior: PopularityPrior | None = None,
        item_item: ItemItemEvidence | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.item_tower = item_tower
        self.train_user_ids = [str(u) for u in train_user_ids]
        self.num_heads = num_heads
        self.mlp = tuple(int(w) for w in mlp)
        self.user_embedding_dim = user_embedding_dim
        self.dropout = dropout
        dim = item_tower.embedding_dim
        self.user_lookup = tf.keras.layers.StringLookup(
            vocabulary=self.train_user_ids, num_oov_indices=1, mask_token=None, name="ranker_user_lookup"
        )
        self.user_embedding = self.modality_user = None
        if user_embedding_dim:
            self.user_embedding = tf.keras.layers.Embedding(
                1 + len(self.train_user_ids), user_embedding_dim, name="ranker_user_embedding"
            )
            self.modality_user = tf.keras.layers.Dense(dim, use_bias=False, name="modality_user")
        self.cross_attention = BiasedCrossAttention(
            num_heads,
            key_dim=max(dim // num_heads, 1),
            output_dim=dim,
            dropout=dropout,
            name="cross_attention",
        )
        self.item_item = item_item
        self._add_grounding_weights(len(item_tower.token_names))
        # Recency: a learned vector per position from the end of the history, added to the keys.
        self.max_history = max_history
        self.recency = tf.keras.layers.Embedding(max_history, dim, name="recency")
        self.modality_hidden = tf.keras.layers.Dense(dim, name="modality_hidden")
        self.modality_logit = tf.keras.layers.Dense(1, use_bias=False, name="modality_logit")
        self.head = [
            tf.keras.layers.Dense(w, activation="relu", name=f"head_{i}") for i, w in enumerate(self.mlp)
        ]
        self.head_dropout = tf.keras.layers.Dropout(dropout)
        self.score = tf.keras.layers.Dense(1, kernel_initializer="zeros", name="score")
        self.retrieval_tower = retrieval_tower
        self.retrieval_temperature = retrieval_temperature
        self.retrieval_prior = retrieval_prior if retrieval_tower is not None else None
        if retrieval_tower is not None:
            retrieval_tower.trainable = False

    def _add_grounding_weights(self, num_tokens: int) -> None:
        def scalar(name, value, trainable=True):
            return self.add_weight(
                name=name, shape=[], trainable=trainable, initializer=tf.constant_initializer(value)
            )

        def per_token(name, value):
            return self.add_weight(
                name=name, shape=[num_tokens], trainable=False, initializer=tf.constant_initializer(value)
            )

        self.similarity_mean = per_token("similarity_mean", 0.0)  # set by `calibrate_similarity`
        self.similarity_std = per_token("similarity_std", 1.0)
        self.similarity_scale = scalar("similarity_scale", 2.0)  # attention logit per standard deviation
        self.modality_similarity = scalar("modality_similarity", 1.0)
        self.evidence_scale = scalar("evidence_scale", 1.0, trainable=False)
        self.evidence_attention = scalar("evidence_attention", 1.0)
        self.evidence_weight = scalar("evidence_weight", 0.0)

    def call(
        self, user_id: tf.Tensor, history: tf.Tensor, candidate_ids: tf.Tensor, training: bool | None = None
    ) -> dict[str, tf.Tensor]:
        """Scores candidates.

        Args:
            user_id: [B] string.
            history: [B, H] string item ids, padded with `PADDING_ID`.
            candidate_ids: [B, C] string item ids.
            training: Enables dropout and modality dropout.

        Returns:
            `scores` [B, C] logits, `history_attention` [B, C, H], `modality_weights` [B, C, T].
        """
        history = tf.convert_to_tensor(history, tf.string)
        candidate_ids = tf.convert_to_tensor(candidate_ids, tf.string)
        tokens, token_mask = self.item_tower.tokens(candidate_ids, training=training)  # [B,C,T,D], [B,C,T]
        history_tokens, history_token_mask = self.item_tower.tokens(history, training=training)  # [B,H,T,..]
        history_mask = tf.logical_and(tf.not_equal(history, PADDING_ID)[..., None], history_token_mask > 0)
        evidence = self.item_item(history, candidate_ids) if self.item_item is not None else None  # [B,C,H]
        context, attention, similarity = self._attend(
            tokens, history_tokens, history_mask, evidence, training
        )
        features = tf.concat([tokens, context, tokens * context], axis=-1)
        hidden = self.modality_hidden(features)
        if self.user_embedding is not None:
            user = self.user_embedding(self.user_lookup(user_id))  # [B, U]
            # Which modality matters depends on the user (some choose by look, some by sound).
            hidden += self.modality_user(user)[:, None, None, :]
        hidden = tf.tanh(hidden)
        logits = tf.squeeze(self.modality_logit(hidden), -1)  # [B, C, T]
        weights = masked_softmax(logits + self.modality_similarity * similarity, token_mask > 0)
        pooled = tf.einsum("bct,bctd->bcd", weights, features)
        # Tokens with nothing to attend to carry no attention: renormalise over those that do.
        attended = tf.cast(tf.reduce_sum(attention, axis=-1) > 0, weights.dtype)
        history_attention = tf.math.divide_no_nan(
            tf.einsum("bct,bcth->bch", weights * attended, attention),
            tf.reduce_sum(weights * attended, axis=-1, keepdims=True),
        )
        hidden = pooled
        if self.user_embedding is not None:
            user = tf.broadcast_to(
                user[:, None, :], tf.concat([tf.shape(pooled)[:2], [self.user_embedding_dim]], 0)
            )
            hidden = tf.concat([pooled, user], axis=-1)
        for layer in self.head:
            hidden = self.head_dropout(layer(hidden), training=training)
        scores = tf.squeeze(self.score(hidden), -1)
        if self.retrieval_tower is not None:
            scores += self._retrieval_logits(user_id, history, candidate_ids)
        if evidence is not None:
            scores += self.evidence_weight * tf.reduce_sum(evidence, axis=-1)
        return {SCORES: scores, HISTORY_ATTENTION: history_attention, MODALITY_WEIGHTS: weights}

    def _retrieval_logits(self, user_id, history, candidate_ids) -> tf.Tensor:
        """[B, C] the frozen retrieval model's logits for the candidates."""
        query = self.retrieval_tower(user_id, history, training=False)
        item_tower = self.retrieval_tower.item_tower
        candidates = item_tower(candidate_ids, training=False)
        if self.retrieval_prior is not None:
            query = self.retrieval_prior.queries(query)
            candidates = self.retrieval_prior.items(item_tower.catalog_index(candidate_ids), candidates)
        return tf.einsum("bd,bcd->bc", query, candidates) / self.retrieval_temperature

    def _attend(self, tokens, history_tokens, history_mask, evidence, training):
        """Modality-aligned cross-attention: candidate token t attends to the history's tokens t.

        Args:
            tokens: [B, C, T, D] candidate tokens.
            history_tokens: [B, H, T, D] history item tokens.
            history_mask: [B, H, T] bool, history item present and has token t.
            evidence: [B, C, H] item-to-item weights, or None.

        Returns:
            context [B, C, T, D]; attention weights [B, C, T, H] (mean over heads; all zero where
            token t has no history to attend to); and [B, C, T] the candidate's mean standardised
            similarity to the history in each token (0 without history).
        """
        shape = tf.shape(tokens)
        batch, candidates, count, dim = shape[0], shape[1], shape[2], shape[3]
        length = tf.shape(history_tokens)[1]
        z = self._standardised_similarity(tokens, history_tokens)  # [B, C, T, H]
        bias = self.similarity_scale * z
        if evidence is not None:
            bias += (self.evidence_attention * self.evidence_scale) * evidence[:, :, None, :]
        mask = tf.broadcast_to(tf.transpose(history_mask, [0, 2, 1])[:, None], tf.shape(z))  # [B, C, T, H]
        # Fold (batch, token) into one batch axis: [B*T, C, D] queries over [B*T, H, D] keys.
        fold = lambda x, width: tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [batch * count, -1, width])  # noqa: E731
        from_end = tf.minimum(tf.range(length - 1, -1, -1), self.max_history - 1)  # 0 = most recent
        values = fold(history_tokens, dim)
        keys = values + self.recency(from_end)[None]
        context, scores = self.cross_attention(
            fold(tokens, dim), keys, values, fold(bias, length), fold(mask, length), training=training
        )
        scores = tf.reduce_mean(scores, axis=1)  # mean over heads: [B*T, C, H]
        context = tf.transpose(tf.reshape(context, [batch, count, candidates, -1]), [0, 2, 1, 3])
        scores = tf.transpose(tf.reshape(scores, [batch, count, candidates, length]), [0, 2, 1, 3])
        present = tf.cast(mask, z.dtype)
        similarity = tf.math.divide_no_nan(tf.reduce_sum(z * present, -1), tf.reduce_sum(present, -1))
        return context, scores, similarity

    def _standardised_similarity(self, tokens, history_tokens) -> tf.Tensor:
        """[B, C, T, H] cosine of candidate token t and history token t, standardised per token."""
        cosine = tf.einsum(
            "bctd,bhtd->bcth", tf.math.l2_normalize(tokens, -1), tf.math.l2_normalize(history_tokens, -1)
        )
        return (cosine - self.similarity_mean[:, None]) / self.similarity_std[:, None]

    def calibrate_similarity(self, item_ids, pairs: int = 4096, seed: int = 0) -> None:
        """Sets each token's similarity mean and spread from random pairs of `item_ids` (both present)."""
        rng = np.random.default_rng(seed)
        ids = np.asarray(item_ids, dtype=object).astype(str)
        drawn = tf.constant(ids[rng.integers(0, len(ids), size=[2, pairs])])
        tokens, mask = self.item_tower.tokens(drawn, training=False)  # [2, P, T, D], [2, P, T]
        cosine = tf.reduce_sum(tf.math.l2_normalize(tokens[0], -1) * tf.math.l2_normalize(tokens[1], -1), -1)
        both = (mask[0] * mask[1]).numpy() > 0
        cosine = cosine.numpy()
        mean = [cosine[both[:, t], t].mean() if both[:, t].sum() > 1 else 0.0 for t in range(both.shape[1])]
        std = [cosine[both[:, t], t].std() if both[:, t].sum() > 1 else 1.0 for t in range(both.shape[1])]
        self.similarity_mean.assign(np.asarray(mean, np.float32))
        self.similarity_std.assign(np.maximum(np.asarray(std, np.float32), 1e-3))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "item_tower": self._item_tower_config(),
            "train_user_ids": list(self.train_user_ids),
            "num_heads": self.num_heads,
            "mlp": list(self.mlp),
            "user_embedding_dim": self.user_embedding_dim,
            "dropout": self.dropout,
            "max_history": self.max_history,
            "retrieval_tower": (
                tf.keras.layers.serialize(self.retrieval_tower) if self.retrieval_tower is not None else None
            ),
            "retrieval_temperature": self.retrieval_temperature,
            "retrieval_prior": (
                tf.keras.layers.serialize(self.retrieval_prior) if self.retrieval_prior is not None else None
            ),
            "item_item": tf.keras.layers.serialize(self.item_item) if self.item_item is not None else None,
        }

    def _item_tower_config(self):
        if self.retrieval_tower is not None and self.item_tower is self.retrieval_tower.item_tower:
            return SHARED_TOKENS  # one tower, serialised (and restored) once, inside the retrieval tower
        return tf.keras.layers.serialize(self.item_tower)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CrossAttentionRanker:
        config = dict(config)
        custom = {
            "ItemTower": ItemTower,
            "QueryTower": QueryTower,
            "UserFeatures": UserFeatures,
            "PopularityPrior": PopularityPrior,
            "ItemItemEvidence": ItemItemEvidence,
        }
        for key in ("item_tower", "retrieval_tower", "retrieval_prior", "item_item"):
            if isinstance(config.get(key), dict):
                config[key] = tf.keras.layers.deserialize(config[key], custom_objects=custom)
        if config.get("item_tower") == SHARED_TOKENS:
            config["item_tower"] = config["retrieval_tower"].item_tower
        return cls(**config)
