"""`build_index(data_dir, workdir)`: embed a catalog, choose and tune the index, write a version."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

import numpy as np

from tfrs_mm import __version__, fileio, schema
from tfrs_mm import config as config_lib
from tfrs_mm.indexing.catalog import CatalogVectors, embed_catalog, tuning_queries
from tfrs_mm.indexing.params import choose_params
from tfrs_mm.indexing.scann_layer import DISTANCE
from tfrs_mm.indexing.store import write_version
from tfrs_mm.indexing.tuner import TunedIndex, tune_index

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class IndexResult:
    """A written index version.

    Attributes:
        version: The integer version.
        path: Its directory, `WORKDIR/index/<version>`.
        tuned: The built index (a TFRS layer returning catalog rows), recall, latency and sweep.
        item_ids: [n] catalog ids, row order of the vectors.
        info: What `index.json` holds.
    """

    version: int
    path: str
    tuned: TunedIndex
    item_ids: list[str]
    info: dict[str, Any]


def build_index(
    data_dir: str,
    workdir: str,
    config: config_lib.Config | config_lib.IndexConfig | None = None,
    recall_target: float | None = None,
) -> IndexResult:
    """`tfrs-mm index`: indexes `data_dir`'s catalog with the towers trained in `workdir`.

    Every item is encoded by the trained item tower (warm-started over the
    dataset, so items added since training get content-only vectors); exact
    search is used below `exact_below` items, a tuned ScaNN index above; the
    result is written as a new version `workdir/index/<n>/`.

    Args:
        data_dir: Dataset directory (its catalog is indexed; train users give the tuning queries).
        workdir: Trained retrieval run (`towers.json`, `checkpoints/final`, `config.yaml`).
        config: Index settings (a whole `Config` or its `index` section); None reads the
            run's `config.yaml`.
        recall_target: Overrides `config.index.recall_target`.
    """
    index_config = _index_config(workdir, config)
    if recall_target is not None:
        index_config = dataclasses.replace(index_config, recall_target=recall_target)
    if not 0 < index_config.recall_target <= 1:
        raise ValueError(f"recall_target must be in (0, 1], got {index_config.recall_target}")
    manifest = schema.read_manifest(data_dir)
    catalog = embed_catalog(data_dir, workdir, manifest)
    params = choose_params(len(catalog.item_ids), index_config)
    queries, source = tuning_queries(
        catalog.model, data_dir, manifest, index_config.tune_queries, catalog.vectors
    )
    logger.info("indexing %d items (%s) with %d queries", len(catalog.item_ids), params, len(queries))
    tuned = tune_index(catalog.vectors, params, queries, index_config.recall_target)
    info = index_info(tuned, catalog, data_dir, manifest, query_source=source)
    version, path = write_version(workdir, catalog.item_ids, catalog.vectors, info)
    logger.info("wrote index version %d to %s", version, path)
    return IndexResult(version, path, tuned, catalog.item_ids, info)


def _index_config(workdir: str, config) -> config_lib.IndexConfig:
    if isinstance(config, config_lib.IndexConfig):
        return config
    if isinstance(config, config_lib.Config):
        return config.index
    if config is not None:
        raise TypeError(f"config must be a Config, an IndexConfig or None, got {type(config).__name__}")
    path = fileio.join(workdir, config_lib.CONFIG_FILE)
    return config_lib.load_config(path).index if fileio.exists(path) else config_lib.IndexConfig()


def index_info(
    tuned: TunedIndex,
    catalog: CatalogVectors,
    data_dir: str,
    manifest: schema.Manifest,
    query_source: str = "",
) -> dict[str, Any]:
    """The `index.json` of a version: params (the export's keys), measurements and provenance."""
    vectors = np.asarray(catalog.vectors)
    return {
        **tuned.params.to_dict(),
        "n": int(vectors.shape[0]),
        "dim": int(vectors.shape[1]),
        "distance_measure": DISTANCE,
        "recall_target": tuned.recall_target,
        "recall_at_k": round(tuned.recall, 6),
        "target_met": tuned.target_met,
        "tuning_queries": {"count": tuned.num_queries, "source": query_source},
        "latency": tuned.latency.to_dict(),
        "exact_latency": tuned.exact_latency.to_dict(),
        "tuning_curve": [point.to_dict() for point in tuned.curve],
        "new_items": len(catalog.new_items),
        "content_only_items": len(catalog.content_only_items),
        "removed_items": len(catalog.removed_items),
        "data_dir": data_dir,
        "manifest_created_by": manifest.created_by,
        "created_by": f"tfrs_mm {__version__}",
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
