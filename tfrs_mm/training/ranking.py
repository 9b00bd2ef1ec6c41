"""`train_ranking(config, data_dir, workdir)`: the cross-attention ranker, second stage after retrieval.

`workdir` is the retrieval run's workdir (its model supplies hard negatives);
the ranker's own files go to `workdir/ranking/`: `config.yaml`, `backup/`
(BackupAndRestore), `checkpoints/final`, `ranker.json` (its architecture and
vocabularies), TensorBoard `logs/` and `metrics.json` (training history and
validation AUC / NDCG@10 / MRR over fixed lists).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable

import numpy as np

from tfrs_mm import config as config_lib
from tfrs_mm import fileio, schema
from tfrs_mm.schema import features as F
from tfrs_mm.training import data as data_lib
from tfrs_mm.training import numeric_checks, ranking_data, ranking_lists
from tfrs_mm.training.resumable import fit_resumable
from tfrs_mm.training.retrieval import (
    effective_model_config,
    history_lists,
    load_retrieval_data,
    make_optimizer,
    seed_everything,
    train_batches,
    write_metrics,
)
from tfrs_mm.training.strategy import is_chief, make_strategy
from tfrs_mm.training.warm_start import FINAL_CHECKPOINT, TOWERS_FILE, load_towers_model

logger = logging.getLogger(__name__)

RANKING_DIR = "ranking"
RANKER_FILE = "ranker.json"


def ranking_workdir(workdir: str) -> str:
    return fileio.join(workdir, RANKING_DIR)


def load_retrieval_for_ranking(workdir: str):
    """The trained retrieval model of `workdir`, or a clear error if there is none."""
    if not fileio.exists(fileio.join(workdir, TOWERS_FILE)):
        raise FileNotFoundError(
            f"{workdir} holds no trained retrieval model ({TOWERS_FILE} is missing): "
            "run `tfrs-mm train retrieval` with this --workdir first; the ranker learns from its candidates"
        )
    return load_towers_model(workdir)


def make_sampler(
    config: config_lib.Config, retrieval, data, data_dir: str, manifest
) -> ranking_data.NegativeSampler:
    users, hard = ranking_data.hard_negatives(
        retrieval,
        data_dir,
        manifest,
        data.table.item_ids,
        k=config.export.retrieval_k,
        skip=config.model.hard_negative_skip,
    )
    return ranking_data.NegativeSampler(
        users=users,
        hard=hard,
        catalog=np.asarray(data.table.item_ids, dtype=object),
        popularity=np.maximum(data.frequencies, 0.5),
        num_negatives=config.model.ranking_negatives,
        hard_fraction=config.model.hard_negative_fraction,
    )


def list_dataset(data_dir, manifest, split, config, sampler):
    """Fixed-order lists of a split (validation)."""
    base = data_lib.interaction_dataset(data_dir, manifest, split, config.train.batch_size)
    return ranking_data.add_candidates(base, sampler)


def train_lists(config: config_lib.Config, data_dir: str, manifest, sampler, start):
    """Train lists from (epoch, step) `start` on, interactions shuffled per epoch as in retrieval."""
    return ranking_data.add_candidates(train_batches(config.train, data_dir, manifest, start), sampler)


def build_ranking(model_config, data, retrieval=None, evidence=None):
    """The ranking model for `model_config`; `evidence` is an `item_item_fit.FittedEvidence` or None.

    Call it inside the strategy's scope: every ranker weight, the item-to-item matrix included, is
    created here.
    """
    from tfrs_mm.models.item_item import ItemItemEvidence
    from tfrs_mm.models.ranking import build_ranking_model

    if retrieval is not None:  # the ranker's retrieval logit uses the retrieval run's own temperature
        model_config = dataclasses.replace(model_config, temperature=retrieval.config.temperature)

    tower = retrieval.query_tower if retrieval is not None else None
    prior = retrieval.popularity_prior if retrieval is not None else None
    shared = retrieval is not None and model_config.ranker_tokens == "retrieval"
    model = build_ranking_model(
        data.table,
        data.train_item_ids,
        data.train_user_ids,
        model_config,
        retrieval_tower=tower,
        retrieval_prior=prior,
        item_tower=retrieval.item_tower if shared else None,
        item_item=(
            ItemItemEvidence(evidence.item_ids, evidence.weights, name="item_item") if evidence else None
        ),
    )
    build_ranker(model.ranker)
    model.ranker.calibrate_similarity(data.table.item_ids)
    if evidence is not None:
        model.ranker.evidence_weight.assign(evidence.weight)
        model.ranker.evidence_scale.assign(evidence.scale)
    return model


def build_ranker(ranker) -> None:
    """Creates every ranker weight by scoring a one-candidate list."""
    import tensorflow as tf

    ranker(tf.constant([""]), tf.constant([[""]]), tf.constant([[""]]))


@dataclasses.dataclass
class ListPlan:
    """Where the ranker's lists come from (`model.ranking_lists`) and how its epoch is chosen."""

    batches: Callable  # (epoch, step) start -> dataset of list batches
    steps: int  # per epoch
    lists: int  # per epoch
    valid: dict  # fixed lists for AUC / NDCG@10 / MRR (not trained on)
    held_out: ranking_lists.HeldOutLists | None = None

    def selection_callback(self, retrieval, model, data, config: config_lib.Config):
        """The held-out users' epoch selection (`ranking_lists.best_reranking_callback`), or None."""
        if self.held_out is None or not self.held_out.selection.users:
            return None
        catalog = list(data.table.item_ids)
        k, patience = config.export.retrieval_k, config.train.early_stopping_patience
        selection = self.held_out.selection
        return ranking_lists.best_reranking_callback(retrieval, model, catalog, selection, k, patience)


def plan_lists(config: config_lib.Config, retrieval, data, data_dir: str, manifest, queries: str) -> ListPlan:
    """The train split's lists (`model.ranking_lists=train`) or the held-out ones (`valid`)."""
    import tensorflow as tf

    batch = config.train.batch_size
    if config.model.ranking_lists == "valid":
        lists = ranking_lists.held_out_lists(retrieval, data, data_dir, manifest, config, queries)
        held = tf.data.Dataset.from_tensor_slices(lists.held).batch(batch)
        return ListPlan(
            batches=lambda start: ranking_data.add_candidates(
                ranking_lists.list_stream(
                    lists.fit, batch, epochs=config.train.epochs, seed=config.train.seed, start=start
                ),
                lists.sampler,
            ),
            steps=ranking_lists.steps_per_epoch(lists.fit, batch),
            lists=len(lists.fit[F.ITEM_ID]),
            valid=ranking_data.fixed_lists(ranking_data.add_candidates(held, lists.sampler)),
            held_out=lists,
        )
    sampler = make_sampler(config, retrieval, data, data_dir, manifest)
    return ListPlan(
        batches=lambda start: train_lists(config, data_dir, manifest, sampler, start),
        steps=data_lib.steps_per_epoch(manifest, "train", batch),
        lists=manifest.split.counts.get("train", 0),
        valid=ranking_data.fixed_lists(list_dataset(data_dir, manifest, "valid", config, sampler)),
    )


def fit_item_item(model_config, retrieval, data, data_dir: str, manifest, plan: ListPlan):
    """The ranker's item-to-item evidence (`model.ranker_item_item`), fitted on the plan's lists, or None."""
    if not model_config.ranker_item_item:
        return None
    if plan.held_out is None:
        raise ValueError(
            "model.ranker_item_item needs model.ranking_lists=valid: its weights come from the train split, "
            "so they must be fitted on lists the train split does not contain"
        )
    import tensorflow as tf

    from tfrs_mm.training import item_item_fit

    held_out = plan.held_out
    fit = ranking_data.fixed_lists(
        ranking_data.add_candidates(
            tf.data.Dataset.from_tensor_slices(held_out.fit).batch(1024), held_out.sampler
        )
    )
    evidence = item_item_fit.fit_evidence(retrieval, data, data_dir, manifest, fit, model_config)
    logger.info("item-item evidence: %s", evidence.record)
    return evidence


def retrieval_queries(workdir: str) -> str:
    """The query histories the retrieval run in `workdir` is evaluated with (`eval_queries`)."""
    from tfrs_mm.training.retrieval import eval_queries

    retrieval_config = config_lib.load_config(fileio.join(workdir, config_lib.CONFIG_FILE))
    return eval_queries(retrieval_config.train)


def train_ranking(config: config_lib.Config, data_dir: str, workdir: str, verbose: bool = True):
    """Trains the ranker on lists built with `workdir`'s retrieval model; returns (model, data, metrics)."""
    strategy = make_strategy(config.train)
    logger.info(
        "training the ranker with %s over %d replicas", type(strategy).__name__, strategy.num_replicas_in_sync
    )
    seed_everything(config.train.seed)
    with strategy.scope():  # the frozen retrieval towers become part of the ranker
        retrieval = load_retrieval_for_ranking(workdir)
    manifest = schema.read_manifest(data_dir)
    model_config = effective_model_config(config.model, manifest)
    out = ranking_workdir(workdir)
    if is_chief():
        config_lib.save_config(dataclasses.replace(config, model=model_config), out)
    data = load_retrieval_data(data_dir, manifest, model_config.modalities)
    config = dataclasses.replace(config, model=model_config)
    with numeric_checks.nonfinite_inputs_by_name():  # hard negatives and lists read the interactions
        plan = plan_lists(config, retrieval, data, data_dir, manifest, retrieval_queries(workdir))
        evidence = fit_item_item(model_config, retrieval, data, data_dir, manifest, plan)
    with strategy.scope():
        model = build_ranking(model_config, data, retrieval, evidence)
        model.compile(optimizer=make_optimizer(config.train))
    selection = plan.selection_callback(retrieval, model, data, config)
    history, fit_info = fit_resumable(
        model,
        plan.batches,
        plan.steps,
        config.train,
        out,
        verbose=verbose,
        extra_callbacks=(selection,) if selection else (),
    )
    if selection:
        fit_info["best_epoch"] = selection.best_epoch
        fit_info["selection_ndcg@10"] = selection.summary()
    seconds = max(fit_info["train_seconds"], 1e-9)
    lists_run = plan.lists * fit_info["steps_run"] / plan.steps
    metrics = {
        "training": {
            "history": history_lists(history),
            **fit_info,
            "lists": plan.lists,
            "lists_per_second": round(lists_run / seconds, 1),
            **({"item_item": evidence.record} if evidence is not None else {}),
        },
        "valid": score_lists(model.ranker, plan.valid) if plan.valid else {},
    }
    if is_chief():
        model.save_weights(fileio.join(out, FINAL_CHECKPOINT))
        save_ranker(model.ranker, out)
        write_metrics(out, metrics)
    logger.info("ranker valid: %s", metrics["valid"])
    return model, data, metrics


def score_lists(ranker, lists: dict[str, np.ndarray], batch: int = 512) -> dict[str, float]:
    """AUC, NDCG@10 and MRR of the ranker on fixed lists."""
    import tensorflow as tf

    from tfrs_mm.evaluation.list_metrics import list_metrics
    from tfrs_mm.models.ranker import SCORES
    from tfrs_mm.schema import features as F

    scores = []
    for i in range(0, len(lists[F.USER_ID]), batch):
        part = ranker(
            tf.constant(lists[F.USER_ID][i : i + batch]),
            tf.constant(lists[F.HISTORY][i : i + batch]),
            tf.constant(lists[ranking_data.CANDIDATE_IDS][i : i + batch]),
        )
        scores.append(part[SCORES].numpy())
    return list_metrics(np.concatenate(scores), lists[ranking_data.LABELS], ks=(10,))


def save_ranker(ranker, out: str) -> str:
    import tensorflow as tf

    path = fileio.join(out, RANKER_FILE)
    with fileio.open_file(path, "w") as f:
        json.dump(tf.keras.layers.serialize(ranker), f)
    return path


def load_ranker(workdir: str):
    """The trained ranker of a retrieval workdir (`workdir/ranking/`), rebuilt from its files."""
    import tensorflow as tf

    from tfrs_mm.models.ranker import CrossAttentionRanker

    out = ranking_workdir(workdir)
    if not fileio.exists(fileio.join(out, RANKER_FILE)):
        raise FileNotFoundError(f"no trained ranker in {out}: run `tfrs-mm train ranking` first")
    with fileio.open_file(fileio.join(out, RANKER_FILE)) as f:
        spec = json.load(f)
    ranker = tf.keras.layers.deserialize(spec, custom_objects={"CrossAttentionRanker": CrossAttentionRanker})
    build_ranker(ranker)
    checkpoint = tf.train.Checkpoint(ranker=ranker)
    status = checkpoint.read(fileio.join(out, FINAL_CHECKPOINT))
    # Every ranker weight must come from the checkpoint (one written by another version of the ranker
    # fails here instead of loading with default weights); the optimizer's slots are not needed.
    status.assert_existing_objects_matched().expect_partial()
    return ranker


def evaluate_ranking(
    retrieval_model, ranker, data, data_dir: str, manifest, k: int, queries: str = "example"
) -> dict:
    """Two-stage test metrics (retrieval alone vs retrieval + ranking) and explanation quality.

    `queries`: the test users' query histories, as the retrieval run is evaluated (`retrieval_queries`).
    """
    from tfrs_mm.evaluation import retrieval_eval
    from tfrs_mm.evaluation.explanations import explanation_quality
    from tfrs_mm.evaluation.two_stage import evaluate_two_stage

    catalog = list(data.table.item_ids)
    truth = retrieval_eval.load_eval_split(data_dir, manifest, catalog, "test", queries)
    out = {"two_stage": evaluate_two_stage(retrieval_model, ranker, catalog, truth, k=k)}
    quality = explanation_quality(ranker, data_dir, manifest)
    if quality is not None:
        out["explanations"] = quality
    return out


def train_and_evaluate_ranking(config: config_lib.Config, data_dir: str, workdir: str, verbose: bool = True):
    """`tfrs-mm train ranking`: trains the ranker, evaluates both stages, writes `ranking/metrics.json`."""
    model, data, metrics = train_ranking(config, data_dir, workdir, verbose=verbose)
    manifest = schema.read_manifest(data_dir)
    retrieval = load_retrieval_for_ranking(workdir)
    k, queries = config.export.retrieval_k, retrieval_queries(workdir)
    metrics.update(evaluate_ranking(retrieval, model.ranker, data, data_dir, manifest, k, queries))
    if is_chief():
        write_metrics(ranking_workdir(workdir), metrics)
    return metrics
