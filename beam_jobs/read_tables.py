"""Reading raw tables (CSV, JSON lines, Parquet) through Beam filesystems, row by row.

Files are matched with `fileio`, so local paths, globs and `gs://` URIs all
work. Each file is parsed whole by one worker because quoted CSV fields may
span lines; split big inputs into several files (a glob) for parallelism.
Rows that cannot be parsed become dead letters with file and line.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io import fileio

from beam_jobs.dead_letters import DEAD_LETTER, DeadLetter
from tfrs_mm.data import raw

MAX_FIELD_BYTES = 1 << 20  # as in `tfrs-mm validate`
ID_BREAKERS = ("\n", "\r", "\t")  # an id holding one would break the one-token-per-line vocabulary files
CSV_FIELD_LIMIT = 1 << 26  # csv refuses longer fields; ours are read, then dead-lettered if > MAX


Problem = tuple[str, str] | None  # (reason, detail) of an unusable row


@dataclasses.dataclass(frozen=True)
class TableRow:
    """One parsed row: its origin and its fields as strings (missing values are "")."""

    file: str
    line: int
    values: dict[str, str]


class ParseTableFileFn(beam.DoFn):
    """Parses one matched file into `TableRow`s; malformed rows go to `DEAD_LETTER`."""

    def __init__(self, stage: str, required: tuple[str, ...]):
        self.stage = stage
        self.required = required

    def process(self, readable: fileio.ReadableFile) -> Iterator:
        path = readable.metadata.path
        lower = path.lower()
        if lower.endswith(".parquet"):
            rows = _parquet_rows(readable)
        elif lower.endswith((".jsonl", ".json", ".ndjson")):
            rows = _jsonl_rows(readable)
        else:
            rows = _csv_rows(readable)
        for line, values, problem in rows:
            if problem is None:
                missing = [c for c in self.required if not values.get(c, "").strip()]
                problem = ("empty required field", f"empty {missing}") if missing else None
            if problem is None:
                yield TableRow(path, line, values)
            else:
                letter = DeadLetter(self.stage, problem[0], problem[1], path, line, values)
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter)


def _csv_rows(readable: fileio.ReadableFile) -> Iterator[tuple[int, dict | str, Problem]]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with readable.open(mime_type="application/octet-stream") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text, strict=True)
        try:
            header = [h.strip() for h in next(reader)]
        except (StopIteration, csv.Error) as e:
            yield 1, "", ("malformed CSV", f"no readable header ({e or 'empty file'})")
            return
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield start, "", ("malformed CSV", f"row read up to line {reader.line_num}: {e}")
                continue
            if len(fields) != len(header):
                yield (
                    start,
                    _escape(fields),
                    ("wrong field count", f"expected {len(header)}, got {len(fields)}"),
                )
                continue
            yield (start, *_checked(dict(zip(header, fields))))


def _jsonl_rows(readable: fileio.ReadableFile) -> Iterator[tuple[int, dict | str, Problem]]:
    with readable.open(mime_type="application/octet-stream") as raw:
        for line_number, line in enumerate(raw, start=1):
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                yield line_number, line[:200].decode("utf-8", "replace"), ("non-UTF-8 bytes", "in the line")
                continue
            except json.JSONDecodeError as e:
                yield line_number, line[:200].decode("utf-8", "replace"), ("malformed JSON", str(e))
                continue
            if not isinstance(record, dict):
                yield line_number, record, ("malformed JSON", "a row must be a JSON object")
                continue
            yield (line_number, *_checked({k: _to_text(v) for k, v in record.items()}))


def _parquet_rows(readable: fileio.ReadableFile) -> Iterator[tuple[int, dict | str, Problem]]:
    import pyarrow.parquet as pq

    with readable.open(mime_type="application/octet-stream") as raw:
        try:
            table = pq.read_table(io.BytesIO(raw.read()))
        except Exception as e:  # any pyarrow failure means the file is unusable
            yield 0, "", ("malformed Parquet", str(e))
            return
    for index, record in enumerate(table.to_pylist(), start=1):
        yield (index, *_checked({k: _to_text(v) for k, v in record.items()}))


def _checked(values: dict[str, str]) -> tuple[dict[str, str], Problem]:
    bad = [k for k, v in values.items() if raw.has_undecodable_bytes(v)]
    if bad:
        return _escape_dict(values), ("non-UTF-8 bytes", f"in column(s) {bad}")
    big = [k for k, v in values.items() if len(v) > MAX_FIELD_BYTES]
    if big:
        return values, ("oversized field", f"{big} exceed {MAX_FIELD_BYTES:,} bytes")
    return values, None


def _to_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "|".join(str(v) for v in value)
    return str(value)


def _escape(fields: list[str]) -> list[str]:
    return [f.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for f in fields]


def _escape_dict(values: dict[str, str]) -> dict[str, str]:
    return dict(zip(values, _escape(list(values.values()))))


class ReadRawTable(beam.PTransform):
    """Reads every file matching `pattern` into `TableRow`s plus a dead-letter output.

    Returns:
        A tuple result with `rows` (main) and `dead_letter` outputs.
    """

    def __init__(self, pattern: str, stage: str, required: tuple[str, ...]):
        super().__init__()
        self.pattern = pattern
        self.stage = stage
        self.required = required

    def expand(self, pbegin):
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self.pattern)
            | "Open" >> fileio.ReadMatches()
            | "Parse"
            >> beam.ParDo(ParseTableFileFn(self.stage, self.required)).with_outputs(DEAD_LETTER, main="rows")
        )
