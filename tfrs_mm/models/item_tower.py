"""The item tower: item id → L2-normalised vector from its id embedding and content.

SavedModel / config approach: `get_config` carries the vocabularies (catalog and
train ids), the modality widths and the hyper-parameters, never the content
arrays. The content arrays are non-trainable weights (`content_<m>`,
`present_<m>`), so they travel with `get_weights`/`set_weights`, checkpoints and
SavedModels; `from_config(get_config())` builds a tower with zero content that
`set_weights` (or a checkpoint restore) fills in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_mm.config import ModelConfig
from tfrs_mm.models.attention_fusion import AttentionFusion
from tfrs_mm.models.concat_fusion import ConcatFusion
from tfrs_mm.models.gated_fusion import GatedFusion
from tfrs_mm.models.item_table import ItemTable

ID_MODALITY = "id"
FUSIONS = {"concat": ConcatFusion, "gated": GatedFusion, "attention": AttentionFusion}


class ItemTower(tf.keras.layers.Layer):
    """Maps item ids of any shape to [..., embedding_dim] unit vectors.

    Tokens are `[id, *modalities]`: the id embedding (train ids; unseen ids share
    the OOV rows, so a cold item's vector is driven by its content) and each
    modality's catalog embedding, each projected to `embedding_dim`. Content is
    looked up in-graph by catalog row; an id outside the catalog has no content
    (mask 0). In training, modality dropout zeroes present mask bits per example
    with probability `modality_dropout`, never all of them; the `id` token can be
    dropped too, which teaches content-only vectors for cold items.

    Args:
        catalog_ids: [N] every item id with content (the `ItemTable` order).
        train_item_ids: Ids with a learned id embedding.
        embedding_dims: Modality → content width, e.g. `{"text": 384}`.
        embedding_dim: Output width D.
        id_embedding_dim: Width of the id embedding before projection.
        num_oov_buckets: OOV id rows shared by unseen items.
        modalities: Modalities to use, in token order (each must be in `embedding_dims`).
        fusion: `concat`, `gated` or `attention`.
        modality_dropout: Per-token drop probability in training.
        active_modalities: Default ablation: token names (`id` and modalities) kept at
            inference; None keeps all. A `call` argument overrides it.
        table: Initial content arrays; None leaves zeros for `set_weights` to fill.
        **kwargs: Base layer arguments.
    """

    def __init__(
        self,
        catalog_ids: Sequence[str],
        train_item_ids: Sequence[str],
        embedding_dims: Mapping[str, int],
        embedding_dim: int = 64,
        id_embedding_dim: int = 32,
        num_oov_buckets: int = 1,
        modalities: Sequence[str] = ("text", "image", "audio"),
        fusion: str = "gated",
        modality_dropout: float = 0.1,
        active_modalities: Sequence[str] | None = None,
        table: ItemTable | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.catalog_ids = [str(i) for i in catalog_ids]
        self.train_item_ids = [str(i) for i in train_item_ids]
        self.embedding_dims = {m: int(d) for m, d in embedding_dims.items()}
        self.embedding_dim = embedding_dim
        self.id_embedding_dim = id_embedding_dim
        self.num_oov_buckets = num_oov_buckets
        self.modalities = tuple(modalities)
        self.fusion = fusion
        self.modality_dropout = modality_dropout
        self.active_modalities = tuple(active_modalities) if active_modalities is not None else None
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {sorted(FUSIONS)}, got {fusion!r}")
        missing = [m for m in self.modalities if m not in self.embedding_dims]
        if missing:
            raise ValueError(f"modalities {missing} have no entry in embedding_dims {self.embedding_dims}")
        self._build_lookups()
        self._build_content(table)
        self.id_projection = tf.keras.layers.Dense(embedding_dim, name="id_projection")
        self.projections = {
            m: tf.keras.layers.Dense(embedding_dim, name=f"{m}_projection") for m in modalities
        }
        self.fusion_layer = FUSIONS[fusion](name=f"{fusion}_fusion")

    @classmethod
    def from_table(
        cls, table: ItemTable, train_item_ids: Sequence[str], config: ModelConfig, **kwargs: Any
    ) -> ItemTower:
        """Builds a tower over `table`'s catalog with the sizes and options in `config`."""
        return cls(
            catalog_ids=table.item_ids.tolist(),
            train_item_ids=train_item_ids,
            embedding_dims=table.embedding_dims,
            embedding_dim=config.embedding_dim,
            id_embedding_dim=config.id_embedding_dim,
            num_oov_buckets=config.num_oov_buckets,
            modalities=config.modalities,
            fusion=config.fusion,
            modality_dropout=config.modality_dropout,
            table=table,
            **kwargs,
        )

    @property
    def token_names(self) -> tuple[str, ...]:
        """Names of the fused tokens, in order: `id` then the modalities."""
        return (ID_MODALITY, *self.modalities)

    def _build_lookups(self) -> None:
        # Catalog row 0 is "not in the catalog": zero content, mask 0.
        self.catalog_lookup = tf.keras.layers.StringLookup(
            vocabulary=self.catalog_ids, num_oov_indices=1, mask_token=None, name="catalog_lookup"
        )
        self.id_lookup = tf.keras.layers.StringLookup(
            vocabulary=self.train_item_ids,
            num_oov_indices=self.num_oov_buckets,
            mask_token=None,
            name="id_lookup",
        )
        self.id_embedding = tf.keras.layers.Embedding(
            self.num_oov_buckets + len(self.train_item_ids), self.id_embedding_dim, name="id_embedding"
        )

    def _build_content(self, table: ItemTable | None) -> None:
        rows = len(self.catalog_ids) + 1
        if table is not None and table.item_ids.tolist() != self.catalog_ids:
            raise ValueError("table.item_ids must equal catalog_ids, in order")
        self.content, self.present = {}, {}
        for m in self.modalities:
            values = np.zeros([rows, self.embedding_dims[m]], np.float32)
            present = np.zeros([rows], np.float32)
            if table is not None:
                values[1:] = table.embeddings[m]
                present[1:] = table.present[m]
            self.content[m] = self.add_weight(
                name=f"content_{m}",
                shape=values.shape,
                trainable=False,
                initializer=tf.constant_initializer(values),
            )
            self.present[m] = self.add_weight(
                name=f"present_{m}",
                shape=present.shape,
                trainable=False,
                initializer=tf.constant_initializer(present),
            )

    def catalog_index(self, item_ids: tf.Tensor) -> tf.Tensor:
        """Catalog row + 1 of each id, 0 when the id is not in the catalog; same shape as `item_ids`."""
        return self.catalog_lookup(item_ids)

    def call(
        self,
        item_ids: tf.Tensor,
        training: bool | None = None,
        active_modalities: Sequence[str] | None = None,
        return_weights: bool = False,
    ):
        """Encodes item ids.

        Args:
            item_ids: [...] string ids, any shape (e.g. [batch] or [batch, history]).
            training: Enables modality dropout.
            active_modalities: Ablation: token names to keep (e.g. `("id",)`, `("text",)`);
                defaults to `self.active_modalities`, None keeps all.
            return_weights: Also return the fusion's modality weights.

        Returns:
            [..., embedding_dim] unit vectors, and [..., 1 + num_modalities] weights if asked.
        """
        item_ids = tf.convert_to_tensor(item_ids, tf.string)
        # A batch of histories repeats the same items many times (1024 x 50 ids, a few thousand
        # distinct): encode each distinct id once and gather. In training, modality dropout
        # therefore drops a token for every occurrence of an item within one step.
        unique_ids, positions = tf.unique(tf.reshape(item_ids, [-1]))
        tokens, mask = self._masked_tokens(unique_ids, training, active_modalities)
        fused, weights = self.fusion_layer(tokens, mask, return_weights=True)
        vectors = tf.gather(tf.math.l2_normalize(fused, axis=-1), positions)
        weights = tf.gather(weights, positions)
        out_shape = tf.shape(item_ids)
        vectors = tf.reshape(vectors, tf.concat([out_shape, [self.embedding_dim]], axis=0))
        if not return_weights:
            return vectors
        return vectors, tf.reshape(weights, tf.concat([out_shape, [len(self.token_names)]], axis=0))

    def tokens(
        self,
        item_ids: tf.Tensor,
        training: bool | None = None,
        active_modalities: Sequence[str] | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The unfused tokens of item ids, for models that attend over modalities (the ranker).

        Args:
            item_ids: [...] string ids, any shape.
            training: Enables modality dropout.
            active_modalities: Ablation, as in `call`.

        Returns:
            Tokens [..., T, embedding_dim] (T = 1 + modalities, in `token_names` order)
            and their float mask [..., T] (1 where present and kept).
        """
        item_ids = tf.convert_to_tensor(item_ids, tf.string)
        unique_ids, positions = tf.unique(tf.reshape(item_ids, [-1]))
        tokens, mask = self._masked_tokens(unique_ids, training, active_modalities)
        out_shape = tf.shape(item_ids)
        count = len(self.token_names)
        tokens = tf.reshape(
            tf.gather(tokens, positions), tf.concat([out_shape, [count, self.embedding_dim]], axis=0)
        )
        return tokens, tf.reshape(tf.gather(mask, positions), tf.concat([out_shape, [count]], axis=0))

    def _masked_tokens(self, flat_ids: tf.Tensor, training, active_modalities) -> tuple[tf.Tensor, tf.Tensor]:
        tokens, mask = self._tokens(flat_ids)
        mask = self._apply_ablation(mask, active_modalities)
        if training:
            mask = self._modality_dropout(mask)
        return tokens, mask

    def _tokens(self, flat_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """[n] ids → tokens [n, 1 + M, D] and mask [n, 1 + M] float."""
        rows = self.catalog_lookup(flat_ids)
        id_rows = self.id_lookup(flat_ids)
        tokens = [self.id_projection(self.id_embedding(id_rows))]
        content_masks = []
        for m in self.modalities:
            # Encoders differ in scale (VGGish rows have norms ~1e3, MiniLM 1): unit-normalise
            # so no modality drowns the others in the fusion. Missing rows stay zero.
            content = tf.math.l2_normalize(tf.gather(self.content[m], rows), axis=-1)
            tokens.append(self.projections[m](content))
            content_masks.append(tf.gather(self.present[m], rows))
        # An id outside the train vocabulary has only the shared OOV row: it would make every
        # cold item look alike, so it is used only when the item has no content at all.
        known_id = id_rows >= self.num_oov_buckets
        has_content = tf.reduce_sum(tf.stack(content_masks, axis=1), axis=1) > 0 if content_masks else False
        id_mask = tf.cast(tf.logical_or(known_id, tf.logical_not(has_content)), tf.float32)
        return tf.stack(tokens, axis=1), tf.stack([id_mask, *content_masks], axis=1)

    def _apply_ablation(self, mask: tf.Tensor, active_modalities: Sequence[str] | None) -> tf.Tensor:
        active = active_modalities if active_modalities is not None else self.active_modalities
        if active is None:
            return mask
        unknown = set(active) - set(self.token_names)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; tokens are {self.token_names}")
        keep = tf.constant([1.0 if name in active else 0.0 for name in self.token_names], tf.float32)
        return mask * keep

    def _modality_dropout(self, mask: tf.Tensor) -> tf.Tensor:
        if not self.modality_dropout:
            return mask
        keep = tf.cast(tf.random.uniform(tf.shape(mask)) >= self.modality_dropout, mask.dtype)
        dropped = mask * keep
        # Never drop every token of an example: fall back to its undropped mask.
        empty = tf.reduce_sum(dropped, axis=-1, keepdims=True) == 0
        return tf.where(empty, mask, dropped)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "catalog_ids": list(self.catalog_ids),
            "train_item_ids": list(self.train_item_ids),
            "embedding_dims": dict(self.embedding_dims),
            "embedding_dim": self.embedding_dim,
            "id_embedding_dim": self.id_embedding_dim,
            "num_oov_buckets": self.num_oov_buckets,
            "modalities": list(self.modalities),
            "fusion": self.fusion,
            "modality_dropout": self.modality_dropout,
            "active_modalities": list(self.active_modalities) if self.active_modalities is not None else None,
        }
