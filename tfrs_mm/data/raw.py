"""The raw dataset format: what a user brings, and what loaders and the generator write.

A raw dataset directory `RAW` holds:

- `items.csv`: `item_id` plus any of `title`, `description`, `categories`
  (`|`-separated), `image` and `audio` (paths relative to `RAW`), and extra
  columns declared in `dataset.json`.
- `interactions.csv`: `user_id`, `item_id`, and optionally `timestamp` (Unix
  seconds), `rating` and `weight` (numbers), plus declared extra columns.
- `users.csv` (optional): `user_id` plus declared user columns.
- `dataset.json` (optional): declared extra columns, precomputed embeddings,
  provenance, what a loader dropped and why, and notes such as "no timestamps".
- media files, and `embeddings/<modality>.npz` for precomputed embeddings.

All CSV files are UTF-8 with a header row and standard CSV quoting.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

ITEMS_FILE = "items.csv"
INTERACTIONS_FILE = "interactions.csv"
USERS_FILE = "users.csv"
INFO_FILE = "dataset.json"
EMBEDDINGS_DIR = "embeddings"
CATEGORY_SEPARATOR = "|"

ITEM_COLUMNS = ("item_id", "title", "description", "categories", "image", "audio")
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "rating", "weight")
USER_COLUMNS = ("user_id",)
REQUIRED_COLUMNS = {
    ITEMS_FILE: ("item_id",),
    INTERACTIONS_FILE: ("user_id", "item_id"),
    USERS_FILE: ("user_id",),
}
MEDIA_COLUMNS = ("image", "audio")
NUMERIC_INTERACTION_COLUMNS = ("timestamp", "rating", "weight")
MODALITIES = ("text", "image", "audio")

ColumnKind = Literal["categorical", "multi_categorical", "numeric", "text"]
COLUMN_KINDS: tuple[str, ...] = ("categorical", "multi_categorical", "numeric", "text")


@dataclasses.dataclass(frozen=True)
class ColumnDecl:
    """An extra column declared in `dataset.json`.

    Attributes:
        name: Column name in the CSV header.
        kind: `categorical` (one value), `multi_categorical` (`|`-separated),
            `numeric` (a float; empty means missing) or `text`.
    """

    name: str
    kind: ColumnKind

    def __post_init__(self):
        if self.kind not in COLUMN_KINDS:
            raise ValueError(f"column {self.name!r}: kind must be one of {COLUMN_KINDS}, got {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class PrecomputedEmbedding:
    """Item embeddings that came with the dataset instead of being computed by our encoders.

    The file is an `.npz` under `RAW` with `item_id` (string array [N]) and
    `embedding` (float32 [N, dim]).
    """

    modality: str
    file: str
    encoder: str
    dim: int


@dataclasses.dataclass(frozen=True)
class DropRecord:
    """Rows a loader left out of the raw dataset, and why."""

    what: str
    count: int
    reason: str


@dataclasses.dataclass(frozen=True)
class CountCheck:
    """A count of the source dataset compared with its published figure."""

    name: str
    expected: int
    actual: int

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@dataclasses.dataclass(frozen=True)
class RawDatasetInfo:
    """Contents of `dataset.json`; every field has a default so the file is optional."""

    name: str = "custom"
    source: str = ""
    has_timestamps: bool = True
    item_columns: tuple[ColumnDecl, ...] = ()
    user_columns: tuple[ColumnDecl, ...] = ()
    interaction_columns: tuple[ColumnDecl, ...] = ()
    precomputed_embeddings: tuple[PrecomputedEmbedding, ...] = ()
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    count_checks: tuple[CountCheck, ...] = ()
    dropped: tuple[DropRecord, ...] = ()
    notes: tuple[str, ...] = ()

    def declared(self, file_name: str) -> dict[str, ColumnDecl]:
        """Extra columns declared for one of the CSV files, by name."""
        decls = {
            ITEMS_FILE: self.item_columns,
            USERS_FILE: self.user_columns,
            INTERACTIONS_FILE: self.interaction_columns,
        }[file_name]
        return {d.name: d for d in decls}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RawDatasetInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{INFO_FILE}: unknown keys {unknown}; known keys are {sorted(known)}")
        data = dict(data)
        for key in ("item_columns", "user_columns", "interaction_columns"):
            data[key] = tuple(ColumnDecl(**d) for d in data.get(key, ()))
        data["precomputed_embeddings"] = tuple(
            PrecomputedEmbedding(**d) for d in data.get("precomputed_embeddings", ())
        )
        data["count_checks"] = tuple(CountCheck(**d) for d in data.get("count_checks", ()))
        data["dropped"] = tuple(DropRecord(**d) for d in data.get("dropped", ()))
        data["notes"] = tuple(data.get("notes", ()))
        data["counts"] = dict(data.get("counts", {}))
        return cls(**data)


def write_info(info: RawDatasetInfo, raw_dir: str) -> str:
    """Writes `dataset.json` into `raw_dir` and returns its path."""
    path = os.path.join(raw_dir, INFO_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(info.to_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def read_info(raw_dir: str) -> RawDatasetInfo:
    """Reads `dataset.json` (local path or URI), or returns the defaults when the file is absent.

    Raises:
        ValueError: if the file exists but is not valid JSON or has unknown keys.
    """
    from tfrs_mm import fileio

    path = fileio.join(raw_dir, INFO_FILE)
    if not fileio.exists(path):
        return RawDatasetInfo()
    with fileio.open_file(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    try:
        return RawDatasetInfo.from_dict(data)
    except TypeError as e:
        raise ValueError(f"{path}: {e}") from e


def has_undecodable_bytes(text: str) -> bool:
    """True if `text` was read with `errors="surrogateescape"` from bytes that are not UTF-8."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Writes a UTF-8 CSV with a header and `\\n` line endings; returns the row count.

    `None` and NaN become empty fields; floats are written with `repr` so the
    output is exact and byte-identical across runs.
    """
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([_format_field(v) for v in row])
            count += 1
    return count


def _format_field(value: Any) -> str:
    if type(value) is str:  # the common case, checked first: loaders write millions of fields
        return value
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else repr(float(value))
    if isinstance(value, (list, tuple)):
        return CATEGORY_SEPARATOR.join(str(v) for v in value)
    return str(value)


def write_embeddings(
    raw_dir: str, modality: str, item_ids: Sequence[str], embedding: np.ndarray, encoder: str
) -> PrecomputedEmbedding:
    """Stores precomputed item embeddings as `embeddings/<modality>.npz`.

    Args:
        raw_dir: The raw dataset directory.
        modality: One of `MODALITIES`.
        item_ids: [N] item ids, one per row of `embedding`.
        embedding: [N, dim] float array.
        encoder: Human-readable name of the model that produced them.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 2 or embedding.shape[0] != len(item_ids):
        raise ValueError(f"embedding must be [{len(item_ids)}, dim], got {embedding.shape}")
    rel = f"{EMBEDDINGS_DIR}/{modality}.npz"
    os.makedirs(os.path.join(raw_dir, EMBEDDINGS_DIR), exist_ok=True)
    with open(os.path.join(raw_dir, rel), "wb") as f:
        np.savez(f, item_id=np.asarray(item_ids, dtype=str), embedding=embedding)
    return PrecomputedEmbedding(modality=modality, file=rel, encoder=encoder, dim=int(embedding.shape[1]))


def read_embeddings(raw_dir: str, record: PrecomputedEmbedding) -> tuple[np.ndarray, np.ndarray]:
    """Loads a precomputed embedding file: ([N] item ids, [N, dim] float32)."""
    with np.load(os.path.join(raw_dir, record.file), allow_pickle=False) as data:
        return data["item_id"], data["embedding"].astype(np.float32)


class MediaPathError(ValueError):
    """A media path in a raw dataset that cannot or must not be read.

    Attributes:
        reason: `refused path` (absolute, or leads outside the dataset root) or
            `missing file` (absent, not a regular file, or empty).
    """

    def __init__(self, message: str, reason: str = "refused path"):
        super().__init__(message)
        self.reason = reason


def resolve_media_path(raw_dir: str, value: str) -> str:
    """The real path of a media file referenced from a raw CSV, checked to stay inside `raw_dir`.

    Nothing outside the dataset root may ever be read, so absolute paths, `..`
    escapes and symlinks that lead out of `raw_dir` are refused before any read.

    Args:
        raw_dir: The raw dataset directory.
        value: The path as written in the CSV, relative to `raw_dir`.

    Raises:
        MediaPathError: with the reason, if the path is absolute, escapes
            `raw_dir`, does not exist, is not a regular file, or is empty.
    """
    if os.path.isabs(value) or value.startswith(("\\", "~")) or (len(value) > 1 and value[1] == ":"):
        raise MediaPathError(f"absolute path {value!r}: media paths must be relative to the dataset root")
    if os.path.normpath(value).split(os.sep)[0] == os.pardir:
        raise MediaPathError(f"path {value!r} points outside the dataset root")
    root = os.path.realpath(raw_dir)
    full = os.path.realpath(os.path.join(root, value))
    if os.path.commonpath([root, full]) != root:
        raise MediaPathError(f"path {value!r} resolves outside the dataset root (through a symlink)")
    if not os.path.exists(full):
        raise MediaPathError(f"file {value!r} not found", "missing file")
    if not os.path.isfile(full):
        raise MediaPathError(f"{value!r} is not a regular file", "missing file")
    if os.path.getsize(full) == 0:
        raise MediaPathError(f"file {value!r} is empty", "missing file")
    return full
