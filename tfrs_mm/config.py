"""Typed, frozen configuration for every stage, loaded from YAML and `--set` overrides.

A `Config` has one section per stage (data, model, train, index, export,
serving). Each field's default carries a one-line reason. Resolution order:
preset → YAML file → `--set section.field=value` overrides; the resolved config
is saved next to every artifact (`save_config`) so a run can be reproduced.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

CONFIG_FILE = "config.yaml"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Preprocessing: validation, filtering, splitting and item embedding."""

    split: Literal["random", "leave-last-out", "temporal", "cold-item"] = "random"
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # RecBole's per-user 8:1:1
    cold_item_fraction: float = 0.2  # share of items held out, all their interactions to test
    min_user_interactions: int = 5  # users with fewer cannot fill train, valid and test
    min_item_interactions: int = 1  # keep every item seen at least once
    rating_threshold: float | None = None  # e.g. 3.0 keeps ratings >= 3 as positives
    history_length: int = 20  # recent items kept per example for the query tower
    text_encoder: str = "bundled://all-minilm-l6-v2"  # a TF Hub, Kaggle or local SavedModel handle also works
    image_encoder: str = "bundled://efficientnet-lite0"
    audio_encoder: str = "bundled://musicnn"
    text_max_tokens: int = 128  # MiniLM cost grows fast past 128 word pieces
    image_size: int = 128  # our posters fit in 128 px; 224 costs 3x for little gain
    audio_seconds: float = 3.0  # one musicnn patch
    embed_batch_size: int = 32  # RunInference batch: amortises the call without big memory
    seed: int = 42
    pseudonymize_users: bool = False  # keyed-hash user ids before anything is written


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Retrieval towers and the ranker."""

    embedding_dim: int = 64  # output of both towers
    id_embedding_dim: int = 32
    num_oov_buckets: int = 1  # cold items share an OOV id and lean on content
    modalities: tuple[str, ...] = ("text", "image", "audio")
    fusion: Literal["concat", "gated", "attention"] = "gated"
    modality_dropout: float = 0.1  # teaches the tower to cope with a missing modality
    history_pooling: Literal["mean", "attention"] = "attention"
    user_features: bool = True  # users.csv columns in the query tower, when the dataset has them
    # A learned embedding per train user in the query tower. Off, a user is their history and features
    # alone: nothing per user to overfit, and new users are served like known ones.
    user_id_embedding: bool = True
    temperature: float = 0.05  # sharpens the in-batch softmax over cosine scores
    logq_correction: bool = True  # corrects the popularity bias of in-batch negatives
    remove_accidental_hits: bool = True
    cross_replica_negatives: bool = True  # under MirroredStrategy, negatives from every replica
    # Retrieval scores add alpha * temperature * log(1 + train count): logQ takes popularity out of the
    # learned scores and this puts back the share the valid split asks for. alpha is chosen after
    # training, on valid NDCG@`train.early_stopping_k`, from `popularity_prior_alphas` (0 included).
    # Items never seen in training get no prior: leave it off where new items must surface.
    popularity_prior: bool = False
    popularity_prior_alphas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2)
    ranker_dim: int = 64
    ranker_heads: int = 4
    ranker_mlp: tuple[int, ...] = (128, 64)
    ranking_loss: Literal["pointwise", "listwise"] = "listwise"
    ranking_negatives: int = 9
    hard_negative_fraction: float = 0.5  # rest are popularity-sampled
    # Hard negatives skip retrieval's top ranks: they hold the user's held-out items (false negatives).
    hard_negative_skip: int = 10
    # Where the ranker's lists come from. `train`: each train interaction, negatives as above. `valid`: the
    # interactions retrieval never saw, as the ranker meets them at serving time: each positive inside
    # the user's retrieval top-`export.retrieval_k` for their valid query, negatives from the rest of
    # that top-K (no skip); `ranking_selection_fraction` of the valid users are kept apart to choose the
    # epoch (reranking NDCG@10; epoch 0 is the untrained ranker: retrieval's order, plus item-to-item
    # evidence when `ranker_item_item` is on).
    ranking_lists: Literal["train", "valid"] = "train"
    ranking_selection_fraction: float = 0.2
    ranker_user_embedding: bool = True  # off: the ranker knows a user by their history alone
    # `own`: the ranker learns its own token encoder; `retrieval`: it reuses the trained retrieval item
    # tower's tokens, frozen (fewer weights to fit on the few held-out lists).
    ranker_tokens: Literal["own", "retrieval"] = "own"
    # Item-to-item evidence (EASE on the train split, `models.item_item`): the score adds a weight times
    # Σ_h B[history item h, candidate], and B biases the history attention. Needs `ranking_lists=valid`:
    # the ridge is chosen from `ranker_item_item_l2s` and the weight fitted on the held-out lists.
    ranker_item_item: bool = False
    ranker_item_item_l2s: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
    ranker_item_item_max_items: int = 10000  # the most frequent items get a row: B is dense, M² floats


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, distribution and checkpointing."""

    batch_size: int = 256  # per step, global across replicas
    epochs: int = 10
    learning_rate: float = 1e-3
    optimizer: Literal["adam", "adagrad", "sgd"] = "adam"
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    num_logical_devices: int = 0  # >1 splits the CPU into logical devices for MirroredStrategy
    # Records are written grouped by user, so a small buffer fills batches with a few users, whose other
    # positives then act as in-batch negatives. 0 shuffles the whole split (exact, memory ~ split size).
    shuffle_buffer: int = 0
    cache_dataset: bool = True  # cache parsed examples when they fit in memory
    # Query histories while training: `earlier` keeps the Beam job's items-before-this-one (for time-ordered
    # data); `train_set` samples the user's other train items afresh each epoch (for data without a time
    # order, e.g. random splits). Evaluation and serving take the history they are given either way.
    history_source: Literal["earlier", "train_set"] = "earlier"
    # train_set: items per sampled history; 0 means the dataset's `history_length`. Shorter than the
    # dataset's histories trains faster; the towers take any length, so evaluation still sees them all.
    history_sample_length: int = 0
    # > 0: after each epoch, rank the catalog for the valid users; stop when Recall@`early_stopping_k` has not
    # improved for this many epochs, and keep the best epoch's weights (retrieval). 0 trains every epoch.
    early_stopping_patience: int = 0
    # The learning rate is multiplied by `lr_decay_rate` every epoch once `lr_decay_after_epochs` have run.
    lr_decay_rate: float = 1.0
    lr_decay_after_epochs: int = 0
    early_stopping_k: int = 10
    checkpoint_every_steps: int = 200
    warm_start_from: str = ""  # workdir of an earlier run to initialise from
    seed: int = 42  # seeds shuffling, initial weights and dropout: the same command gives the same run


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """ScaNN index construction and tuning."""

    k: int = 100  # candidates retrieved per query
    recall_target: float = 0.95  # recall@k against exact search the tuner must reach
    exact_below: int = 20_000  # brute force is fast enough for smaller catalogs
    num_leaves: int = 0  # 0 chooses about sqrt(n)
    num_leaves_to_search: int = 0  # 0 lets the tuner choose
    reorder_k: int = 0  # 0 chooses max(4 * k, 100)
    tune_queries: int = 1_000


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """SavedModels in TF Serving's layout."""

    retrieval_k: int = 100  # candidates handed to the ranker
    final_k: int = 10  # items the recommender returns
    warmup_requests: int = 4  # records in assets.extra/tf_serving_warmup_requests


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """The local TF-Serving-compatible REST server."""

    host: str = "127.0.0.1"  # loopback unless exposed on purpose
    rest_api_port: int = 8501  # TF Serving's REST port
    max_request_bytes: int = 64 * 1024 * 1024  # bigger bodies (after gzip decompression) get 413
    file_system_poll_wait_seconds: float = 1.0  # TF Serving's default
    custom_ops: tuple[str, ...] = ()  # e.g. ("scann",) to allow ScaNN exports


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs; `preset` records where the defaults came from."""

    preset: str = "default"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    index: IndexConfig = IndexConfig()
    export: ExportConfig = ExportConfig()
    serving: ServingConfig = ServingConfig()


SECTIONS: tuple[str, ...] = ("data", "model", "train", "index", "export", "serving")


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-friendly dict (tuples become lists)."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_dict(data: Mapping[str, Any], base: Config | None = None) -> Config:
    """Builds a `Config` from nested dicts on top of `base`, checking every key and type.

    Raises:
        ValueError: on an unknown section or field, or a value of the wrong type.
    """
    config = base or Config()
    for section, values in data.items():
        if section == "preset":
            config = dataclasses.replace(config, preset=_coerce(str, values, "preset"))
            continue
        if section not in SECTIONS:
            raise ValueError(f"unknown config section {section!r}; sections are {list(SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ValueError(f"config section {section!r} must be a mapping, got {values!r}")
        for key, value in values.items():
            config = _replace_field(config, section, key, value)
    return config


def _replace_field(config: Config, section: str, key: str, value: Any) -> Config:
    current = getattr(config, section)
    hints = typing.get_type_hints(type(current))
    if key not in hints:
        fields = sorted(hints)
        raise ValueError(f"unknown config field {section}.{key}; fields of {section!r} are {fields}")
    new_section = dataclasses.replace(current, **{key: _coerce(hints[key], value, f"{section}.{key}")})
    return dataclasses.replace(config, **{section: new_section})


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Checks `value` against a type hint, converting lists to tuples and ints to floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads "3e-4" (no dot) as a string; accept any float literal.
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float) and isinstance(value, bool):
        raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}")
    if not isinstance(value, hint):
        raise ValueError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Applies `section.field=value` strings; values are parsed as YAML (`[1, 2]`, `true`, `3e-4`).

    Raises:
        ValueError: on a malformed override, unknown field or wrong type.
    """
    for override in overrides:
        key, sep, raw = override.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot or not field:
            raise ValueError(f"override {override!r} must look like section.field=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ValueError(f"override {override!r}: value is not valid YAML: {e}") from e
        config = from_dict({section: {field: value}}, base=config)
    return config


def load_config(path: str | None = None, preset: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """Resolves a config: preset, then the YAML file at `path`, then `overrides`.

    The preset comes from the `preset` argument, else the file's `preset:` key,
    else `default`.
    """
    from tfrs_mm.presets import get_preset

    file_data: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as f:
            file_data = yaml.safe_load(f) or {}
        if not isinstance(file_data, dict):
            raise ValueError(f"{path}: a config file must be a YAML mapping")
    name = preset or file_data.get("preset") or "default"
    config = from_dict(file_data, base=get_preset(name))
    config = dataclasses.replace(config, preset=name)
    return apply_overrides(config, overrides)


def save_config(config: Config, directory: str, file_name: str = CONFIG_FILE) -> str:
    """Writes the resolved config as YAML into `directory` (local or URI); returns the path."""
    from tfrs_mm import fileio

    fileio.makedirs(directory)
    path = fileio.join(directory, file_name)
    with fileio.open_file(path, "w") as f:
        f.write("# Resolved tfrs_mm config: reload with `--config` to reproduce this run.\n")
        yaml.safe_dump(to_dict(config), f, sort_keys=False)
    return path
