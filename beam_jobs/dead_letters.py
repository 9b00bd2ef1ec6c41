"""Dead letters: every input a job could not use, with the row, the stage and the reason.

Jobs never crash on data. A DoFn that cannot use an element emits a
`DeadLetter` on its `DEAD_LETTER` output instead; `WriteDeadLetters` writes
them as JSON lines under `<out>/dead_letter/`, and the stage's counts record
input = written + dead-lettered.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import apache_beam as beam

DEAD_LETTER = "dead_letter"  # tag of the side output every validating DoFn has
DEAD_LETTER_DIR = "dead_letter"
_MAX_ROW_CHARS = 10_000  # keep a 10 MB field from turning the dead-letter file into a copy of it


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One unusable input.

    Attributes:
        stage: The job stage that rejected it, e.g. `items.parse`, `items.image`.
        reason: A short fixed category, e.g. `unknown item`; dead letters are counted by it.
        detail: The specifics a user acts on, e.g. `item 'x' is not in items.csv`.
        file: Source file, when known.
        line: 1-based line (or row) in that file; 0 when not applicable.
        row: The input as read (a dict of fields, or raw text), truncated if huge.
    """

    stage: str
    reason: str
    detail: str = ""
    file: str = ""
    line: int = 0
    row: Any = None

    def to_json(self) -> str:
        row = self.row
        text = json.dumps(row, ensure_ascii=False, default=str)
        if len(text) > _MAX_ROW_CHARS:
            row = {"truncated": text[:_MAX_ROW_CHARS], "original_chars": len(text)}
        record = {
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
            "file": self.file,
            "line": self.line,
            "row": row,
        }
        # surrogateescape'd bytes cannot be encoded; show them escaped instead of failing.
        return json.dumps(record, ensure_ascii=True, default=str)


def reason_key(letter: DeadLetter) -> str:
    """`stage: reason`, the key dead letters are counted by."""
    return f"{letter.stage}: {letter.reason}"


class WriteDeadLetters(beam.PTransform):
    """Writes dead letters to `<out>/dead_letter/<name>-*.jsonl` (an empty shard if none)."""

    def __init__(self, out_dir: str, name: str):
        super().__init__()
        self.out_dir = out_dir
        self.name = name

    def expand(self, letters):
        from tfrs_mm import fileio

        prefix = fileio.join(self.out_dir, DEAD_LETTER_DIR, self.name)
        return (
            letters
            | "ToJson" >> beam.Map(DeadLetter.to_json)
            | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl", num_shards=1)
        )
