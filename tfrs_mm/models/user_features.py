"""User features (users.csv: age, gender, occupation, ...) as a Keras layer keyed by user id.

Like the item tower's content, the per-user values are non-trainable weights
looked up in-graph by user id, so a served model takes only `user_id` and
`history`. `get_config` carries the ids and vocabularies, never the values:
`from_config` builds a layer whose rows `set_weights` or a checkpoint fills in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class UserTable:
    """Per-user feature values, aligned by row with `user_ids`.

    Attributes:
        user_ids: [U] str.
        categorical: Feature name → [U] str values; "" is missing.
        vocabularies: Feature name → the known values of each categorical feature.
        numeric: Feature name → [U] float32 values (anything where absent).
        numeric_present: Feature name → [U] bool, True where the value is present.
    """

    user_ids: np.ndarray
    categorical: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    vocabularies: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    numeric: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    numeric_present: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.user_ids = np.asarray(self.user_ids, dtype=object).astype(str)
        n = len(self.user_ids)
        if len(set(self.user_ids.tolist())) != n:
            raise ValueError("user_ids must be unique")
        if set(self.categorical) != set(self.vocabularies):
            raise ValueError(f"categorical {sorted(self.categorical)} and vocabularies differ")
        if set(self.numeric) != set(self.numeric_present):
            raise ValueError(f"numeric {sorted(self.numeric)} and numeric_present differ")
        for name, values in {**self.categorical, **self.numeric, **self.numeric_present}.items():
            if np.shape(values) != (n,):
                raise ValueError(f"user feature {name!r} must be [{n}], got {np.shape(values)}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (*sorted(self.categorical), *sorted(self.numeric))


def _layer_name(feature: str) -> str:
    return feature.replace(".", "_")


class UserFeatures(tf.keras.layers.Layer):
    """Maps user ids to a [batch, output_dim] vector of their features.

    Each categorical feature gets an embedding (row 0: missing or unknown
    value); numeric features are standardised over the table's present values
    and enter with their presence bit. A user not in the table has every
    feature missing. The parts are concatenated and projected to `output_dim`.

    Args:
        user_ids: Users with features (the `UserTable` order).
        vocabularies: Categorical feature → its values.
        numeric_features: Names of the numeric features.
        output_dim: Width of the output.
        categorical_dim: Embedding width of each categorical feature.
        table: Initial values; None leaves zeros for `set_weights` to fill.
        **kwargs: Base layer arguments.
    """

    def __init__(
        self,
        user_ids: Sequence[str],
        vocabularies: Mapping[str, Sequence[str]],
        numeric_features: Sequence[str] = (),
        output_dim: int = 32,
        categorical_dim: int = 8,
        table: UserTable | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.user_ids = [str(u) for u in user_ids]
        self.vocabularies = {name: [str(v) for v in values] for name, values in sorted(vocabularies.items())}
        self.numeric_features = sorted(numeric_features)
        self.output_dim = output_dim
        self.categorical_dim = categorical_dim
        if not self.vocabularies and not self.numeric_features:
            raise ValueError("UserFeatures needs at least one categorical or numeric feature")
        self.user_lookup = tf.keras.layers.StringLookup(
            vocabulary=self.user_ids, num_oov_indices=1, mask_token=None, name="user_feature_lookup"
        )
        self.embeddings = {
            name: tf.keras.layers.Embedding(len(values) + 1, categorical_dim, name=f"{_layer_name(name)}_emb")
            for name, values in self.vocabularies.items()
        }
        self.projection = tf.keras.layers.Dense(output_dim, name="user_feature_projection")
        self._build_rows(table)

    @classmethod
    def from_table(cls, table: UserTable, output_dim: int, **kwargs: Any) -> UserFeatures:
        return cls(
            table.user_ids.tolist(),
            table.vocabularies,
            sorted(table.numeric),
            output_dim=output_dim,
            table=table,
            **kwargs,
        )

    def _build_rows(self, table: UserTable | None) -> None:
        """Row 0 is "unknown user": every categorical index 0, every numeric value absent."""
        rows = len(self.user_ids) + 1
        codes = np.zeros([rows, len(self.vocabularies)], np.int64)
        numeric = np.zeros([rows, 2 * len(self.numeric_features)], np.float32)
        if table is not None:
            if table.user_ids.tolist() != self.user_ids:
                raise ValueError("table.user_ids must equal user_ids, in order")
            codes[1:] = categorical_codes(table, self.vocabularies)
            numeric[1:] = standardised_numeric(table, self.numeric_features)
        self.codes = self.add_weight(
            name="categorical_codes",
            shape=codes.shape,
            dtype=tf.int64,
            trainable=False,
            initializer=tf.constant_initializer(codes),
        )
        self.numeric = self.add_weight(
            name="numeric_values",
            shape=numeric.shape,
            trainable=False,
            initializer=tf.constant_initializer(numeric),
        )

    def call(self, user_id: tf.Tensor) -> tf.Tensor:
        """[batch] string user ids → [batch, output_dim]."""
        rows = self.user_lookup(tf.convert_to_tensor(user_id, tf.string))
        codes = tf.gather(self.codes, rows)
        parts = [self.embeddings[name](codes[:, i]) for i, name in enumerate(self.vocabularies)]
        if self.numeric_features:
            parts.append(tf.gather(self.numeric, rows))
        return self.projection(tf.concat(parts, axis=-1))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "user_ids": list(self.user_ids),
            "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
            "numeric_features": list(self.numeric_features),
            "output_dim": self.output_dim,
            "categorical_dim": self.categorical_dim,
        }


def categorical_codes(table: UserTable, vocabularies: Mapping[str, Sequence[str]]) -> np.ndarray:
    """[U, F] int64: 1 + the value's vocabulary index, 0 for missing or unknown values."""
    columns = []
    for name, values in vocabularies.items():
        index = {v: i + 1 for i, v in enumerate(values)}
        columns.append([index.get(str(v), 0) for v in table.categorical[name]])
    return np.array(columns, np.int64).T.reshape(len(table.user_ids), len(vocabularies))


def standardised_numeric(table: UserTable, names: Sequence[str]) -> np.ndarray:
    """[U, 2F] float32: per feature the standardised value (0 where absent) and its presence bit."""
    columns = []
    for name in names:
        values = np.asarray(table.numeric[name], np.float64)
        present = np.asarray(table.numeric_present[name], bool) & np.isfinite(values)
        mean = values[present].mean() if present.any() else 0.0
        std = values[present].std() if present.sum() > 1 else 1.0
        columns.append(np.where(present, (values - mean) / (std or 1.0), 0.0))
        columns.append(present.astype(np.float64))
    return np.array(columns, np.float32).T.reshape(len(table.user_ids), 2 * len(names))
