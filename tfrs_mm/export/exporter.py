"""`export_all(data_dir, workdir, out_dir)`: every SavedModel of a trained workdir, in TF Serving's layout.

Writes `out_dir/<model>/<version>/` for `retrieval` (exact top-k, core ops),
`retrieval_scann` (the index stage's tuned ScaNN index, custom ops), `ranking`
and `recommender` (retrieval + ranking in one graph, core ops), each with the
resolved config, the dataset manifest and a README as assets and warmup
requests in `assets.extra/`, then `out_dir/models.config` for stock TF Serving.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

from tfrs_mm import config as config_lib
from tfrs_mm import fileio, schema
from tfrs_mm.export import layout, warmup
from tfrs_mm.export.readme import describe_signature, readme_text
from tfrs_mm.schema import features as F

logger = logging.getLogger(__name__)

RETRIEVAL, RETRIEVAL_SCANN, RANKING, RECOMMENDER = "retrieval", "retrieval_scann", "ranking", "recommender"
EXPORTS = (RETRIEVAL, RETRIEVAL_SCANN, RANKING, RECOMMENDER)
CUSTOM_OPS_CONFIG_FILE = "models_scann.config"  # every export, for a TF Serving with the ScaNN ops
TOKEN_NAMES_FILE = "token_names.txt"


@dataclasses.dataclass
class ExportContext:
    """What every export of one run shares."""

    data_dir: str
    workdir: str
    out_dir: str
    config: config_lib.Config
    staging: str  # local scratch directory for asset files
    queries: list  # (user_id, history) pairs of real users, for warmup requests
    catalog: list[str]
    vectors: Any  # [N, D] item vectors of `catalog` from the retrieval item tower


def export_all(
    data_dir: str,
    workdir: str,
    out_dir: str = "saved_models",
    *,
    index_dir: str | None = None,
    config: config_lib.Config | None = None,
) -> dict[str, Any]:
    """Exports a trained workdir as SavedModels in TF Serving's layout; returns a summary.

    Args:
        data_dir: The dataset directory the models were trained on (its manifest travels as an asset).
        workdir: A `tfrs-mm train retrieval` workdir; its `ranking/` (from `tfrs-mm train ranking`)
            adds the `ranking` and `recommender` exports, which are skipped without it.
        out_dir: Where `<model>/<version>/` and `models.config` go.
        index_dir: The index stage's output (`item_ids.txt`, `vectors.npy`, `index.json`) for
            `retrieval_scann`; None indexes the model's own item vectors, tuned as `tfrs-mm index` tunes.
        config: Overrides `workdir/config.yaml` (export sizes and warmup count come from it).

    Returns:
        `{"out_dir", "models_config", "models_config_custom_ops", "models": {name: {"version",
        "path", "signatures", "k", "core_ops_only", "custom_ops", ...}}, "skipped": {name: reason}}`.
    """
    from tfrs_mm.training.warm_start import load_towers_model

    config = config or config_lib.load_config(fileio.join(workdir, config_lib.CONFIG_FILE))
    retrieval = load_towers_model(workdir)
    catalog = list(retrieval.item_tower.catalog_ids)
    summary: dict[str, Any] = {"out_dir": layout.base_path_of(out_dir), "models": {}, "skipped": {}}
    staging = tempfile.mkdtemp(prefix="tfrs_mm_export_")
    try:
        context = ExportContext(
            data_dir=data_dir,
            workdir=workdir,
            out_dir=out_dir,
            config=config,
            staging=staging,
            queries=warmup.sample_queries(data_dir, config.export.warmup_requests),
            catalog=catalog,
            vectors=retrieval.encode_catalog(catalog),
        )
        _export_retrievals(context, retrieval, index_dir, summary)
        _export_rankers(context, retrieval, summary)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_configs(out_dir, summary)
    return summary


def _export_retrievals(context: ExportContext, retrieval, index_dir: str | None, summary: dict) -> None:
    from tfrs_mm.export.modules import ExactTopK, RetrievalModule

    top_k = ExactTopK(context.catalog, context.vectors, context.config.export.retrieval_k)
    module = RetrievalModule(retrieval.scoring_query_tower(), top_k)
    summary["models"][RETRIEVAL] = export_module(
        context, RETRIEVAL, module, warmup.query_requests(context.queries, _warmup_count(context)), k=top_k.k
    )
    try:
        summary["models"][RETRIEVAL_SCANN] = _export_scann(context, retrieval, index_dir)
    except ImportError as e:
        logger.warning("retrieval_scann skipped: %s", e)
        summary["skipped"][RETRIEVAL_SCANN] = str(e)


def _export_scann(context: ExportContext, retrieval, index_dir: str | None) -> dict:
    """`retrieval_scann`: the index `index_dir` records, or one tuned here as `tfrs-mm index` would."""
    from tfrs_mm.export import scann_index
    from tfrs_mm.export.modules import RetrievalModule

    scann_index.require_scann()
    if index_dir:
        ids, vectors, params, raw = scann_index.read_index_dir(index_dir)
        _check_index(ids, vectors, context.catalog, retrieval.scoring_dim, index_dir)
        index_info = {"index_dir": index_dir, **raw}
    else:
        ids, vectors = context.catalog, context.vectors
        params, index_info = scann_index.tuned_params(
            vectors, context.config.index, lambda: _tuning_queries(context, retrieval)
        )
    k = context.config.export.retrieval_k
    top_k, served = scann_index.scann_top_k(ids, vectors, params, k, _history_length(context))
    module = RetrievalModule(retrieval.scoring_query_tower(), top_k)
    requests = warmup.query_requests(context.queries, _warmup_count(context))
    note = scann_index.SCANN_OPS_NOTE
    entry = export_module(
        context,
        RETRIEVAL_SCANN,
        module,
        requests,
        k=top_k.k,
        note=note,
        namespace_whitelist=scann_index.NAMESPACE_WHITELIST,
    )
    return {**entry, "scann_params": served.to_dict(), "index": index_info}


def _tuning_queries(context: ExportContext, retrieval):
    """What `tfrs-mm index` tunes with: train users' query vectors, else a sample of item vectors."""
    from tfrs_mm.indexing import tuning_queries

    manifest = schema.read_manifest(context.data_dir)
    count = context.config.index.tune_queries
    return tuning_queries(retrieval, context.data_dir, manifest, count, context.vectors)


def _check_index(ids: Sequence[str], vectors, catalog: Sequence[str], dim: int, index_dir: str) -> None:
    if vectors.shape[1] != dim:
        raise ValueError(
            f"{index_dir}: vectors have width {vectors.shape[1]} but the query tower gives {dim}: "
            "the index was built from another model; run `tfrs-mm index` again"
        )
    if set(ids) != set(catalog):
        logger.warning(
            "%s indexes %d items, the model's catalog has %d (%d in common): is the index stale?",
            index_dir,
            len(ids),
            len(catalog),
            len(set(ids) & set(catalog)),
        )


def _export_rankers(context: ExportContext, retrieval, summary: dict) -> None:
    from tfrs_mm.export.modules import ExactTopK, RankingModule, RecommenderModule
    from tfrs_mm.training.ranking import load_ranker

    try:
        ranker = load_ranker(context.workdir)
    except FileNotFoundError as e:
        reason = f"{e}; the ranking and recommender exports are skipped"
        logger.warning(reason)
        summary["skipped"].update({RANKING: reason, RECOMMENDER: reason})
        return
    export = context.config.export
    tokens = list(ranker.item_tower.token_names)
    extra = {"token_names": tokens}
    candidates = min(export.retrieval_k, len(context.catalog))
    requests = warmup.ranking_requests(context.queries, _warmup_count(context), context.catalog, candidates)
    summary["models"][RANKING] = {
        **export_module(context, RANKING, RankingModule(ranker), requests, k=None, ranker=ranker),
        **extra,
    }
    top_k = ExactTopK(context.catalog, context.vectors, export.retrieval_k)
    module = RecommenderModule(retrieval.scoring_query_tower(), top_k, ranker, export.final_k)
    requests = warmup.query_requests(context.queries, _warmup_count(context))
    entry = export_module(context, RECOMMENDER, module, requests, k=module.final_k, ranker=ranker)
    summary["models"][RECOMMENDER] = {**entry, "retrieval_k": top_k.k, **extra}


def export_module(
    context: ExportContext,
    name: str,
    module,
    requests: Sequence[dict],
    *,
    k: int | None,
    note: str = "",
    namespace_whitelist: Sequence[str] = (),
    ranker=None,
) -> dict[str, Any]:
    """Saves `module` (a `serve` tf.function) as the next version of `out_dir/name`; returns its entry."""
    import tensorflow as tf

    signatures = {"serving_default": describe_signature(module.serve)}
    module.assets = _write_assets(context, name, signatures, k, note, ranker)
    options = tf.saved_model.SaveOptions(namespace_whitelist=list(namespace_whitelist) or None)
    found: dict[str, list[str]] = {}

    def write(tmp: str) -> None:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve}, options=options)
        if requests:
            warmup.write_warmup(tmp, name, "serving_default", requests)
        found["custom_ops"] = layout.custom_ops(layout.graph_ops(tmp))

    version, path = layout.write_version(fileio.join(context.out_dir, name), write)
    logger.info("exported %s version %d to %s", name, version, path)
    return {
        "version": version,
        "path": layout.base_path_of(path),
        "signatures": signatures,
        "k": k,
        "core_ops_only": not found["custom_ops"],
        "custom_ops": found["custom_ops"],
        "warmup_requests": len(requests),
        **({"note": note} if note else {}),
    }


def _write_assets(context: ExportContext, name: str, signatures: dict, k, note: str, ranker) -> dict:
    """Writes this export's asset files to the staging dir; returns {file name: tf.saved_model.Asset}."""
    import tensorflow as tf

    directory = fileio.join(context.staging, name)
    fileio.makedirs(directory)
    config_lib.save_config(context.config, directory)
    _copy(fileio.join(context.data_dir, schema.MANIFEST_FILE), fileio.join(directory, schema.MANIFEST_FILE))
    files = [config_lib.CONFIG_FILE, schema.MANIFEST_FILE, "README.md"]
    if ranker is not None:
        ranking_config = fileio.join(context.workdir, "ranking", config_lib.CONFIG_FILE)
        if fileio.exists(ranking_config):
            _copy(ranking_config, fileio.join(directory, "ranking_config.yaml"))
            files.append("ranking_config.yaml")
        _write_text(fileio.join(directory, TOKEN_NAMES_FILE), "\n".join(ranker.item_tower.token_names) + "\n")
        files.append(TOKEN_NAMES_FILE)
    readme = readme_text(name, signatures, k=k, note=note, workdir=context.workdir, data_dir=context.data_dir)
    _write_text(fileio.join(directory, "README.md"), readme)
    return {f: tf.saved_model.Asset(fileio.join(directory, f)) for f in files}


def _copy(source: str, target: str) -> None:
    with fileio.open_file(source, "rb") as src, fileio.open_file(target, "wb") as dst:
        dst.write(src.read())


def _write_text(path: str, text: str) -> None:
    with fileio.open_file(path, "w") as f:
        f.write(text)


def _warmup_count(context: ExportContext) -> int:
    return max(0, min(context.config.export.warmup_requests, warmup.MAX_WARMUP_RECORDS))


def _history_length(context: ExportContext) -> int:
    """H of the dataset's `history` feature (the config's when the manifest does not say)."""
    manifest = schema.read_manifest(context.data_dir)
    for spec in manifest.interaction_features:
        if spec.name == F.HISTORY and spec.shape:
            return int(spec.shape[0])
    return context.config.data.history_length


def _write_configs(out_dir: str, summary: dict) -> None:
    models = summary["models"]
    core = {n: fileio.join(out_dir, n) for n, e in models.items() if e["core_ops_only"]}
    summary["models_config"] = layout.write_models_config(out_dir, core)
    summary["models_config_custom_ops"] = None
    if len(core) < len(models):
        # Stock TF Serving replays warmup at load; a custom-op model would fail it and stop the
        # server from starting, so such exports go in a separate config for a server that has the ops.
        every = {n: fileio.join(out_dir, n) for n in models}
        path = layout.write_models_config(out_dir, every, CUSTOM_OPS_CONFIG_FILE)
        summary["models_config_custom_ops"] = path
