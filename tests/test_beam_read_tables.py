"""ReadRawTable (CSV, JSON lines, Parquet) and WriteDeadLetters."""

import glob
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.dead_letters import DEAD_LETTER, DeadLetter, WriteDeadLetters
from beam_jobs.read_tables import ReadRawTable

DIRECT = ["--runner=DirectRunner"]


def read(pipeline, pattern):
    """Rows as (line, item_id, title) and dead letters as (line, reason)."""
    table = pipeline | ReadRawTable(pattern, "items.read", ("item_id",))
    rows = table.rows | beam.Map(lambda r: (r.line, r.values["item_id"], r.values.get("title", "")))
    return rows, table[DEAD_LETTER] | beam.Map(lambda d: (d.line, d.reason))


def test_csv_rows_and_dead_letters(tmp_path):
    path = tmp_path / "items.csv"
    path.write_bytes(
        b"\xef\xbb\xbfitem_id,title\n"  # a UTF-8 BOM, as spreadsheets write it
        b'i1,"two\nlines"\n'
        b"i2,too,many\n"
        b",no id\n"
        b"i3,caf\xe9\n"
        b"i4,ok\n"
    )
    with TestPipeline(argv=DIRECT) as p:
        rows, letters = read(p, str(path))
        assert_that(rows, equal_to([(2, "i1", "two\nlines"), (7, "i4", "ok")]), label="rows")
        expected = [(4, "wrong field count"), (5, "empty required field"), (6, "non-UTF-8 bytes")]
        assert_that(letters, equal_to(expected), label="letters")


def test_jsonl_rows_and_dead_letters(tmp_path):
    path = tmp_path / "items.jsonl"
    lines = [
        json.dumps({"item_id": "i1", "title": "One", "year": 1999}),
        "{broken",
        "[1, 2]",
        '{"title": "x"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    with TestPipeline(argv=DIRECT) as p:
        rows, letters = read(p, str(path))
        assert_that(rows, equal_to([(1, "i1", "One")]), label="rows")
        expected = [(2, "malformed JSON"), (3, "malformed JSON"), (4, "empty required field")]
        assert_that(letters, equal_to(expected), label="letters")


def test_parquet_and_globs(tmp_path):
    pq.write_table(pa.table({"item_id": ["i1", "i2"], "title": ["A", None]}), tmp_path / "items-0.parquet")
    pq.write_table(pa.table({"item_id": ["i3"], "title": ["C"]}), tmp_path / "items-1.parquet")
    (tmp_path / "items-2.parquet").write_bytes(b"not parquet")
    with TestPipeline(argv=DIRECT) as p:
        rows, letters = read(p, str(tmp_path / "items-*.parquet"))
        assert_that(rows, equal_to([(1, "i1", "A"), (2, "i2", ""), (1, "i3", "C")]), label="rows")
        assert_that(letters, equal_to([(0, "malformed Parquet")]), label="letters")


def test_write_dead_letters_as_json_lines(tmp_path):
    letters = [
        DeadLetter("items.image", "corrupt image", "bad huffman code", "items.csv", 3, {"item_id": "i1"}),
        DeadLetter("items.read", "oversized field", "", "items.csv", 9, {"title": "x" * 50_000}),
    ]
    with TestPipeline(argv=DIRECT) as p:
        _ = p | beam.Create(letters) | WriteDeadLetters(str(tmp_path), "items")
    (path,) = glob.glob(str(tmp_path / "dead_letter" / "items-*.jsonl"))
    with open(path) as f:
        records = sorted((json.loads(line) for line in f), key=lambda r: r["line"])
    assert records[0] == {
        "stage": "items.image",
        "reason": "corrupt image",
        "detail": "bad huffman code",
        "file": "items.csv",
        "line": 3,
        "row": {"item_id": "i1"},
    }
    assert records[1]["row"]["original_chars"] > 50_000  # huge rows are truncated, not copied whole
