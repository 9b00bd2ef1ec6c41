"""`tfrs-mm validate RAW`: check a raw dataset in one pass and list every problem.

Errors make the dataset unusable as it stands (a malformed row, a missing
required column, a media path outside RAW, an interaction naming an unknown
item, a non-numeric rating...). Warnings are facts the later stages will act
on (duplicate interactions are deduplicated, items without interactions are
cold items). Each problem names the file, the line and the reason.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Literal

import numpy as np

from tfrs_mm.data import raw

MAX_FIELD_BYTES = 1 << 20  # larger text fields are almost always a broken export
_CSV_FIELD_LIMIT = 1 << 26  # let csv read oversized fields so we can report them

# Leading bytes of the formats the items job decodes.
_SIGNATURES = {
    "image": (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"RIFF"),
    "audio": (b"RIFF", b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"),
}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One finding: `file:line: severity: reason` (line 0 means the whole file)."""

    file: str
    line: int
    reason: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.reason}"


@dataclasses.dataclass
class ValidationReport:
    """Every problem found, and counts of what the dataset holds."""

    raw_dir: str
    problems: list[Problem] = dataclasses.field(default_factory=list)
    counts: Counter = dataclasses.field(default_factory=Counter)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, file: str, line: int, reason: str, severity: str = "error") -> None:
        self.problems.append(Problem(file, line, reason, severity))

    def summary(self) -> str:
        """A short human-readable table of counts and the verdict."""
        c = self.counts
        lines = [
            f"raw dataset {self.raw_dir}",
            f"  items         {c['items']:>9,}  (text {c['items_with_text']:,}, "
            f"image {c['items_with_image']:,}, audio {c['items_with_audio']:,}, "
            f"no interactions {c['cold_items']:,})",
            f"  users         {c['users']:>9,}",
            f"  interactions  {c['interactions']:>9,}  (with timestamp {c['with_timestamp']:,}, "
            f"with rating {c['with_rating']:,})",
        ]
        for modality in raw.MODALITIES:
            if c[f"precomputed_{modality}"]:
                lines.append(
                    f"  precomputed {modality} embeddings for {c[f'precomputed_{modality}']:,} items"
                )
        verdict = "OK" if self.ok else "INVALID"
        lines.append(f"{verdict}: {len(self.errors)} errors, {len(self.warnings)} warnings")
        return "\n".join(lines)


def validate_raw(raw_dir: str, max_field_bytes: int = MAX_FIELD_BYTES) -> ValidationReport:
    """Checks a raw dataset directory; never raises on bad data.

    Args:
        raw_dir: Directory with `items.csv`, `interactions.csv`, optional
            `users.csv` and `dataset.json`, and the media they reference.
        max_field_bytes: Fields longer than this are errors.

    Returns:
        A report listing every problem with file, line and reason.
    """
    report = ValidationReport(raw_dir)
    if not os.path.isdir(raw_dir):
        report.add(raw_dir, 0, "not a directory")
        return report
    try:
        info = raw.read_info(raw_dir)
    except ValueError as e:
        report.add(raw.INFO_FILE, 0, str(e))
        info = raw.RawDatasetInfo()
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    checker = _Checker(raw_dir, info, report, max_field_bytes)
    checker.check_items()
    checker.check_users()
    checker.check_interactions()
    checker.check_embeddings()
    return report


class _Checker:
    """Holds what one file tells about the next (item ids, user ids) during one pass."""

    def __init__(
        self, raw_dir: str, info: raw.RawDatasetInfo, report: ValidationReport, max_field_bytes: int
    ):
        self.raw_dir = raw_dir
        self.info = info
        self.report = report
        self.max_field_bytes = max_field_bytes
        self.item_ids: dict[str, int] = {}
        self.user_ids: dict[str, int] | None = None
        self.interacted: set[str] = set()

    def rows(self, file_name: str) -> Iterator[tuple[int, dict[str, str]]]:
        """Yields (line, row) for well-formed rows, reporting the rest."""
        path = os.path.join(self.raw_dir, file_name)
        if not os.path.isfile(path):
            if file_name != raw.USERS_FILE:
                self.report.add(file_name, 0, "file not found (required)")
            return
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            reader = csv.reader(f, strict=True)
            header = self._header(file_name, reader)
            if header is None:
                return
            while True:
                start = reader.line_num + 1  # a quoted field may span lines: report where the row starts
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    reason = f"malformed CSV row (read up to line {reader.line_num}): {e}"
                    self.report.add(file_name, start, reason)
                    continue
                row = self._row(file_name, start, header, fields)
                if row is not None:
                    yield start, row

    def _header(self, file_name: str, reader) -> list[str] | None:
        try:
            header = next(reader)
        except (StopIteration, csv.Error) as e:
            self.report.add(file_name, 1, f"no readable header row ({e or 'empty file'})")
            return None
        header = [h.strip() for h in header]
        known = {
            raw.ITEMS_FILE: raw.ITEM_COLUMNS,
            raw.INTERACTIONS_FILE: raw.INTERACTION_COLUMNS,
            raw.USERS_FILE: raw.USER_COLUMNS,
        }[file_name]
        declared = self.info.declared(file_name)
        for name, count in Counter(header).items():
            if count > 1:
                self.report.add(file_name, 1, f"column {name!r} appears {count} times")
        for name in header:
            if raw.has_undecodable_bytes(name):
                self.report.add(file_name, 1, "non-UTF-8 bytes in the header")
            elif name not in known and name not in declared:
                self.report.add(
                    file_name, 1, f"unknown column {name!r}: declare it in {raw.INFO_FILE} or remove it"
                )
        missing = [c for c in raw.REQUIRED_COLUMNS[file_name] if c not in header]
        if missing:
            self.report.add(file_name, 1, f"missing required column(s) {missing}")
            return None
        return header

    def _row(self, file_name: str, line: int, header: list[str], fields: list[str]) -> dict[str, str] | None:
        if len(fields) != len(header):
            self.report.add(file_name, line, f"expected {len(header)} fields, got {len(fields)}")
            return None
        row = dict(zip(header, fields))
        bad = [name for name, value in row.items() if raw.has_undecodable_bytes(value)]
        if bad:
            self.report.add(file_name, line, f"non-UTF-8 bytes in column(s) {bad}")
            return None
        big = [name for name, value in row.items() if len(value.encode("utf-8")) > self.max_field_bytes]
        if big:
            self.report.add(file_name, line, f"field(s) {big} exceed {self.max_field_bytes:,} bytes")
            return None
        return row

    def check_items(self) -> None:
        counts = self.report.counts
        for line, row in self.rows(raw.ITEMS_FILE):
            item = row["item_id"].strip()
            if not item:
                self.report.add(raw.ITEMS_FILE, line, "empty item_id")
                continue
            if item in self.item_ids:
                self.report.add(
                    raw.ITEMS_FILE, line, f"duplicate item_id {item!r} (first on line {self.item_ids[item]})"
                )
                continue
            self.item_ids[item] = line
            counts["items"] += 1
            counts["items_with_text"] += bool(
                row.get("title", "").strip() or row.get("description", "").strip()
            )
            for modality in raw.MEDIA_COLUMNS:
                value = row.get(modality, "").strip()
                if value and self._check_media(line, modality, value):
                    counts[f"items_with_{modality}"] += 1
            self._check_declared(raw.ITEMS_FILE, line, row)

    def _check_media(self, line: int, modality: str, value: str) -> bool:
        if "://" in value:
            self.report.add(
                raw.ITEMS_FILE, line, f"{modality} {value!r} is a URI and was not checked", "warning"
            )
            return True
        try:
            path = raw.resolve_media_path(self.raw_dir, value)
        except raw.MediaPathError as e:
            self.report.add(raw.ITEMS_FILE, line, f"{modality}: {e}")
            return False
        with open(path, "rb") as f:
            head = f.read(16)
        if not head.startswith(_SIGNATURES[modality]):
            self.report.add(
                raw.ITEMS_FILE, line, f"{modality} {value!r} is not a recognised {modality} format"
            )
            return False
        return True

    def _check_declared(self, file_name: str, line: int, row: Mapping[str, str]) -> None:
        for name, decl in self.info.declared(file_name).items():
            value = row.get(name, "").strip()
            if decl.kind == "numeric" and value and not _is_finite_number(value):
                self.report.add(file_name, line, f"{name} {value!r} is not a finite number")

    def check_users(self) -> None:
        if not os.path.isfile(os.path.join(self.raw_dir, raw.USERS_FILE)):
            return
        self.user_ids = {}
        for line, row in self.rows(raw.USERS_FILE):
            user = row["user_id"].strip()
            if not user:
                self.report.add(raw.USERS_FILE, line, "empty user_id")
            elif user in self.user_ids:
                self.report.add(
                    raw.USERS_FILE, line, f"duplicate user_id {user!r} (first on line {self.user_ids[user]})"
                )
            else:
                self.user_ids[user] = line
                self._check_declared(raw.USERS_FILE, line, row)

    def check_interactions(self) -> None:
        counts = self.report.counts
        pairs: dict[tuple[str, str], int] = {}
        users: set[str] = set()
        for line, row in self.rows(raw.INTERACTIONS_FILE):
            user, item = row["user_id"].strip(), row["item_id"].strip()
            if not self._interaction_ok(line, row, user, item):
                continue
            counts["interactions"] += 1
            counts["with_timestamp"] += bool(row.get("timestamp", "").strip())
            counts["with_rating"] += bool(row.get("rating", "").strip())
            self.interacted.add(item)
            if (user, item) in pairs:
                self.report.add(
                    raw.INTERACTIONS_FILE,
                    line,
                    f"duplicate interaction ({user!r}, {item!r}), first on line {pairs[user, item]}; "
                    "preprocessing keeps the latest",
                    "warning",
                )
            else:
                pairs[user, item] = line
            if self.user_ids is not None and user not in self.user_ids and user not in users:
                self.report.add(raw.INTERACTIONS_FILE, line, f"user {user!r} is not in users.csv", "warning")
            users.add(user)
        counts["users"] = len(users | set(self.user_ids or ()))
        counts["cold_items"] = len(set(self.item_ids) - self.interacted)

    def _interaction_ok(self, line: int, row: Mapping[str, str], user: str, item: str) -> bool:
        problems = []
        if not user or not item:
            problems.append("empty user_id or item_id")
        elif item not in self.item_ids:
            problems.append(f"unknown item {item!r} (not in items.csv)")
        timestamp = row.get("timestamp", "").strip()
        if timestamp and not _is_integer(timestamp):
            problems.append(f"timestamp {timestamp!r} is not an integer number of seconds")
        for column in ("rating", "weight"):
            value = row.get(column, "").strip()
            if value and not _is_finite_number(value):
                problems.append(f"{column} {value!r} is not a finite number")
            elif value and float(value) < 0:
                problems.append(f"{column} {value} is negative")
        for problem in problems:
            self.report.add(raw.INTERACTIONS_FILE, line, problem)
        self._check_declared(raw.INTERACTIONS_FILE, line, row)
        return not problems

    def check_embeddings(self) -> None:
        for record in self.info.precomputed_embeddings:
            where = record.file
            try:
                raw.resolve_media_path(self.raw_dir, record.file)
                ids, matrix = raw.read_embeddings(self.raw_dir, record)
            except (raw.MediaPathError, OSError, KeyError, ValueError) as e:
                self.report.add(where, 0, f"cannot read precomputed {record.modality} embeddings: {e}")
                continue
            if matrix.shape != (len(ids), record.dim):
                self.report.add(
                    where, 0, f"expected shape [{len(ids)}, {record.dim}], got {list(matrix.shape)}"
                )
                continue
            if not np.all(np.isfinite(matrix)):
                self.report.add(
                    where, 0, f"{int((~np.isfinite(matrix)).any(axis=1).sum())} rows hold NaN or inf"
                )
            unknown = [str(i) for i in ids if str(i) not in self.item_ids]
            if unknown:
                self.report.add(where, 0, f"{len(unknown)} ids not in items.csv, e.g. {unknown[:3]}")
            self.report.counts[f"precomputed_{record.modality}"] = len(ids) - len(unknown)


def _is_finite_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _is_integer(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True
