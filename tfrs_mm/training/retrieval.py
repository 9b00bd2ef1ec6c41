"""`train_and_evaluate(config, data_dir, workdir)` for the two-tower retrieval model.

The workdir gets: `config.yaml` (the resolved config), `backup/` (a
BackupAndRestore checkpoint, so a run killed mid-epoch resumes where it
stopped when the same command runs again), `checkpoints/final` (weights, for
evaluation, export and warm starts; with `model.popularity_prior`, the prior's weight chosen on
the valid split after training), `towers.json` (the towers' architecture and
vocabularies, so the run can be rebuilt without its dataset), `logs/`
(TensorBoard) and `metrics.json`.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np

from tfrs_mm import config as config_lib
from tfrs_mm import fileio, schema
from tfrs_mm.training import data as data_lib
from tfrs_mm.training import numeric_checks
from tfrs_mm.training.early_stopping import best_epoch_callback
from tfrs_mm.training.history_sampler import TrainSetHistories
from tfrs_mm.training.prior_tuning import tune_popularity_prior
from tfrs_mm.training.resumable import fit_resumable
from tfrs_mm.training.strategy import is_chief, make_strategy
from tfrs_mm.training.warm_start import FINAL_CHECKPOINT, build_towers, save_towers, warm_start

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


@dataclasses.dataclass
class RetrievalData:
    """What the model is built from: the catalog table and the training vocabularies."""

    table: object  # tfrs_mm.models.ItemTable
    train_item_ids: list[str]
    train_user_ids: list[str]
    frequencies: np.ndarray  # [num_items] train counts aligned to table.item_ids
    user_table: object = None  # tfrs_mm.models.UserTable, or None when the dataset has no users.csv


def load_retrieval_data(
    data_dir: str, manifest: schema.Manifest, modalities: tuple[str, ...]
) -> RetrievalData:
    """Reads the item table (only `modalities`), train ids and frequencies of a dataset directory."""
    from tfrs_mm.models import ItemTable

    records = data_lib.read_item_records(data_dir, manifest)
    embeddings = [schema.features.embedding_feature(m) for m in modalities]
    source = f"items records ({manifest.files['items']})"
    numeric_checks.check_finite_records(records, embeddings, schema.features.ITEM_ID, source)
    table = ItemTable(
        item_ids=records[schema.features.ITEM_ID],
        embeddings={m: records[f"{m}_embedding"] for m in modalities},
        present={m: records[f"{m}_present"] for m in modalities},
    )
    counts = data_lib.read_item_frequencies(data_dir, manifest)
    frequencies = np.array([counts.get(i, 0) for i in table.item_ids], dtype=np.float64)
    train_items = [i for i in data_lib.read_vocabulary(data_dir, manifest, "item_id") if counts.get(i, 0) > 0]
    users = data_lib.read_vocabulary(data_dir, manifest, "user_id")
    user_table = data_lib.read_user_table(data_dir, manifest)
    return RetrievalData(table, train_items, users, frequencies, user_table)


def effective_model_config(
    model: config_lib.ModelConfig, manifest: schema.Manifest
) -> config_lib.ModelConfig:
    """The model config restricted to modalities the dataset has (logged when some are missing)."""
    available = [m for m in model.modalities if m in manifest.embedding_dims]
    missing = sorted(set(model.modalities) - set(available))
    if missing:
        logger.info("dataset has no %s embeddings: the model uses %s", missing, available)
    return dataclasses.replace(model, modalities=tuple(available))


def build_retrieval_model(model_config: config_lib.ModelConfig, data: RetrievalData):
    """The two-tower model over `data`'s catalog and training vocabularies."""
    from tfrs_mm.models import build_retrieval_model as build

    return build(
        data.table,
        data.train_item_ids,
        data.train_user_ids,
        model_config,
        data.frequencies,
        user_table=data.user_table,
    )


def make_optimizer(train: config_lib.TrainConfig):
    import tensorflow as tf

    optimizers = {
        "adam": tf.keras.optimizers.Adam,
        "adagrad": tf.keras.optimizers.Adagrad,
        "sgd": tf.keras.optimizers.SGD,
    }
    return optimizers[train.optimizer](learning_rate=train.learning_rate)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow: the same command then trains the same model."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)


def train_retrieval(
    config: config_lib.Config, data_dir: str, workdir: str, verbose: bool = True
) -> tuple[object, RetrievalData, dict]:
    """Trains the two-tower model; returns (model, data, {history, timing}).

    The strategy is created first, before any TensorFlow op, so logical CPU
    devices can still be configured.
    """
    strategy = make_strategy(config.train)
    logger.info("training with %s over %d replicas", type(strategy).__name__, strategy.num_replicas_in_sync)
    seed_everything(config.train.seed)
    manifest = schema.read_manifest(data_dir)
    model_config = effective_model_config(config.model, manifest)
    if is_chief():
        config_lib.save_config(dataclasses.replace(config, model=model_config), workdir)
    data = load_retrieval_data(data_dir, manifest, model_config.modalities)
    with strategy.scope():
        model = build_retrieval_model(model_config, data)
        build_towers(model)
        if config.train.warm_start_from:
            warm_start(model, config.train.warm_start_from)
        model.compile(optimizer=make_optimizer(config.train))
    valid_ds = data_lib.interaction_dataset(data_dir, manifest, "valid", config.train.batch_size)
    steps = data_lib.steps_per_epoch(manifest, "train", config.train.batch_size)
    sampler = history_sampler(config.train, data_dir, manifest)
    selection = best_epoch(config.train, model, data, data_dir, manifest)
    history, fit_info = fit_resumable(
        model,
        lambda start: train_batches(config.train, data_dir, manifest, start, sampler),
        steps,
        config.train,
        workdir,
        validation_data=valid_ds,
        verbose=verbose,
        extra_callbacks=(selection,) if selection else (),
    )
    if selection:
        fit_info["best_epoch"] = selection.best_epoch + 1
    if model.popularity_prior is not None:
        fit_info["popularity_prior"] = choose_prior(config, model, data, data_dir, manifest)
    if is_chief():
        model.save_weights(fileio.join(workdir, FINAL_CHECKPOINT))
        save_towers(model, workdir)
    return (
        model,
        data,
        {"history": history_lists(history), **fit_info, **throughput(fit_info, steps, manifest)},
    )


def choose_prior(config: config_lib.Config, model, data: RetrievalData, data_dir: str, manifest) -> dict:
    """Sets the popularity prior's weight from the valid split (`prior_tuning`); returns what it measured."""
    alphas, k = config.model.popularity_prior_alphas, config.train.early_stopping_k
    return tune_popularity_prior(model, data, data_dir, manifest, alphas, k, eval_queries(config.train))


def best_epoch(train: config_lib.TrainConfig, model, data: RetrievalData, data_dir: str, manifest):
    """The valid-recall early-stopping callback when `train.early_stopping_patience` > 0, else None."""
    if train.early_stopping_patience <= 0:
        return None
    k, patience = train.early_stopping_k, train.early_stopping_patience
    return best_epoch_callback(model, data, data_dir, manifest, k, patience, eval_queries(train))


def history_sampler(train: config_lib.TrainConfig, data_dir: str, manifest: schema.Manifest):
    """The `TrainSetHistories` of the train split when `train.history_source` asks for it, else None."""
    if train.history_source != "train_set":
        return None
    return TrainSetHistories.from_dataset(data_dir, manifest, train.history_sample_length)


def train_batches(
    train: config_lib.TrainConfig, data_dir: str, manifest: schema.Manifest, start, sampler=None
):
    """The train split's batches from (epoch, step) `start` on, shuffled per epoch by `train.seed`."""
    return data_lib.train_stream(
        data_dir,
        manifest,
        train.batch_size,
        epochs=train.epochs,
        seed=train.seed,
        shuffle_buffer=train.shuffle_buffer,
        cache=train.cache_dataset,
        start=start,
        history_sampler=sampler,
    )


def history_lists(history) -> dict[str, list[float]]:
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


def throughput(fit_info: dict, steps_per_epoch: int, manifest: schema.Manifest) -> dict:
    """Train examples per second of this process's steps (a resumed run ran only some of them)."""
    examples = manifest.split.counts.get("train", 0) * fit_info["steps_run"] / max(steps_per_epoch, 1)
    return {"examples_per_second": round(examples / max(fit_info["train_seconds"], 1e-9), 1)}


def write_metrics(workdir: str, metrics: dict) -> str:
    """Writes `metrics.json` into the workdir."""
    fileio.makedirs(workdir)
    path = fileio.join(workdir, METRICS_FILE)
    with fileio.open_file(path, "w") as f:
        f.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def eval_queries(train: config_lib.TrainConfig) -> str:
    """Evaluation query histories that match training's: the user's known items for `train_set`."""
    return "known" if train.history_source == "train_set" else "example"


def evaluate_trained(
    model,
    data: RetrievalData,
    data_dir: str,
    manifest: schema.Manifest,
    ablation: bool = True,
    queries: str = "example",
):
    """Test-split metrics of a trained model, and the per-modality ablation (`queries`: `load_eval_split`)."""
    from tfrs_mm.evaluation import retrieval_eval

    catalog = list(data.table.item_ids)
    with numeric_checks.nonfinite_inputs_by_name():
        truth = retrieval_eval.load_eval_split(data_dir, manifest, catalog, "test", queries)
    groups = retrieval_eval.read_user_groups(manifest.source.get("raw_dir", ""), truth.users)
    metrics = retrieval_eval.evaluate_model(model, catalog, truth, data.frequencies, user_groups=groups)
    modalities = model.item_tower.modalities
    results = {"test": metrics}
    if ablation:
        results["ablation"] = retrieval_eval.modality_ablation(
            model, catalog, truth, data.frequencies, modalities, ks=(10, 20, 50)
        )
    return results


def train_and_evaluate(config: config_lib.Config, data_dir: str, workdir: str, verbose: bool = True) -> dict:
    """Trains the retrieval model, evaluates it on the test split, writes `metrics.json`; returns it."""
    model, data, training = train_retrieval(config, data_dir, workdir, verbose=verbose)
    manifest = schema.read_manifest(data_dir)
    queries = eval_queries(config.train)
    metrics = {"training": training, **evaluate_trained(model, data, data_dir, manifest, queries=queries)}
    if is_chief():
        write_metrics(workdir, metrics)
    return metrics


def restore_retrieval(data_dir: str, workdir: str):
    """(model, data, manifest, config) rebuilt from a workdir's saved config and final weights."""
    config = config_lib.load_config(fileio.join(workdir, config_lib.CONFIG_FILE))
    manifest = schema.read_manifest(data_dir)
    data = load_retrieval_data(data_dir, manifest, config.model.modalities)
    model = build_retrieval_model(config.model, data)
    model.load_weights(fileio.join(workdir, FINAL_CHECKPOINT)).expect_partial()
    return model, data, manifest, config


def evaluate_workdir(data_dir: str, workdir: str, report_dir: str | None = None) -> dict:
    """`tfrs-mm evaluate`: re-evaluates a trained workdir, updates `metrics.json`, can write a report."""
    from tfrs_mm.evaluation import write_report

    model, data, manifest, config = restore_retrieval(data_dir, workdir)
    previous = {}
    path = fileio.join(workdir, METRICS_FILE)
    if fileio.exists(path):
        with fileio.open_file(path) as f:
            previous = json.load(f)
    queries = eval_queries(config.train)
    metrics = {**previous, **evaluate_trained(model, data, data_dir, manifest, queries=queries)}
    ranking = _evaluate_ranker_if_trained(model, data, data_dir, manifest, workdir)
    if ranking:
        metrics["ranking"] = ranking
    write_metrics(workdir, metrics)
    if report_dir:
        history = metrics.get("training", {}).get("history")
        write_report(metrics["test"], history=history, ablation=metrics.get("ablation"), out_dir=report_dir)
    return metrics


def _evaluate_ranker_if_trained(model, data, data_dir: str, manifest, workdir: str) -> dict | None:
    """Two-stage metrics and explanation quality when `workdir/ranking` holds a trained ranker."""
    from tfrs_mm.training import ranking

    if not fileio.exists(fileio.join(ranking.ranking_workdir(workdir), ranking.RANKER_FILE)):
        return None
    config = config_lib.load_config(fileio.join(ranking.ranking_workdir(workdir), config_lib.CONFIG_FILE))
    ranker = ranking.load_ranker(workdir)
    k, queries = config.export.retrieval_k, ranking.retrieval_queries(workdir)
    return ranking.evaluate_ranking(model, ranker, data, data_dir, manifest, k, queries)
