"""Retrieval models: the item table, fusion layers, the two towers and the retrieval model."""

from tfrs_mm.models.attention_fusion import AttentionFusion
from tfrs_mm.models.concat_fusion import ConcatFusion
from tfrs_mm.models.gated_fusion import GatedFusion
from tfrs_mm.models.item_table import ItemTable, random_item_table
from tfrs_mm.models.item_tower import ItemTower
from tfrs_mm.models.query_tower import QueryTower
from tfrs_mm.models.retrieval import RetrievalModel, build_retrieval_model, sampling_probabilities
from tfrs_mm.models.user_features import UserFeatures, UserTable

__all__ = [
    "AttentionFusion",
    "ConcatFusion",
    "GatedFusion",
    "ItemTable",
    "ItemTower",
    "QueryTower",
    "RetrievalModel",
    "UserFeatures",
    "UserTable",
    "build_retrieval_model",
    "random_item_table",
    "sampling_probabilities",
]
