"""Item rows → clean item records: typed columns, normalised text, one record per item id."""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections.abc import Iterator, Mapping

import apache_beam as beam

from beam_jobs.dead_letters import DEAD_LETTER, DeadLetter
from beam_jobs.read_tables import ID_BREAKERS, TableRow
from tfrs_mm.data import raw

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFC-normalised text with control characters removed and whitespace collapsed."""
    text = unicodedata.normalize("NFC", text)
    return _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()


@dataclasses.dataclass(frozen=True)
class ItemRecord:
    """A validated item, before media are read.

    Attributes:
        item_id: The catalog's id.
        title: Normalised title ("" when absent).
        text: What the text encoder sees: title and description ("" when both are absent).
        categories: Category labels.
        image: Media path as written in the catalog ("" when absent); same for `audio`.
        extras: Declared extra columns, typed: numeric → float or None, multi → tuple, else str.
        file: Source file; `line` is its 1-based line (for dead letters and dedupe order).
    """

    item_id: str
    title: str
    text: str
    categories: tuple[str, ...]
    image: str
    audio: str
    extras: Mapping[str, object]
    file: str
    line: int


class ParseItemFn(beam.DoFn):
    """`TableRow` → `ItemRecord`; rows with a bad id or declared value become dead letters."""

    STAGE = "items.parse"

    def __init__(self, declared: tuple[raw.ColumnDecl, ...]):
        self.declared = declared

    def process(self, row: TableRow) -> Iterator:
        values = row.values
        extras, problem = _typed_extras(values, self.declared)
        reason = "bad declared value"
        if any(c in values.get("item_id", "").strip() for c in ID_BREAKERS):
            reason, problem = "invalid id", "item_id holds a tab or line break"
        if problem:
            letter = DeadLetter(self.STAGE, reason, problem, row.file, row.line, values)
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter)
            return
        title = normalize_text(values.get("title", ""))
        description = normalize_text(values.get("description", ""))
        categories = tuple(
            c
            for c in (normalize_text(v) for v in values.get("categories", "").split(raw.CATEGORY_SEPARATOR))
            if c
        )
        yield ItemRecord(
            item_id=values["item_id"].strip(),
            title=title,
            text=". ".join(t for t in (title, description) if t),
            categories=categories,
            image=values.get("image", "").strip(),
            audio=values.get("audio", "").strip(),
            extras=extras,
            file=row.file,
            line=row.line,
        )


def _typed_extras(values: Mapping[str, str], declared) -> tuple[dict[str, object], str]:
    extras: dict[str, object] = {}
    for column in declared:
        value = values.get(column.name, "").strip()
        if column.kind == "numeric":
            if not value:
                extras[column.name] = None
                continue
            try:
                number = float(value)
            except ValueError:
                return {}, f"{column.name} {value!r} is not a number"
            if not math.isfinite(number):
                return {}, f"{column.name} {value!r} is not finite"
            extras[column.name] = number
        elif column.kind == "multi_categorical":
            extras[column.name] = tuple(v.strip() for v in value.split(raw.CATEGORY_SEPARATOR) if v.strip())
        else:
            extras[column.name] = normalize_text(value)
    return extras, ""


class KeepFirstFn(beam.DoFn):
    """For (item_id, records): the first record by (file, line) wins; the rest are dead letters."""

    STAGE = "items.dedupe"

    def process(self, element: tuple[str, list[ItemRecord]]) -> Iterator:
        item_id, records = element
        ordered = sorted(records, key=lambda r: (r.file, r.line))
        yield ordered[0]
        for duplicate in ordered[1:]:
            detail = f"item_id {item_id!r} first seen at {ordered[0].file}:{ordered[0].line}"
            letter = DeadLetter(self.STAGE, "duplicate item", detail, duplicate.file, duplicate.line, item_id)
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter)


class DedupeItems(beam.PTransform):
    """Keeps one record per item id; outputs `items` and `dead_letter`."""

    def expand(self, records):
        return (
            records
            | "KeyById" >> beam.Map(lambda r: (r.item_id, r))
            | "GroupById" >> beam.GroupByKey()
            | "KeepFirst" >> beam.ParDo(KeepFirstFn()).with_outputs(DEAD_LETTER, main="items")
        )
