"""Loaders that turn the offline public datasets into the raw dataset format.

`load_dataset` finds the source files, lets the dataset's reader parse them
into tables, compares the source counts with the published figures and only
then writes `RAW`, so a failed check leaves nothing half-written. Readers live
in `movielens.py` and `lastfm.py`; this module holds the registry, the shared
parsing helpers and the writer.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
from collections.abc import Callable, Sequence

import numpy as np

from tfrs_mm.data.raw import (
    INTERACTIONS_FILE,
    ITEMS_FILE,
    USERS_FILE,
    ColumnDecl,
    CountCheck,
    DropRecord,
    RawDatasetInfo,
    write_csv,
    write_embeddings,
    write_info,
)

DATASETS: tuple[str, ...] = ("movielens-100k", "movielens-1m", "movielens-latest-small", "lastfm-2k")
IMAGES_DIR = "images"
# Item columns whose coverage the report shows, in this order.
COVERAGE_COLUMNS = ("title", "description", "categories", "image", "audio")


class CountMismatchError(ValueError):
    """The source counts differ from the dataset's published figures.

    Attributes:
        dataset: The dataset name.
        failed: The checks that failed.
    """

    def __init__(self, dataset: str, failed: Sequence[CountCheck]):
        self.dataset = dataset
        self.failed = tuple(failed)
        listed = "; ".join(f"{c.name}: published {c.expected:,}, source has {c.actual:,}" for c in failed)
        super().__init__(
            f"{dataset}: source counts differ from the published figures ({listed}). The source may be "
            "a modified or truncated copy; pass allow_count_mismatch=True to load it anyway."
        )


@dataclasses.dataclass(frozen=True)
class Table:
    """Rows of string fields under a header, as they will be written."""

    header: tuple[str, ...]
    rows: Sequence[Sequence[str]]


@dataclasses.dataclass(frozen=True)
class Embedding:
    """Precomputed item embeddings to pass through: [N] item ids and [N, dim] values."""

    modality: str
    item_ids: Sequence[str]
    values: np.ndarray
    encoder: str


class LoadLog:
    """What a reader found: count checks, drops, notes and extra counts."""

    def __init__(self) -> None:
        self.checks: list[CountCheck] = []
        self.dropped: list[DropRecord] = []
        self.notes: list[str] = []
        self.counts: dict[str, int] = {}

    def check(self, name: str, expected: int, actual: int) -> None:
        """Compares a source count with its published figure."""
        self.checks.append(CountCheck(name=name, expected=expected, actual=actual))

    def drop(self, what: str, count: int, reason: str) -> None:
        """Records left-out rows or values; zero counts are not worth a line."""
        if count:
            self.dropped.append(DropRecord(what=what, count=count, reason=reason))

    def drop_malformed(self, file_label: str, line_numbers: Sequence[int], expected: str) -> None:
        """Records unparseable lines, naming the first few so they can be inspected."""
        shown = ", ".join(str(n) for n in line_numbers[:5]) + (", ..." if len(line_numbers) > 5 else "")
        self.drop(f"{file_label}: malformed lines", len(line_numbers), f"expected {expected}; lines {shown}")

    def note(self, text: str) -> None:
        """Adds a sentence for `dataset.json` notes and the report."""
        self.notes.append(text)


@dataclasses.dataclass(frozen=True)
class LoadedDataset:
    """A parsed source dataset, ready to be written as a raw dataset.

    Attributes:
        items: The `items.csv` table.
        users: The `users.csv` table.
        interactions: The `interactions.csv` table.
        log: Checks, drops, notes and dataset-specific counts.
        has_timestamps: Whether interactions carry a timestamp.
        item_columns: Declared extra item columns.
        user_columns: Declared extra user columns.
        interaction_columns: Declared extra interaction columns.
        images: {path relative to RAW: source file} to copy.
        embeddings: Precomputed item embeddings.
    """

    items: Table
    users: Table
    interactions: Table
    log: LoadLog
    has_timestamps: bool = True
    item_columns: tuple[ColumnDecl, ...] = ()
    user_columns: tuple[ColumnDecl, ...] = ()
    interaction_columns: tuple[ColumnDecl, ...] = ()
    images: dict[str, str] = dataclasses.field(default_factory=dict)
    embeddings: tuple[Embedding, ...] = ()


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives under the data root and how to read it.

    Attributes:
        folder: Its folder under the shared data root, e.g. `ml-100k`.
        required: Files (relative to `folder`) without which nothing can be loaded.
        read: `read(dataset_dir, data_root) -> LoadedDataset`; side folders are
            looked up under `data_root`.
    """

    folder: str
    required: tuple[str, ...]
    read: Callable[[str, str], LoadedDataset]


def _spec(name: str) -> DatasetSpec:
    # Imported here because the dataset modules build on this module's helpers.
    from tfrs_mm.data import lastfm, movielens

    specs = {
        "movielens-100k": movielens.ML_100K,
        "movielens-1m": movielens.ML_1M,
        "movielens-latest-small": movielens.ML_LATEST_SMALL,
        "lastfm-2k": lastfm.LASTFM_2K,
    }
    if name not in specs:
        raise ValueError(f"unknown dataset {name!r}; known datasets are {', '.join(DATASETS)}")
    return specs[name]


def load_dataset(name: str, source: str, out: str, *, allow_count_mismatch: bool = False) -> RawDatasetInfo:
    """Converts one of `DATASETS` into a raw dataset directory.

    Args:
        name: One of `DATASETS`.
        source: The shared data root (holding e.g. `ml-100k/` and
            `movielens-posters/`) or the dataset's own folder, in which case
            side folders are looked up in its parent.
        out: The raw dataset directory to write; created if needed.
        allow_count_mismatch: Load even when the source counts differ from the
            published figures (the failed checks are recorded).

    Returns:
        What was written to `out/dataset.json`.

    Raises:
        ValueError: unknown dataset, missing source files, or `out` is a
            non-empty directory that is not a raw dataset.
        CountMismatchError: the source counts differ from the published figures.
    """
    spec = _spec(name)
    dataset_dir, data_root = resolve_source(name, source, spec)
    check_output_dir(out)
    loaded = spec.read(dataset_dir, data_root)
    failed = [c for c in loaded.log.checks if not c.ok]
    if failed and not allow_count_mismatch:
        raise CountMismatchError(name, failed)
    if failed:
        loaded.log.note(f"{len(failed)} count check(s) failed and were accepted (allow_count_mismatch).")
    return write_dataset(loaded, name=name, source=os.path.abspath(dataset_dir), out=out)


def resolve_source(name: str, source: str, spec: DatasetSpec) -> tuple[str, str]:
    """Returns (dataset folder, data root) for `source`, or raises ValueError naming what is missing."""
    if not os.path.isdir(source):
        raise ValueError(f"{name}: source {source!r} is not a directory")
    nested = os.path.join(source, spec.folder)
    if os.path.isdir(nested):
        dataset_dir, data_root = nested, source
    else:
        dataset_dir = source
        data_root = os.path.dirname(os.path.abspath(source))
    missing = [f for f in spec.required if not os.path.isfile(os.path.join(dataset_dir, f))]
    if missing:
        raise ValueError(
            f"{name}: {dataset_dir} lacks {', '.join(missing)}. --source must be the data root holding "
            f"{spec.folder}/ or that folder itself, with the files {', '.join(spec.required)}."
        )
    return dataset_dir, data_root


def check_output_dir(out: str) -> None:
    """Refuses to write into a file or a non-empty directory that is not a raw dataset."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"output {out!r} exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, ITEMS_FILE)):
        raise ValueError(
            f"output {out!r} is a non-empty directory without {ITEMS_FILE}; refusing to write a raw "
            "dataset into it. Choose an empty or new directory."
        )


def write_dataset(loaded: LoadedDataset, *, name: str, source: str, out: str) -> RawDatasetInfo:
    """Writes the tables, media, embeddings and `dataset.json`; returns the info written."""
    os.makedirs(out, exist_ok=True)
    counts = {
        "items": write_csv(os.path.join(out, ITEMS_FILE), loaded.items.header, loaded.items.rows),
        "users": write_csv(os.path.join(out, USERS_FILE), loaded.users.header, loaded.users.rows),
        "interactions": write_csv(
            os.path.join(out, INTERACTIONS_FILE), loaded.interactions.header, loaded.interactions.rows
        ),
    }
    counts.update(_coverage_counts(loaded.items))
    if loaded.images:
        os.makedirs(os.path.join(out, IMAGES_DIR), exist_ok=True)
    for rel, src in sorted(loaded.images.items()):
        shutil.copyfile(src, os.path.join(out, rel))
    records = []
    for emb in loaded.embeddings:
        records.append(write_embeddings(out, emb.modality, emb.item_ids, emb.values, emb.encoder))
        counts[f"items_with_{emb.modality}_embedding"] = len(emb.item_ids)
    counts.update(loaded.log.counts)
    info = RawDatasetInfo(
        name=name,
        source=source,
        has_timestamps=loaded.has_timestamps,
        item_columns=loaded.item_columns,
        user_columns=loaded.user_columns,
        interaction_columns=loaded.interaction_columns,
        precomputed_embeddings=tuple(records),
        counts=counts,
        count_checks=tuple(loaded.log.checks),
        dropped=tuple(loaded.log.dropped),
        notes=tuple(loaded.log.notes),
    )
    write_info(info, out)
    return info


def _coverage_counts(items: Table) -> dict[str, int]:
    counts = {}
    for column in COVERAGE_COLUMNS:
        if column in items.header:
            index = items.header.index(column)
            counts[f"items_with_{column}"] = sum(1 for row in items.rows if row[index])
    return counts


def read_fields(
    path: str, sep: str, n_fields: int, *, encoding: str = "utf-8", header: Sequence[str] | None = None
) -> tuple[list[list[str]], list[int]]:
    """Splits an unquoted delimited text file into rows of exactly `n_fields` fields.

    Args:
        path: The file.
        sep: Field separator (may be several characters, e.g. `::`).
        n_fields: Fields per row.
        encoding: Text encoding of the file.
        header: The expected header row, or None when the file has none.

    Returns:
        (rows, 1-based numbers of malformed lines). Blank lines are skipped.
    """
    rows, bad = [], []
    # newline=None splits on \n, \r\n and \r only; str.splitlines would also
    # split latin-1 text at \x85 and friends.
    with open(path, encoding=encoding, newline=None) as f:
        if header is not None:
            _check_header(path, f.readline().rstrip("\n").split(sep), header)
        for number, line in enumerate(f, start=1 if header is None else 2):
            fields = line.rstrip("\n").split(sep)
            if len(fields) == n_fields:
                rows.append(fields)
            elif line.strip():
                bad.append(number)
    return rows, bad


def read_csv_rows(path: str, header: Sequence[str]) -> tuple[list[list[str]], list[int]]:
    """Reads a quoted UTF-8 CSV with the given header; returns (rows, malformed line numbers).

    Line numbers assume no field spans lines, which holds for the files read here.
    """
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        _check_header(path, next(reader, []), header)
        # One bulk list() and a check afterwards keeps ML-1M's million rows fast.
        rows = list(reader)
    n_fields = len(header)
    bad = [number for number, fields in enumerate(rows, start=2) if len(fields) != n_fields and any(fields)]
    if bad or any(not fields for fields in rows):
        rows = [fields for fields in rows if len(fields) == n_fields]
    return rows, bad


def _check_header(path: str, found: Sequence[str], expected: Sequence[str]) -> None:
    if [f.strip() for f in found] != list(expected):
        raise ValueError(f"{path}: expected the header {list(expected)}, found {list(found)}")


def side_path(data_root: str, *parts: str) -> str | None:
    """`data_root/<parts>` when it exists, else None (side data is optional)."""
    path = os.path.join(data_root, *parts)
    return path if os.path.exists(path) else None


def format_report(info: RawDatasetInfo) -> str:
    """A human-readable summary: count checks, written counts, coverage, drops and notes."""
    lines = [f"{info.name}: raw dataset from {info.source or '(unknown)'}", "Counts vs published figures:"]
    width = max((len(c.name) for c in info.count_checks), default=0)
    for c in info.count_checks:
        status = "ok" if c.ok else "MISMATCH"
        lines.append(f"  {c.name:<{width}}  {c.actual:>10,}  published {c.expected:>10,}  {status}")
    if not info.count_checks:
        lines.append("  (no published figures to compare)")
    counts = info.counts
    lines.append(
        f"Written: {counts.get('items', 0):,} items, {counts.get('users', 0):,} users, "
        f"{counts.get('interactions', 0):,} interactions; timestamps: "
        + ("yes" if info.has_timestamps else "no")
    )
    lines += _coverage_lines(info)
    lines.append("Dropped:")
    lines += [f"  - {d.what}: {d.count:,} ({d.reason})" for d in info.dropped] or ["  nothing"]
    if info.notes:
        lines.append("Notes:")
        lines += [f"  - {note}" for note in info.notes]
    return "\n".join(lines)


def _coverage_lines(info: RawDatasetInfo) -> list[str]:
    total = info.counts.get("items", 0)

    def share(n: int) -> str:
        return f"{n:,} of {total:,} items ({100.0 * n / total:.1f}%)" if total else f"{n:,} items"

    lines = ["Modality coverage:"]
    for column in COVERAGE_COLUMNS:
        key = f"items_with_{column}"
        if key in info.counts:
            lines.append(f"  {column:<12} {share(info.counts[key])}")
    for emb in info.precomputed_embeddings:
        n = info.counts.get(f"items_with_{emb.modality}_embedding", 0)
        lines.append(f"  {emb.modality} embedding (precomputed, {emb.encoder}, dim {emb.dim}): {share(n)}")
    return lines
