"""Feature specs for item, user and interaction records, and their tf.train.Example codec.

Beam writes records with `encode_example` and the trainer parses them with
`parsing_spec`, both from the same `FeatureSpec`s recorded in the manifest, so
the two sides cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from tfrs_mm.data.raw import ColumnDecl

Dtype = Literal["string", "int64", "float32"]
DTYPES: tuple[str, ...] = ("string", "int64", "float32")

ITEM_ID = "item_id"
USER_ID = "user_id"
TITLE = "title"
CATEGORIES = "categories"
HISTORY = "history"
TIMESTAMP = "timestamp"
RATING = "rating"
WEIGHT = "weight"
PADDING_ID = ""  # pads `history` to its fixed length; never a real item id
USER_FEATURE_PREFIX = "user."  # keeps user columns apart from interaction features of the same name
USER_COLUMN_KINDS = ("categorical", "numeric")  # text and multi_categorical user columns are not used


def embedding_feature(modality: str) -> str:
    """Name of a modality's embedding feature, e.g. `image_embedding`."""
    return f"{modality}_embedding"


def presence_feature(name: str) -> str:
    """Name of the 0/1 presence mask of a modality or optional column, e.g. `image_present`."""
    return f"{name}_present"


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One feature of a record.

    Attributes:
        name: Feature key in the tf.train.Example.
        dtype: `string`, `int64` or `float32`.
        shape: Fixed shape, `()` for a scalar or `(d,)` for a vector; ignored when `varlen`.
        varlen: A variable-length list (parsed as a `tf.RaggedTensor`).
        description: What the feature holds, with units.
    """

    name: str
    dtype: Dtype
    shape: tuple[int, ...] = ()
    varlen: bool = False
    description: str = ""

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"feature {self.name!r}: dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.varlen and self.shape:
            raise ValueError(f"feature {self.name!r}: a varlen feature has no fixed shape")

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(**{**data, "shape": tuple(data.get("shape", ()))})


def item_features(
    embedding_dims: Mapping[str, int], extra_columns: Sequence[ColumnDecl] = ()
) -> tuple[FeatureSpec, ...]:
    """Specs of an item record: id, title, categories, per-modality embeddings and masks.

    Args:
        embedding_dims: Embedding size per modality, e.g. `{"text": 384, "image": 1280}`.
        extra_columns: Declared extra item columns from `dataset.json`.
    """
    specs = [
        FeatureSpec(ITEM_ID, "string", description="the catalog's item id"),
        FeatureSpec(TITLE, "string", description="normalised title, for display"),
        FeatureSpec(CATEGORIES, "string", varlen=True, description="category labels"),
    ]
    for modality, dim in sorted(embedding_dims.items()):
        specs.append(
            FeatureSpec(embedding_feature(modality), "float32", (dim,), description=f"{modality} embedding")
        )
        specs.append(
            FeatureSpec(presence_feature(modality), "int64", description=f"1 if the item has {modality}")
        )
    specs.extend(_extra_column_specs(extra_columns))
    return tuple(specs)


def _extra_column_specs(columns: Sequence[ColumnDecl]) -> list[FeatureSpec]:
    specs = []
    for column in columns:
        if column.kind == "numeric":
            specs.append(FeatureSpec(column.name, "float32", description="declared numeric column"))
            specs.append(FeatureSpec(presence_feature(column.name), "int64", description="1 if present"))
        elif column.kind == "multi_categorical":
            specs.append(FeatureSpec(column.name, "string", varlen=True, description="declared labels"))
        else:
            specs.append(FeatureSpec(column.name, "string", description=f"declared {column.kind} column"))
    return specs


def user_feature(column: str) -> str:
    """Name of a declared user column's feature, e.g. `user.age`."""
    return USER_FEATURE_PREFIX + column


def unused_user_columns(columns: Sequence[ColumnDecl]) -> list[str]:
    """Names of declared user columns `user_features` leaves out (kinds other than `USER_COLUMN_KINDS`)."""
    return [c.name for c in columns if c.kind not in USER_COLUMN_KINDS]


def user_features(columns: Sequence[ColumnDecl]) -> tuple[FeatureSpec, ...]:
    """Specs of a user record: the user id, then one feature per usable declared column.

    A `categorical` column becomes a string scalar `user.<column>` ("" when
    missing); a `numeric` one a float32 scalar `user.<column>` (0 when missing)
    plus its int64 mask `user.<column>_present`. Other kinds are not used
    (`unused_user_columns`).

    Args:
        columns: Declared user columns from `dataset.json` (`user_columns`).
    """
    specs = [FeatureSpec(USER_ID, "string", description="user id (pseudonymised when configured)")]
    for column in columns:
        name = user_feature(column.name)
        if column.kind == "categorical":
            specs.append(
                FeatureSpec(name, "string", description="declared categorical user column; '' if missing")
            )
        elif column.kind == "numeric":
            specs.append(
                FeatureSpec(name, "float32", description="declared numeric user column; 0 if missing")
            )
            specs.append(FeatureSpec(presence_feature(name), "int64", description="1 if present, 0 if empty"))
    return tuple(specs)


def interaction_features(history_length: int) -> tuple[FeatureSpec, ...]:
    """Specs of an interaction record: ids only; item features are joined in-graph.

    Args:
        history_length: H, the number of earlier items kept, most recent last,
            left-padded with `PADDING_ID`.
    """
    return (
        FeatureSpec(USER_ID, "string", description="user id (pseudonymised when configured)"),
        FeatureSpec(ITEM_ID, "string", description="the item interacted with"),
        FeatureSpec(HISTORY, "string", (history_length,), description="earlier item ids, most recent last"),
        FeatureSpec(TIMESTAMP, "int64", description="Unix seconds; 0 when the dataset has none"),
        FeatureSpec(RATING, "float32", description="explicit rating; 0 when absent"),
        FeatureSpec(WEIGHT, "float32", description="example weight; 1 by default"),
    )


def encode_example(specs: Sequence[FeatureSpec], values: Mapping[str, Any]) -> bytes:
    """Serialises one record as a tf.train.Example, checking every value against its spec.

    Raises:
        ValueError: naming the feature, if a value is missing, has the wrong
            shape, or a float is NaN or infinite.
    """
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for spec in specs:
        if spec.name not in values:
            raise ValueError(f"feature {spec.name!r} is missing")
        flat = _flatten(spec, values[spec.name])
        feature = example.features.feature[spec.name]
        if spec.dtype == "string":
            feature.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else v for v in flat)
        elif spec.dtype == "int64":
            feature.int64_list.value.extend(int(v) for v in flat)
        else:
            feature.float_list.value.extend(float(v) for v in flat)
    return example.SerializeToString()


def _flatten(spec: FeatureSpec, value: Any) -> list:
    if spec.dtype == "string":
        array = np.asarray(value, dtype=object)
    else:
        array = np.asarray(value, dtype=np.int64 if spec.dtype == "int64" else np.float32)
    if spec.varlen:
        if array.ndim != 1:
            raise ValueError(f"feature {spec.name!r}: expected a list, got shape {array.shape}")
    elif array.shape != spec.shape:
        raise ValueError(f"feature {spec.name!r}: expected shape {spec.shape}, got {array.shape}")
    if spec.dtype == "float32" and not np.all(np.isfinite(array)):
        raise ValueError(f"feature {spec.name!r}: NaN or infinite value")
    return array.reshape(-1).tolist()


def decode_example(specs: Sequence[FeatureSpec], serialized: bytes) -> dict[str, Any]:
    """Parses a serialised Example into numpy values; the inverse of `encode_example`.

    Strings decode to `str`; fixed-shape features to arrays of their shape.
    """
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(serialized)
    out: dict[str, Any] = {}
    for spec in specs:
        feature = example.features.feature[spec.name]
        if spec.dtype == "string":
            raw = [b.decode("utf-8") for b in feature.bytes_list.value]
            array = np.array(raw, dtype=object)
        elif spec.dtype == "int64":
            array = np.array(feature.int64_list.value, dtype=np.int64)
        else:
            array = np.array(feature.float_list.value, dtype=np.float32)
        if spec.varlen:
            out[spec.name] = array
        elif array.size != spec.size:
            raise ValueError(f"feature {spec.name!r}: expected {spec.size} values, got {array.size}")
        else:
            out[spec.name] = array.reshape(spec.shape) if spec.shape else array[0]
    return out


def parsing_spec(specs: Sequence[FeatureSpec]) -> dict[str, Any]:
    """The `tf.io.parse_example` spec for these features (varlen ones parse as ragged)."""
    import tensorflow as tf

    dtypes = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
    parsed: dict[str, Any] = {}
    for spec in specs:
        if spec.varlen:
            parsed[spec.name] = tf.io.RaggedFeature(dtypes[spec.dtype])
        else:
            parsed[spec.name] = tf.io.FixedLenFeature(spec.shape, dtypes[spec.dtype])
    return parsed
