"""The items job: raw catalog → validated, deduplicated, embedded item records.

    python -m beam_jobs.items --raw RAW --out DATA [--runner=DirectRunner ...]

Reads `items.csv` (or JSONL/Parquet) through Beam filesystems, validates and
deduplicates rows, normalises text, reads and decodes images and audio,
embeds every modality with a pretrained encoder via `RunInference` (or passes
a dataset's precomputed embeddings through), and writes:

- `items-*.tfrecord.gz`: one tf.train.Example per item (`schema.item_features`),
  with per-modality embeddings and presence masks;
- `vocab/item_id.txt`, `vocab/categories.txt`;
- `dead_letter/items-*.jsonl`: every rejected row or media file, with reason;
- `stats/items.json`: counts per stage, written by the pipeline itself.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping

import apache_beam as beam
import numpy as np

from beam_jobs.dead_letters import DEAD_LETTER, DeadLetter, WriteDeadLetters, reason_key
from beam_jobs.embed import EmbedWithEncoder, ReadPrecomputedFn
from beam_jobs.item_media import DecodeAudioFn, ReadImageFn
from beam_jobs.item_records import DedupeItems, ItemRecord, ParseItemFn
from beam_jobs.progress import LogProgressFn
from beam_jobs.read_tables import ReadRawTable
from tfrs_mm import fileio
from tfrs_mm.data import raw
from tfrs_mm.schema import features as F

ITEMS_PREFIX = "items"
STATS_DIR = "stats"


@dataclasses.dataclass(frozen=True)
class ModalitySource:
    """Where one modality's embeddings come from.

    Attributes:
        dim: Embedding size.
        model_path: A SavedModel taking raw input (see `tfrs_mm.encoders`), or
        precomputed: the URI of a dataset's precomputed `.npz`.
    """

    dim: int
    model_path: str = ""
    precomputed: str = ""


@dataclasses.dataclass(frozen=True)
class ItemsJobSpec:
    """Everything the items job needs; built by `beam_jobs.preprocess` from config and manifest."""

    raw_dir: str
    out_dir: str
    items_pattern: str
    modalities: Mapping[str, ModalitySource]
    item_columns: tuple[raw.ColumnDecl, ...] = ()
    audio_seconds: float = 3.0
    batch_size: int = 32


class BuildItemExampleFn(beam.DoFn):
    """Joined (item_id, {item, text, image, audio}) → serialised item Example."""

    def __init__(self, dims: Mapping[str, int], item_columns: tuple[raw.ColumnDecl, ...]):
        self.dims = dict(dims)
        self.item_columns = item_columns
        self.specs = F.item_features(self.dims, item_columns)

    def process(self, element) -> Iterator:
        _, joined = element
        if not joined["item"]:
            return  # embeddings of a dead-lettered or unknown item: counted where they were rejected
        item: ItemRecord = joined["item"][0]
        values = {F.ITEM_ID: item.item_id, F.TITLE: item.title, F.CATEGORIES: list(item.categories)}
        for modality, dim in self.dims.items():
            vectors = joined.get(modality) or []
            present = bool(vectors)
            values[F.embedding_feature(modality)] = vectors[0] if present else np.zeros(dim, np.float32)
            values[F.presence_feature(modality)] = int(present)
            if present:
                yield beam.pvalue.TaggedOutput("stats", f"{modality}/embedded")
        for column in self.item_columns:
            value = item.extras.get(column.name)
            if column.kind == "numeric":
                values[column.name] = 0.0 if value is None else value
                values[F.presence_feature(column.name)] = int(value is not None)
            else:
                values[column.name] = list(value) if column.kind == "multi_categorical" else value
        yield F.encode_example(self.specs, values)


def _items_with(modality: str, item: ItemRecord) -> bool:
    return bool(item.text if modality == "text" else getattr(item, modality, ""))


def _modality_input(spec: ItemsJobSpec, modality: str, items):
    """(item_id, raw input) for one encoded modality, plus that stage's dead letters."""
    has = items | f"With{modality.title()}" >> beam.Filter(lambda r, m=modality: _items_with(m, r))
    if modality == "text":
        return has | "TextInput" >> beam.Map(lambda r: (r.item_id, r.text)), []
    if modality == "image":
        read = has | "ReadImages" >> beam.ParDo(ReadImageFn(spec.raw_dir)).with_outputs(
            DEAD_LETTER, main="ok"
        )
    else:
        fn = DecodeAudioFn(spec.raw_dir, spec.audio_seconds)
        read = has | "DecodeAudio" >> beam.ParDo(fn).with_outputs(DEAD_LETTER, main="ok")
    return read.ok, [read[DEAD_LETTER]]


def _embeddings(pipeline, spec: ItemsJobSpec, items):
    """{modality: (item_id, vector)} and the media-stage dead letters."""
    embedded, letters = {}, []
    for modality, source in sorted(spec.modalities.items()):
        name = modality.title()
        if source.precomputed:
            read = (
                pipeline
                | f"Precomputed{name}Path" >> beam.Create([source.precomputed])
                | f"ReadPrecomputed{name}"
                >> beam.ParDo(ReadPrecomputedFn(modality, source.dim)).with_outputs(DEAD_LETTER, main="ok")
            )
            embedded[modality], stage_letters = read.ok, [read[DEAD_LETTER]]
        else:
            inputs, stage_letters = _modality_input(spec, modality, items)
            embedded[modality] = inputs | f"Embed{name}" >> EmbedWithEncoder(
                source.model_path, spec.batch_size
            )
        letters += stage_letters
    return embedded, letters


def build_items_pipeline(pipeline: beam.Pipeline, spec: ItemsJobSpec) -> None:
    """Adds the items job's transforms to `pipeline`."""
    table = pipeline | "ReadItems" >> ReadRawTable(spec.items_pattern, "items.read", ("item_id",))
    parsed = table.rows | "ParseItems" >> beam.ParDo(ParseItemFn(spec.item_columns)).with_outputs(
        DEAD_LETTER, main="items"
    )
    deduped = parsed.items | "DedupeItems" >> DedupeItems()
    items = deduped.items
    embedded, media_letters = _embeddings(pipeline, spec, items)

    joined = {"item": items | "KeyItems" >> beam.Map(lambda r: (r.item_id, r)), **embedded}
    built = (
        joined
        | "JoinEmbeddings" >> beam.CoGroupByKey()
        | "BuildExamples"
        >> beam.ParDo(
            BuildItemExampleFn({m: s.dim for m, s in spec.modalities.items()}, spec.item_columns)
        ).with_outputs("stats", main="examples")
    )
    _ = built.examples | "LogItemsWritten" >> beam.ParDo(LogProgressFn("items written", every=200))
    _ = built.examples | "WriteItems" >> beam.io.WriteToTFRecord(
        fileio.join(spec.out_dir, ITEMS_PREFIX), file_name_suffix=".tfrecord.gz"
    )
    _write_vocabularies(spec.out_dir, items)

    item_letters = [table[DEAD_LETTER], parsed[DEAD_LETTER], deduped[DEAD_LETTER]]
    letters = (*item_letters, *media_letters) | "AllDeadLetters" >> beam.Flatten()
    _ = letters | "WriteDeadLetters" >> WriteDeadLetters(spec.out_dir, "items")
    _write_stats(spec, table.rows, items, built, letters)


def _write_vocabularies(out_dir: str, items) -> None:
    ids = items | "ItemIds" >> beam.Map(lambda r: r.item_id)
    _ = (
        ids
        | "SortIds" >> beam.combiners.ToList()
        | "IdLines" >> beam.FlatMap(sorted)
        | "WriteItemVocab"
        >> (beam.io.WriteToText(fileio.join(out_dir, "vocab", "item_id.txt"), shard_name_template=""))
    )
    categories = (
        items | "Categories" >> beam.FlatMap(lambda r: r.categories) | beam.combiners.Count.PerElement()
    )
    _ = (
        categories
        | "CategoryList" >> beam.combiners.ToList()
        | "ByFrequency"
        >> beam.FlatMap(lambda kvs: [k for k, _ in sorted(kvs, key=lambda kv: (-kv[1], kv[0]))])
        | "WriteCategoryVocab"
        >> beam.io.WriteToText(fileio.join(out_dir, "vocab", "categories.txt"), shard_name_template="")
    )


def _write_stats(spec: ItemsJobSpec, rows, items, built, letters) -> None:
    """Counts per stage, computed in the pipeline so any runner produces them."""
    keys = [
        rows | "CountRows" >> beam.Map(lambda _: "input"),
        letters | "LetterKeys" >> beam.FlatMap(_letter_keys),
        built.examples | "CountWritten" >> beam.Map(lambda _: "written"),
        built.stats,
    ]
    for modality, source in sorted(spec.modalities.items()):
        if not source.precomputed:
            keys.append(
                items
                | f"Count{modality.title()}Input"
                >> beam.FlatMap(lambda r, m=modality: [f"{m}/input"] * _items_with(m, r))
            )
    _ = (
        keys
        | "AllStatKeys" >> beam.Flatten()
        | "CountKeys" >> beam.combiners.Count.PerElement()
        | "StatsDict" >> beam.combiners.ToDict()
        | "StatsJson" >> beam.Map(lambda counts: json.dumps(dict(sorted(counts.items())), indent=2))
        | "WriteStats"
        >> beam.io.WriteToText(fileio.join(spec.out_dir, STATS_DIR, "items.json"), shard_name_template="")
    )


def _letter_keys(letter: DeadLetter) -> list[str]:
    keys = [f"dead_letter/{reason_key(letter)}"]
    if letter.stage.startswith("items.") and letter.stage.split(".")[1] in raw.MODALITIES:
        keys.append(f"{letter.stage.split('.')[1]}/dead_lettered")
    elif letter.stage == "items.read":
        keys.append("input")  # rejected before it became a row, but it was read
    return keys
