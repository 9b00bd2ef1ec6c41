"""The item catalog as in-memory arrays: what the item tower looks content up from.

A loader (elsewhere) reads the item TFRecords into an `ItemTable`; the towers
only ever see arrays, so no Keras layer does file I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np


@dataclasses.dataclass
class ItemTable:
    """Per-item modality embeddings and presence masks, aligned by row.

    Attributes:
        item_ids: [num_items] str, the catalog; row `i` of every array belongs to `item_ids[i]`.
        embeddings: Modality name → [num_items, dim_m] float32 embeddings.
        present: Modality name → [num_items] bool, True where the item has that modality.
    """

    item_ids: np.ndarray
    embeddings: dict[str, np.ndarray]
    present: dict[str, np.ndarray]

    def __post_init__(self):
        self.item_ids = np.asarray(self.item_ids, dtype=object).astype(str)
        if self.item_ids.ndim != 1:
            raise ValueError(f"item_ids must be 1-D, got shape {self.item_ids.shape}")
        if len(set(self.item_ids.tolist())) != len(self.item_ids):
            raise ValueError("item_ids must be unique")
        if set(self.embeddings) != set(self.present):
            raise ValueError(
                f"embeddings {sorted(self.embeddings)} and present {sorted(self.present)} differ"
            )
        n = len(self.item_ids)
        self.embeddings = {m: np.asarray(e, dtype=np.float32) for m, e in self.embeddings.items()}
        self.present = {m: np.asarray(p).astype(bool) for m, p in self.present.items()}
        for m in self.embeddings:
            if self.embeddings[m].ndim != 2 or self.embeddings[m].shape[0] != n:
                raise ValueError(f"{m}: embeddings must be [{n}, dim], got {self.embeddings[m].shape}")
            if self.present[m].shape != (n,):
                raise ValueError(f"{m}: present must be [{n}], got {self.present[m].shape}")

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.embeddings)

    @property
    def embedding_dims(self) -> dict[str, int]:
        """Modality → embedding width."""
        return {m: int(e.shape[1]) for m, e in self.embeddings.items()}


def random_item_table(
    num_items: int,
    embedding_dims: Mapping[str, int],
    missing_rate: float = 0.2,
    seed: int = 0,
    item_ids: Sequence[str] | None = None,
) -> ItemTable:
    """A random `ItemTable` for tests and demos; missing modalities have zero embeddings.

    Args:
        num_items: Catalog size N.
        embedding_dims: Modality → width, e.g. `{"text": 8, "image": 6, "audio": 4}`.
        missing_rate: Probability that an item lacks a given modality.
        seed: NumPy seed.
        item_ids: Ids to use; defaults to `item_0 … item_{N-1}`.
    """
    rng = np.random.default_rng(seed)
    ids = list(item_ids) if item_ids is not None else [f"item_{i}" for i in range(num_items)]
    embeddings, present = {}, {}
    for modality, dim in embedding_dims.items():
        present[modality] = rng.random(num_items) >= missing_rate
        values = rng.normal(size=(num_items, dim)).astype(np.float32)
        embeddings[modality] = values * present[modality][:, None]
    return ItemTable(np.array(ids), embeddings, present)
