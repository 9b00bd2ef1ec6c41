"""The retrieval index: exact search for small catalogs, ScaNN tuned against exact search above.

    result = build_index(DATA, WORK)            # embeds, chooses, tunes, writes WORK/index/<v>/
    print(format_index_summary(result))
    plot_tradeoff(result, "tradeoff.png")

`choose_params` picks brute force below `index.exact_below` items, else ScaNN
with about √n leaves, anisotropic hashing and 4k re-scored candidates;
`tune_index` raises `num_leaves_to_search` until recall@k against numpy exact
search meets the target, measuring latency at every setting. A version holds
`item_ids.txt`, `vectors.npy` and `index.json` (`read_version`), and
`make_index_layer(IndexParams.from_dict(info), vectors, item_ids)` rebuilds the
TFRS layer from them.
"""

from tfrs_mm.indexing.build import IndexResult, build_index, index_info
from tfrs_mm.indexing.catalog import CatalogVectors, embed_catalog, tuning_queries
from tfrs_mm.indexing.exact import exact_top_k, recall_at_k
from tfrs_mm.indexing.params import IndexParams, choose_params
from tfrs_mm.indexing.scann_layer import AnisotropicScaNN, build_searcher, make_index_layer
from tfrs_mm.indexing.store import (
    INDEX_DIR,
    INDEX_JSON,
    ITEM_IDS_FILE,
    VECTORS_FILE,
    latest_version_dir,
    list_versions,
    read_version,
    write_version,
)
from tfrs_mm.indexing.summary import format_index_summary, plot_tradeoff
from tfrs_mm.indexing.tuner import Latency, TunedIndex, TuningPoint, measure_latency, tune_index

__all__ = [
    "INDEX_DIR",
    "INDEX_JSON",
    "ITEM_IDS_FILE",
    "VECTORS_FILE",
    "AnisotropicScaNN",
    "CatalogVectors",
    "IndexParams",
    "IndexResult",
    "Latency",
    "TunedIndex",
    "TuningPoint",
    "build_index",
    "build_searcher",
    "choose_params",
    "embed_catalog",
    "exact_top_k",
    "format_index_summary",
    "index_info",
    "latest_version_dir",
    "list_versions",
    "make_index_layer",
    "measure_latency",
    "plot_tradeoff",
    "read_version",
    "recall_at_k",
    "tune_index",
    "tuning_queries",
    "write_version",
]
