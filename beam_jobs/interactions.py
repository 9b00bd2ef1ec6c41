"""Beam job: raw interactions -> train/valid/test TFRecords, vocabularies and stats.

    python -m beam_jobs.interactions --raw RAW --out DATA [--split cold-item] [--config FILE]
        [--set data.field=value ...] [--pseudonym-key-file KEY] [beam pipeline options]

Parse (`ReadRawTable`) -> pseudonymise user ids (optional; before anything is
written, so raw ids reach no output) -> validate against the item vocabulary
(`DATA/vocab/item_id.txt` from the items job, a side input) -> group per user,
dedupe, filter, split with leakage-free histories (`beam_jobs.split`) -> write
under DATA: `{train,valid,test}-*.tfrecord.gz`, `vocab/user_id.txt`,
`vocab/item_frequencies.tsv`, `dead_letter/interactions-*.jsonl` and
`stats/interactions.json`, whose stage counts balance:
input = written + dead-lettered + filtered.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from collections.abc import Container, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.dead_letters import DEAD_LETTER, DeadLetter, WriteDeadLetters
from beam_jobs.interaction_outputs import (
    PARSE,
    VALIDATE,
    JobSpec,
    WriteSplits,
    WriteStats,
    WriteVocabularies,
    read_stats,
)
from beam_jobs.progress import LogProgressFn
from beam_jobs.read_tables import ID_BREAKERS, ReadRawTable, TableRow
from beam_jobs.split import (
    SPLITS,
    TRAIN,
    DedupeInteractions,
    FilterInteractions,
    GroupByUser,
    Interaction,
    SplitInteractions,
    check_split_supported,
)
from tfrs_mm import fileio
from tfrs_mm.config import DataConfig, load_config
from tfrs_mm.data import raw
from tfrs_mm.privacy import KEY_ENV_VAR, Pseudonymizer, PseudonymKeyError, load_pseudonymizer

logger = logging.getLogger("beam_jobs")

REDACTED = "<row withheld: its user id cannot be pseudonymised>"
_LOG_EVERY = 100_000


def parse_interaction(
    row: TableRow, known_items: Container[str], has_timestamps: bool
) -> Interaction | tuple[str, str]:
    """An `Interaction`, or (reason, detail) of why the row is unusable.

    Reasons: `empty id`, `invalid id`, `unknown item`, `missing timestamp`,
    `invalid timestamp`, `invalid rating`, `invalid weight` (the first problem
    names the reason; the detail lists them all). Timestamps are ignored when
    the dataset has none.
    """
    values = row.values
    user, item = values.get("user_id", "").strip(), values.get("item_id", "").strip()
    problems = []
    if not user or not item:
        problems.append(("empty id", "empty user_id or item_id"))
    elif any(c in user + item for c in ID_BREAKERS):
        problems.append(("invalid id", "user_id or item_id holds a tab or line break"))
    elif item not in known_items:
        problems.append(("unknown item", f"item {item!r} is not in the item vocabulary"))
    timestamp, text = 0, values.get("timestamp", "").strip()
    if has_timestamps and not text:
        problems.append(("missing timestamp", "the dataset has timestamps but this row has none"))
    elif has_timestamps:
        try:
            timestamp = int(text)
        except ValueError:
            problems.append(("invalid timestamp", f"timestamp {text!r} is not an integer number of seconds"))
    rating = _number(values, "rating", None, problems)
    weight = _number(values, "weight", 1.0, problems)
    if problems:
        return problems[0][0], "; ".join(detail for _, detail in problems)
    return Interaction(user, item, timestamp, rating, weight, row.file, row.line)


def _number(values: dict, column: str, default: float | None, problems: list) -> float | None:
    text = values.get(column, "").strip()
    if not text:
        return default
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        problems.append((f"invalid {column}", f"{column} {text!r} is not a finite non-negative number"))
    return number


class ValidateInteractionFn(beam.DoFn):
    """`TableRow` -> `Interaction`, or a `DeadLetter` (stage `interactions.validate`)."""

    def __init__(self, has_timestamps: bool):
        self.has_timestamps = has_timestamps
        self.valid = beam.metrics.Metrics.counter("interactions", "valid_rows")
        self.invalid = beam.metrics.Metrics.counter("interactions", "dead_lettered_rows")

    def process(self, row: TableRow, known_items: Container[str]):
        result = parse_interaction(row, known_items, self.has_timestamps)
        if isinstance(result, Interaction):
            self.valid.inc()
            yield result
        else:
            self.invalid.inc()
            letter = DeadLetter(VALIDATE, result[0], result[1], row.file, row.line, row.values)
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter)


def pseudonymize_row(row: TableRow, pseudonymize: Pseudonymizer) -> TableRow:
    """The row with its (stripped) user id replaced by its pseudonym; empty ids stay empty."""
    user = row.values.get("user_id", "").strip()
    return TableRow(row.file, row.line, {**row.values, "user_id": pseudonymize(user) if user else ""})


def pseudonymize_letter(letter: DeadLetter, pseudonymize: Pseudonymizer) -> DeadLetter:
    """A parse dead letter with its user id pseudonymised, or its row withheld if not a field dict."""
    row = letter.row
    if isinstance(row, dict):
        user = str(row.get("user_id", "")).strip()
        row = {**row, "user_id": pseudonymize(user) if user else ""}
    elif row not in (None, ""):
        row = REDACTED  # a raw line or a list of fields: the user id cannot be told apart
    return dataclasses.replace(letter, row=row)


class PseudonymizeUsers(beam.PTransform):
    """(rows, parse dead letters) -> the same with every user id replaced by its pseudonym."""

    def __init__(self, pseudonymizer: Pseudonymizer):
        super().__init__()
        self.pseudonymizer = pseudonymizer

    def expand(self, inputs):
        rows, letters = inputs
        return (
            rows | "Rows" >> beam.Map(pseudonymize_row, self.pseudonymizer),
            letters | "DeadLetters" >> beam.Map(pseudonymize_letter, self.pseudonymizer),
        )


class ValidateInteractions(beam.PTransform):
    """`TableRow`s -> `Interaction`s (main) and dead letters (`dead_letter`)."""

    def __init__(self, known_items, has_timestamps: bool):
        super().__init__()
        self.known_items = known_items  # AsSingleton side input: a set of item ids
        self.has_timestamps = has_timestamps

    def expand(self, rows):
        return rows | "Validate" >> beam.ParDo(
            ValidateInteractionFn(self.has_timestamps), known_items=self.known_items
        ).with_outputs(DEAD_LETTER, main="interactions")


class PreprocessInteractions(beam.PTransform):
    """The whole job on a pipeline root: reads, transforms and writes everything under `out_dir`."""

    def __init__(self, job: JobSpec):
        super().__init__()
        self.job = job

    def expand(self, pbegin):
        job = self.job
        vocab = pbegin | "ReadItemVocab" >> beam.io.ReadFromText(job.item_vocab)
        vocab = vocab | "Strip" >> beam.Map(str.strip) | "NonEmpty" >> beam.Filter(bool)
        known = beam.pvalue.AsSingleton(vocab | "VocabSet" >> beam.combiners.ToSet())
        required = raw.REQUIRED_COLUMNS[raw.INTERACTIONS_FILE]
        parsed = pbegin | "Read" >> ReadRawTable(job.interactions, PARSE, required)
        rows, parse_dead = parsed.rows, parsed.dead_letter
        if job.config.pseudonymize_users:
            rows, parse_dead = (rows, parse_dead) | "Pseudonymize" >> PseudonymizeUsers(job.pseudonymizer)
        _ = rows | "Progress" >> beam.ParDo(LogProgressFn("interactions read", every=_LOG_EVERY))
        valid = rows | "ValidateRows" >> ValidateInteractions(known, job.has_timestamps)
        groups = valid.interactions | "GroupByUser" >> GroupByUser()
        deduped = groups | "DedupeRows" >> DedupeInteractions()
        kept, filtered = deduped.groups | "FilterRows" >> FilterInteractions(job.config)
        splits = kept | "SplitRows" >> SplitInteractions(job.config)
        letters = (parse_dead, valid.dead_letter, deduped.dead_letter) | "AllDeadLetters" >> beam.Flatten()
        _ = letters | "WriteDeadLetters" >> WriteDeadLetters(job.out_dir, "interactions")
        _ = splits | "WriteSplits" >> WriteSplits(job.out_dir, job.config.history_length)
        users, items = splits[TRAIN] | "WriteVocabularies" >> WriteVocabularies(job.out_dir, vocab)
        named = dict(splits, parsed=rows, validated=valid.interactions, deduped=deduped.groups, kept=kept)
        named.update(letters=letters, filtered=filtered, vocab=vocab)
        named.update(user_counts=users, item_counts=items)
        return named | "WriteStats" >> WriteStats(job)


def build_interactions_pipeline(
    pipeline: beam.Pipeline,
    interactions_pattern: str,
    item_vocab_path: str,
    out_dir: str,
    config: DataConfig,
    has_timestamps: bool,
    pseudonymizer: Pseudonymizer | None = None,
) -> None:
    """Adds the interactions job to `pipeline`; running it writes everything under `out_dir`.

    Checks the inputs and removes this job's shards from an earlier run first,
    so a failure here comes before any pipeline work.

    Args:
        pipeline: A fresh pipeline (or `TestPipeline`); the caller runs it.
        interactions_pattern: File pattern of the raw interaction table(s): CSV, JSONL or Parquet.
        item_vocab_path: Item ids, one per line (the items job's `DATA/vocab/item_id.txt`).
        out_dir: The dataset directory DATA (local path or URI).
        config: Split, filters, history length, seed and `pseudonymize_users`.
        has_timestamps: False when the dataset has none (`dataset.json`).
        pseudonymizer: Required when `config.pseudonymize_users` (`tfrs_mm.privacy.load_pseudonymizer`).

    Raises:
        ValueError: on a split the data cannot support, or pseudonymisation without a key.
        FileNotFoundError: if no file matches `interactions_pattern` or `item_vocab_path`.
    """
    check_split_supported(config, has_timestamps)
    if config.pseudonymize_users and pseudonymizer is None:
        raise PseudonymKeyError(
            "pseudonymize_users is on but no pseudonym key was given: pass a pseudonymizer built by "
            f"tfrs_mm.privacy.load_pseudonymizer (--pseudonym-key-file or ${KEY_ENV_VAR})"
        )
    for pattern, what in ((interactions_pattern, "interactions"), (item_vocab_path, "item vocabulary")):
        if not [m for r in FileSystems.match([pattern]) for m in r.metadata_list]:
            raise FileNotFoundError(f"no {what} file matches {pattern}")
    _remove_stale_outputs(out_dir)
    job = JobSpec(interactions_pattern, out_dir, item_vocab_path, config, has_timestamps, pseudonymizer)
    _ = pipeline | "PreprocessInteractions" >> PreprocessInteractions(job)


def _remove_stale_outputs(out_dir: str) -> None:
    """Deletes shards an earlier run left (their count may differ), so globs see only this run's."""
    patterns = [fileio.join(out_dir, f"{s}-*.tfrecord.gz") for s in SPLITS]
    patterns.append(fileio.join(out_dir, "dead_letter", "interactions-*.jsonl"))
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        logger.info("interactions: removing %d shards of an earlier run", len(stale))
        FileSystems.delete(stale)


def _parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--raw", required=True, help="raw dataset dir (dataset.json says if there are timestamps)"
    )
    parser.add_argument("--interactions", help="interaction file pattern; default RAW/interactions.csv")
    parser.add_argument("--out", required=True, help="dataset directory DATA")
    parser.add_argument("--item-vocab", help="item ids, one per line; default DATA/vocab/item_id.txt")
    parser.add_argument("--split", choices=["random", "leave-last-out", "temporal", "cold-item"])
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--pseudonym-key-file", help=f"secret key file; default ${KEY_ENV_VAR}")
    return parser.parse_known_args(argv)


def run(argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """`python -m beam_jobs.interactions`: unknown flags are Beam pipeline options; returns the stats."""
    args, beam_args = _parse_args(argv)
    config = load_config(args.config, overrides=args.set).data
    if args.split:
        config = dataclasses.replace(config, split=args.split)
    pseudonymizer = load_pseudonymizer(args.pseudonym_key_file) if config.pseudonymize_users else None
    if not any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        beam_args.append("--runner=DirectRunner")  # Prism, Beam's default, downloads a binary: not offline
    pipeline = test_pipeline or beam.Pipeline(options=PipelineOptions(beam_args))
    build_interactions_pipeline(
        pipeline,
        interactions_pattern=args.interactions or fileio.join(args.raw, raw.INTERACTIONS_FILE),
        item_vocab_path=args.item_vocab or fileio.join(args.out, "vocab", "item_id.txt"),
        out_dir=args.out,
        config=config,
        has_timestamps=raw.read_info(args.raw).has_timestamps,
        pseudonymizer=pseudonymizer,
    )
    result = pipeline.run()
    result.wait_until_finish()
    for counter in result.metrics().query(MetricsFilter().with_namespace("interactions"))["counters"]:
        logger.info("interactions %s: %s", counter.key.metric.name, counter.result)
    return read_stats(args.out)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
