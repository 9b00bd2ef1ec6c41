"""The dataset schema shared by the Beam jobs and the trainer: feature specs and the manifest."""

from tfrs_mm.schema.features import (
    FeatureSpec,
    decode_example,
    embedding_feature,
    encode_example,
    interaction_features,
    item_features,
    parsing_spec,
    presence_feature,
    unused_user_columns,
    user_feature,
    user_features,
)
from tfrs_mm.schema.manifest import (
    MANIFEST_FILE,
    EncoderRecord,
    Manifest,
    SplitRecord,
    StageCount,
    VocabularyRecord,
    read_manifest,
    write_manifest,
)

__all__ = [
    "MANIFEST_FILE",
    "EncoderRecord",
    "FeatureSpec",
    "Manifest",
    "SplitRecord",
    "StageCount",
    "VocabularyRecord",
    "decode_example",
    "embedding_feature",
    "encode_example",
    "interaction_features",
    "item_features",
    "parsing_spec",
    "presence_feature",
    "read_manifest",
    "unused_user_columns",
    "user_feature",
    "user_features",
    "write_manifest",
]
