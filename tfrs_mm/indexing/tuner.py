"""Tuning `num_leaves_to_search` against exact search, and measuring latency.

The sweep trains one ScaNN searcher and queries it with increasing
`leaves_to_search` (doubling from 1 until recall@k against numpy exact search
meets the target, then bisecting down to the smallest setting that does), so
every point of the trade-off curve shares the same partitions and codes. The
chosen setting is then built as the real TFRS layer and measured again through
its ordinary call path: that layer is the returned index and its numbers are
the ones recorded. ScaNN's k-means training is not deterministic, so a rebuild
can land slightly under the sweep's recall; the leaves are raised until the
built layer itself meets the target.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_mm.indexing.exact import exact_top_k, recall_at_k
from tfrs_mm.indexing.params import IndexParams
from tfrs_mm.indexing.scann_layer import build_searcher, make_index_layer

logger = logging.getLogger(__name__)

LATENCY_QUERIES = 200  # single-query timings per setting: enough for a p99 on a busy machine
WARMUP_CALLS = 10
BATCH_SIZE = 128  # batched throughput is measured at this batch size
REBUILD_ATTEMPTS = 3  # final builds tried when a rebuild lands under the target


@dataclasses.dataclass(frozen=True)
class Latency:
    """Query cost on this machine: single-query percentiles and batched throughput."""

    single_p50_ms: float
    single_p99_ms: float
    batched_queries_per_second: float
    batch_size: int

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TuningPoint:
    """One sweep setting: recall@k against exact search and what it costs."""

    num_leaves_to_search: int
    recall: float
    latency: Latency

    def to_dict(self) -> dict[str, Any]:
        return {"num_leaves_to_search": self.num_leaves_to_search, "recall_at_k": self.recall} | (
            self.latency.to_dict()
        )


@dataclasses.dataclass
class TunedIndex:
    """A built index and how it was chosen.

    Attributes:
        params: The final params (`num_leaves_to_search` set for ScaNN).
        index: The TFRS layer; called on [B, d] queries it returns (scores [B, k], rows [B, k]).
        recall: recall@k of `index` against exact search over the tuning queries.
        recall_target: The target the tuner aimed at.
        num_queries: Tuning queries used.
        latency: `index`'s query cost.
        exact_latency: Brute force's cost on the same vectors, for comparison.
        curve: The sweep, by increasing `num_leaves_to_search` (empty for exact search).
    """

    params: IndexParams
    index: Any
    recall: float
    recall_target: float
    num_queries: int
    latency: Latency
    exact_latency: Latency
    curve: list[TuningPoint]

    @property
    def target_met(self) -> bool:
        return self.recall >= self.recall_target


def search_function(layer, dim: int) -> Callable[[np.ndarray], tf.Tensor]:
    """[B, d] queries → [B, k] results of a TFRS top-k layer, as a traced graph (as served)."""
    return tf.function(lambda q: layer(q)[1], input_signature=[tf.TensorSpec([None, dim], tf.float32)])


def run_queries(search: Callable, queries: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Results of `search` for every query, in batches: [Q, k'], padded with -1.

    ScaNN returns a batch only as wide as the most neighbours any of its queries found: with few
    leaves searched in a small catalog, one batch can come back narrower than another.
    """
    parts = [search(queries[i : i + batch_size]).numpy() for i in range(0, len(queries), batch_size)]
    width = max((part.shape[1] for part in parts), default=0)
    return np.concatenate([np.pad(p, [(0, 0), (0, width - p.shape[1])], constant_values=-1) for p in parts])


def measure_latency(
    search: Callable, queries: np.ndarray, single: int = LATENCY_QUERIES, batch_size: int = BATCH_SIZE
) -> Latency:
    """Single-query p50/p99 over up to `single` queries, and batched queries/s (best of two passes)."""
    for row in queries[:WARMUP_CALLS]:  # traces, and wakes thread pools, before anything is timed
        search(row[None, :])
    search(queries[:batch_size])
    times = []
    for row in queries[:single]:
        start = time.perf_counter()
        search(row[None, :])
        times.append(time.perf_counter() - start)
    passes = []
    for _ in range(2):
        start = time.perf_counter()
        run_queries(search, queries, batch_size)
        passes.append(time.perf_counter() - start)
    return Latency(
        single_p50_ms=round(float(np.percentile(times, 50)) * 1e3, 4),
        single_p99_ms=round(float(np.percentile(times, 99)) * 1e3, 4),
        batched_queries_per_second=round(len(queries) / max(min(passes), 1e-9), 1),
        batch_size=batch_size,
    )


def tune_index(
    vectors: np.ndarray, params: IndexParams, queries: np.ndarray, recall_target: float
) -> TunedIndex:
    """Builds the index `params` describe, tuning `num_leaves_to_search` when it is None.

    Args:
        vectors: [n, d] float32 item vectors.
        params: From `choose_params`; a set `num_leaves_to_search` is used as is.
        queries: [Q, d] float32 query vectors (Q ≥ 1) to measure recall and latency with.
        recall_target: recall@k against exact search to reach, in (0, 1].

    Returns:
        The built index, its recall and latency, brute force's latency and the sweep.
    """
    if not 0 < recall_target <= 1:
        raise ValueError(f"recall_target must be in (0, 1], got {recall_target}")
    vectors = np.ascontiguousarray(vectors, np.float32)
    queries = np.ascontiguousarray(queries, np.float32)
    if len(queries) == 0:
        raise ValueError("tuning needs at least one query vector")
    truth = exact_top_k(queries, vectors, params.k)
    brute_force = make_index_layer(IndexParams(exact=True, k=params.k), vectors)
    brute_search = search_function(brute_force, vectors.shape[1])
    exact_latency = measure_latency(brute_search, queries)
    if params.exact:
        recall = recall_at_k(run_queries(brute_search, queries), truth)
        latency = exact_latency
        return TunedIndex(params, brute_force, recall, recall_target, len(queries), latency, latency, [])
    curve, leaves = [], params.num_leaves_to_search
    if leaves is None:
        curve, leaves = sweep_leaves(vectors, params, queries, truth, recall_target)
    final = _build_final(vectors, params, leaves, queries, truth, recall_target, fixed=not curve)
    index, params, recall, search = final
    latency = measure_latency(search, queries)
    result = TunedIndex(params, index, recall, recall_target, len(queries), latency, exact_latency, curve)
    if not result.target_met:
        logger.warning(
            "recall@%d %.4f misses the target %.4f with %d of %d leaves searched: raise index.reorder_k, "
            "or index.exact_below above %d for exact search",
            params.k, recall, recall_target, params.num_leaves_to_search, params.num_leaves, len(vectors),
        )  # fmt: skip
    return result


def sweep_leaves(
    vectors: np.ndarray, params: IndexParams, queries: np.ndarray, truth: np.ndarray, recall_target: float
) -> tuple[list[TuningPoint], int]:
    """Measures settings of one searcher until the smallest `num_leaves_to_search` meeting the target.

    Args:
        vectors: [n, d] float32 item vectors.
        params: ScaNN params (`num_leaves_to_search` is ignored).
        queries: [Q, d] float32 query vectors.
        truth: [Q, k] exact top-k rows of the queries.
        recall_target: recall@k to reach.

    Returns:
        (the measured points by increasing leaves, the chosen leaves: the smallest
        meeting the target, or all leaves when none does).
    """
    searcher = build_searcher(vectors, params)
    signature = [tf.TensorSpec([None, vectors.shape[1]], tf.float32), tf.TensorSpec([], tf.int32)]

    @tf.function(input_signature=signature)
    def search(batch, leaves):
        found = searcher.search_batched_parallel(batch, final_num_neighbors=params.k, leaves_to_search=leaves)
        return found.indices

    points: dict[int, TuningPoint] = {}

    def meets_target(leaves: int) -> bool:
        if leaves not in points:
            fixed = lambda batch: search(batch, tf.constant(leaves, tf.int32))  # noqa: E731
            recall = recall_at_k(run_queries(fixed, queries), truth)
            points[leaves] = TuningPoint(leaves, recall, measure_latency(fixed, queries))
            logger.info("num_leaves_to_search %d: recall@%d %.4f", leaves, params.k, recall)
        return points[leaves].recall >= recall_target

    chosen = smallest_passing(meets_target, params.num_leaves)
    curve = [points[leaves] for leaves in sorted(points)]
    return curve, chosen if chosen is not None else params.num_leaves


def smallest_passing(passes: Callable[[int], bool], upper: int) -> int | None:
    """The smallest x in [1, upper] with `passes(x)`, for monotone `passes`: doubling, then bisection."""
    failing, x = 0, 1
    while not passes(x):
        failing = x
        if x >= upper:
            return None
        x = min(2 * x, upper)
    passing = x
    while passing - failing > 1:
        middle = (failing + passing) // 2
        if passes(middle):
            passing = middle
        else:
            failing = middle
    return passing


def _build_final(vectors, params: IndexParams, leaves: int, queries, truth, recall_target: float, fixed):
    """(layer, params, recall, search) of the TFRS layer built with `leaves`, raised on a short rebuild."""
    for _ in range(REBUILD_ATTEMPTS):
        final = dataclasses.replace(params, num_leaves_to_search=leaves)
        index = make_index_layer(final, vectors)
        search = search_function(index, vectors.shape[1])
        recall = recall_at_k(run_queries(search, queries), truth)
        if fixed or recall >= recall_target or leaves >= params.num_leaves:
            break
        logger.info("the rebuilt index reached recall %.4f with %d leaves: raising them", recall, leaves)
        leaves = min(params.num_leaves, max(leaves + 1, math.ceil(leaves * 1.25)))
    return index, final, recall, search
