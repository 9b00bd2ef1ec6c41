"""The cross-attention ranker: scores (user, history, candidates) and says why.

Built from swappable parts, in the manner of TFRS's experimental `Ranking`
model: a token encoder (an `ItemTower` of its own: id, text, image and audio
tokens of candidates and history items), a modality-aligned cross-attention
(the candidate's text token attends to the history items' text tokens, its
image token to their images, and so on, so "this poster looks like that
poster" is one attention weight), an attention across the candidate's
modality tokens, a user embedding, and an MLP head.

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

import tensorflow as tf

from tfrs_mm.models._masking import masked_softmax
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
            keeps retrieval's order, and training moves away from it only where that lowers
            the loss on the ranker's lists.
        retrieval_temperature: The retrieval model's softmax temperature.
        retrieval_prior: The retrieval model's `PopularityPrior`, if it has one: the retrieval
            logit then includes it, as retrieval's own order does.
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
        self.cross_attention = tf.keras.layers.MultiHeadAttention(
            num_heads, key_dim=max(dim // num_heads, 1), dropout=dropout, name="cross_attention"
        )
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
        context, attention = self._attend(tokens, history_tokens, history_mask, training)
        features = tf.concat([tokens, context, tokens * context], axis=-1)
        hidden = self.modality_hidden(features)
        if self.user_embedding is not None:
            user = self.user_embedding(self.user_lookup(user_id))  # [B, U]
            # Which modality matters depends on the user (some choose by look, some by sound).
            hidden += self.modality_user(user)[:, None, None, :]
        hidden = tf.tanh(hidden)
        logits = tf.squeeze(self.modality_logit(hidden), -1)  # [B, C, T]
        weights = masked_softmax(logits, token_mask > 0)
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

    def _attend(self, tokens, history_tokens, history_mask, training):
        """Modality-aligned cross-attention: candidate token t attends to the history's tokens t.

        Args:
            tokens: [B, C, T, D] candidate tokens.
            history_tokens: [B, H, T, D] history item tokens.
            history_mask: [B, H, T] bool, history item present and has token t.

        Returns:
            context [B, C, T, D] and attention weights [B, C, T, H] (mean over heads; zero
            where masked, all zero where token t has no history to attend to).
        """
        shape = tf.shape(tokens)
        batch, candidates, count, dim = shape[0], shape[1], shape[2], shape[3]
        length = tf.shape(history_tokens)[1]
        # Fold (batch, token) into one batch axis: [B*T, C, D] queries over [B*T, H, D] keys.
        queries = tf.reshape(tf.transpose(tokens, [0, 2, 1, 3]), [batch * count, candidates, dim])
        values = tf.reshape(tf.transpose(history_tokens, [0, 2, 1, 3]), [batch * count, length, dim])
        from_end = tf.minimum(tf.range(length - 1, -1, -1), self.max_history - 1)  # 0 = most recent
        keys = values + self.recency(from_end)[None]
        key_mask = tf.reshape(tf.transpose(history_mask, [0, 2, 1]), [batch * count, 1, length])
        mask = tf.broadcast_to(key_mask, [batch * count, candidates, length])
        context, scores = self.cross_attention(
            queries, values, key=keys, attention_mask=mask, return_attention_scores=True, training=training
        )
        # Keras gives an all-masked row uniform weights over padding: zero them, and its context.
        scores = tf.reduce_mean(scores, axis=1) * tf.cast(mask, scores.dtype)  # mean over heads
        scores = tf.math.divide_no_nan(scores, tf.reduce_sum(scores, axis=-1, keepdims=True))
        context = context * tf.cast(tf.reduce_any(mask, axis=-1, keepdims=True), context.dtype)
        context = tf.transpose(tf.reshape(context, [batch, count, candidates, -1]), [0, 2, 1, 3])
        scores = tf.transpose(tf.reshape(scores, [batch, count, candidates, length]), [0, 2, 1, 3])
        return context, scores

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
        }
        for key in ("item_tower", "retrieval_tower", "retrieval_prior"):
            if isinstance(config.get(key), dict):
                config[key] = tf.keras.layers.deserialize(config[key], custom_objects=custom)
        if config.get("item_tower") == SHARED_TOKENS:
            config["item_tower"] = config["retrieval_tower"].item_tower
        return cls(**config)
