"""The index as a TFRS layer: `BruteForce` for exact search, `AnisotropicScaNN` for ScaNN.

TFRS's `ScaNN` layer builds its searcher with `score_ah(dimensions_per_block)`
only, which leaves ScaNN's `anisotropic_quantization_threshold` at NaN: the
codes are then plain (isotropic) product quantisation. `AnisotropicScaNN` is
that layer with its searcher built by `build_searcher`, which passes the
threshold; querying, saving and serving are TFRS's, unchanged. It therefore
needs the same `Scann>*` custom ops that stock TF Serving lacks
(TF_SERVING_REST.md §3.1); `BruteForce` uses core ops only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_mm.indexing.params import ANISOTROPIC_QUANTIZATION_THRESHOLD, DIMENSIONS_PER_BLOCK, IndexParams

TRAINING_ITERATIONS = 12  # TFRS's default k-means iterations for the partitioner
DISTANCE = "dot_product"  # tower outputs are unit vectors: dot product is cosine


def _scann_ops():
    try:
        from scann import scann_ops
    except ImportError as err:  # pragma: no cover - scann[tf] is in requirements/base.txt
        raise ImportError(
            "ScaNN indexes need the scann package built for this TensorFlow: pip install 'scann[tf]==1.4.2'"
        ) from err
    return scann_ops


def build_searcher(vectors, params: IndexParams, shared_name: str | None = None):
    """A ScaNN searcher (TF ops) over `vectors`, configured as `AnisotropicScaNN` configures it.

    Args:
        vectors: [n, d] float32 item vectors (array or tensor).
        params: ScaNN params; `num_leaves_to_search` None means 1 (queries can override it).
        shared_name: Resource name; a fresh one by default, so searchers never share state.

    Returns:
        A `scann_ops.ScannSearcher`; `search_batched_parallel(q, final_num_neighbors=k,
        leaves_to_search=L)` searches [B, d] queries with any number of leaves.
    """
    if params.exact:
        raise ValueError("exact params have no ScaNN searcher; use make_index_layer")
    builder = _scann_ops().builder(db=vectors, num_neighbors=params.k, distance_measure=DISTANCE)
    builder = builder.tree(
        num_leaves=params.num_leaves,
        num_leaves_to_search=params.num_leaves_to_search or 1,
        training_iterations=TRAINING_ITERATIONS,
    )
    builder = builder.score_ah(
        params.dimensions_per_block,
        anisotropic_quantization_threshold=params.anisotropic_quantization_threshold,
    )
    if params.reorder_k:
        builder = builder.reorder(params.reorder_k)
    return builder.build(shared_name=shared_name or f"tfrs_mm_index/{uuid.uuid4()}")


class AnisotropicScaNN(tfrs.layers.factorized_top_k.ScaNN):
    """TFRS's ScaNN retrieval layer with anisotropic quantisation (dot-product distance).

    Arguments are TFRS's `ScaNN` ones plus `anisotropic_quantization_threshold`.
    `index(candidates [n, d], identifiers [n] | None)` builds the searcher;
    calling the layer on [B, d] queries returns (scores [B, k], identifiers [B, k]).
    """

    def __init__(
        self,
        query_model: tf.keras.Model | None = None,
        k: int = 10,
        num_leaves: int = 100,
        num_leaves_to_search: int = 10,
        num_reordering_candidates: int | None = None,
        dimensions_per_block: int = DIMENSIONS_PER_BLOCK,
        anisotropic_quantization_threshold: float = ANISOTROPIC_QUANTIZATION_THRESHOLD,
        parallelize_batch_searches: bool = True,
        name: str | None = None,
    ):
        super().__init__(
            query_model=query_model,
            k=k,
            distance_measure=DISTANCE,
            num_leaves=num_leaves,
            num_leaves_to_search=num_leaves_to_search,
            training_iterations=TRAINING_ITERATIONS,
            dimensions_per_block=dimensions_per_block,
            num_reordering_candidates=num_reordering_candidates,
            parallelize_batch_searches=parallelize_batch_searches,
            name=name,
        )
        self.index_params = IndexParams(
            exact=False,
            k=k,
            num_leaves=num_leaves,
            num_leaves_to_search=num_leaves_to_search,
            reorder_k=num_reordering_candidates,
            dimensions_per_block=dimensions_per_block,
            anisotropic_quantization_threshold=anisotropic_quantization_threshold,
        )
        if not callable(getattr(self, "_build_searcher", None)):
            raise RuntimeError(
                "tensorflow-recommenders changed how its ScaNN layer builds searchers; "
                "AnisotropicScaNN supports tensorflow-recommenders 0.7.x"
            )
        # TFRS's index() calls self._build_searcher(candidates): swap in ours, which passes the threshold.
        self._build_searcher = self._build_anisotropic_searcher

    def _build_anisotropic_searcher(self, candidates):
        return build_searcher(candidates, self.index_params, shared_name=f"{self.name}/{uuid.uuid4()}")


def make_index_layer(
    params: IndexParams,
    vectors: np.ndarray,
    identifiers: Sequence[str] | np.ndarray | None = None,
    query_model: tf.keras.Model | None = None,
) -> tfrs.layers.factorized_top_k.TopK:
    """The TFRS top-k layer `params` describe, indexed over `vectors`.

    Args:
        params: From `choose_params` (tuned) or `IndexParams.from_dict(index.json)`.
        vectors: [n, d] float32 item vectors.
        identifiers: [n] ids to return; None returns item rows (int32).
        query_model: Optional model mapping query features to [B, d] vectors first.

    Returns:
        `BruteForce` or `AnisotropicScaNN`, indexed; calling it on [B, d] returns
        (scores [B, k], identifiers [B, k]).
    """
    if params.exact:
        layer = tfrs.layers.factorized_top_k.BruteForce(query_model=query_model, k=params.k)
    else:
        if params.num_leaves_to_search is None:
            raise ValueError("num_leaves_to_search is unset: tune the params first (tune_index)")
        layer = AnisotropicScaNN(
            query_model=query_model,
            k=params.k,
            num_leaves=params.num_leaves,
            num_leaves_to_search=params.num_leaves_to_search,
            num_reordering_candidates=params.reorder_k,
            dimensions_per_block=params.dimensions_per_block,
            anisotropic_quantization_threshold=params.anisotropic_quantization_threshold,
        )
    ids = None if identifiers is None else tf.constant(np.asarray(identifiers))
    return layer.index(tf.constant(np.asarray(vectors, np.float32)), ids)
