"""The users job: the optional `users.csv` -> one user-feature record per user, vocabularies and stats.

    python -m beam_jobs.users --raw RAW --out DATA [--pseudonymize-users --pseudonym-key-file KEY]
        [beam pipeline options]

`tfrs-mm preprocess` adds it to the interactions pipeline when `RAW/users.csv`
exists. Read (`ReadRawTable`) -> pseudonymise user ids (optional; the same
key and function as the interactions, so the trainer joins on them) ->
validate the declared columns (`dataset.json` `user_columns`) -> keep the
first row per user id by (file, line) -> write under DATA:
`users-*.tfrecord.gz` (`schema.user_features`), `vocab/user.<column>.txt` per
categorical column, `dead_letter/users-*.jsonl` and `stats/users.json`, whose
stage counts balance: input = written + dead-lettered.

Users without interactions are written too (a cold user still has
features); interaction users missing from `users.csv` get no record, and the
model treats their features as missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs.dead_letters import DEAD_LETTER, DeadLetter, WriteDeadLetters, reason_key
from beam_jobs.interaction_outputs import read_balanced_stats, vocabulary_lines, write_one_file
from beam_jobs.interactions import PseudonymizeUsers
from beam_jobs.item_records import normalize_text
from beam_jobs.read_tables import ID_BREAKERS, ReadRawTable, TableRow
from tfrs_mm import fileio
from tfrs_mm.data import raw
from tfrs_mm.data.raw import ColumnDecl
from tfrs_mm.privacy import KEY_ENV_VAR, Pseudonymizer, load_pseudonymizer
from tfrs_mm.schema import features as F

logger = logging.getLogger("beam_jobs")

READ, VALIDATE, DEDUPE = "users.read", "users.validate", "users.dedupe"
STAGES = (READ, VALIDATE, DEDUPE)
USERS_PREFIX = "users"  # DATA/users-*.tfrecord.gz
STATS_FILE = "stats/users.json"  # paths relative to DATA
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # larger numbers would be stored as inf


def vocabulary_file(name: str) -> str:
    """The vocabulary of user feature `name` (e.g. `user.gender`), relative to DATA."""
    return f"vocab/{name}.txt"


def categorical_features(columns: Sequence[ColumnDecl]) -> list[str]:
    """Feature names of the categorical user columns, the ones with a vocabulary."""
    return [F.user_feature(c.name) for c in columns if c.kind == "categorical"]


@dataclasses.dataclass(frozen=True)
class UserRecord:
    """A validated user row.

    Attributes:
        user_id: Stripped (and pseudonymised when configured).
        features: Every `schema.user_features` value, keyed by feature name.
        file: Source file; `line` is its 1-based line (for dead letters and dedupe order).
    """

    user_id: str
    features: Mapping[str, object]
    file: str
    line: int


def parse_user(row: TableRow, columns: Sequence[ColumnDecl]) -> UserRecord | tuple[str, str]:
    """A `UserRecord`, or (reason, detail) of why the row is unusable.

    Reasons: `empty id` (in the job, `ReadRawTable` dead-letters those first as
    `empty required field`), `invalid id` (a tab or line break), `invalid <column>`
    (a numeric column that is not a finite float32 number; the first bad
    column names the reason, the detail lists them all). Categorical values
    are normalised like item text; an empty one is missing (""), as is an
    empty numeric value (0 with presence 0). Other column kinds are ignored.
    """
    user = row.values.get("user_id", "").strip()
    if not user:
        return "empty id", "empty user_id"
    if any(c in user for c in ID_BREAKERS):
        return "invalid id", "user_id holds a tab or line break"
    features: dict[str, object] = {F.USER_ID: user}
    problems: list[tuple[str, str]] = []
    for column in columns:
        name, text = F.user_feature(column.name), row.values.get(column.name, "")
        if column.kind == "categorical":
            features[name] = normalize_text(text)
        elif column.kind == "numeric":
            number = _number(column.name, text, problems)
            features[name] = 0.0 if number is None else number
            features[F.presence_feature(name)] = int(number is not None)
    if problems:
        return problems[0][0], "; ".join(detail for _, detail in problems)
    return UserRecord(user, features, row.file, row.line)


def _number(column: str, text: str, problems: list) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
        problems.append((f"invalid {column}", f"{column} {text!r} is not a finite number"))
    return number


class ValidateUserFn(beam.DoFn):
    """`TableRow` -> `UserRecord`, or a `DeadLetter` (stage `users.validate`)."""

    def __init__(self, columns: tuple[ColumnDecl, ...]):
        self.columns = columns
        self.valid = beam.metrics.Metrics.counter("users", "valid_rows")
        self.invalid = beam.metrics.Metrics.counter("users", "dead_lettered_rows")

    def process(self, row: TableRow) -> Iterator:
        result = parse_user(row, self.columns)
        if isinstance(result, UserRecord):
            self.valid.inc()
            yield result
        else:
            self.invalid.inc()
            letter = DeadLetter(VALIDATE, result[0], result[1], row.file, row.line, row.values)
            yield pvalue.TaggedOutput(DEAD_LETTER, letter)


class KeepFirstUserFn(beam.DoFn):
    """For (user_id, records): the first record by (file, line) wins; the rest are dead letters."""

    def process(self, element: tuple[str, list[UserRecord]]) -> Iterator:
        user_id, records = element
        ordered = sorted(records, key=lambda r: (r.file, r.line))
        yield ordered[0]
        for duplicate in ordered[1:]:
            detail = f"user_id {user_id!r} first seen at {ordered[0].file}:{ordered[0].line}"
            row = dict(duplicate.features)
            letter = DeadLetter(DEDUPE, "duplicate user", detail, duplicate.file, duplicate.line, row)
            yield pvalue.TaggedOutput(DEAD_LETTER, letter)


class DedupeUsers(beam.PTransform):
    """Keeps one record per user id; outputs `users` and `dead_letter`."""

    def expand(self, records):
        return (
            records
            | "KeyById" >> beam.Map(lambda r: (r.user_id, r))
            | "GroupById" >> beam.GroupByKey()
            | "KeepFirst" >> beam.ParDo(KeepFirstUserFn()).with_outputs(DEAD_LETTER, main="users")
        )


class WriteUserVocabularies(beam.PTransform):
    """`UserRecord`s -> `vocab/user.<column>.txt` per categorical column, most frequent first.

    Returns:
        {feature name: (value, count) PCollection}; missing ("") values are not counted.
    """

    def __init__(self, out_dir: str, columns: Sequence[ColumnDecl]):
        super().__init__()
        self.out_dir = out_dir
        self.names = categorical_features(columns)

    def expand(self, users):
        counts = {}
        for name in self.names:
            values = users | f"Values[{name}]" >> beam.FlatMap(_present_value, name)
            counts[name] = values | f"Count[{name}]" >> beam.combiners.Count.PerElement()
            _ = (
                counts[name]
                | f"List[{name}]" >> beam.combiners.ToList()
                | f"Lines[{name}]" >> beam.FlatMap(vocabulary_lines, with_counts=False)
                | f"Write[{name}]" >> write_one_file(self.out_dir, vocabulary_file(name))
            )
        return counts


def _present_value(record: UserRecord, name: str) -> list[str]:
    value = record.features[name]
    return [value] if value else []


def build_stats(entries: list[tuple[tuple, int]], vocabularies: Sequence[str]) -> dict:
    """`stats/users.json` from the (key path, count) entries `WriteUserStats` summed.

    Keys: `input_rows`; `written` (user records); `dead_lettered` {"stage:
    reason": n}; `stages` [{stage, input, written, dead_lettered, filtered}]
    for read, validate and dedupe, each side counted on its own PCollection;
    `balanced`; `vocabularies` {feature name: distinct non-empty values}.
    """
    flat = dict(entries)
    dead = {k[1]: v for k, v in sorted(flat.items()) if k[0] == "dead_lettered"}
    lost = {s: sum(v for k, v in dead.items() if k.startswith(s + ": ")) for s in STAGES}
    parsed, valid, written = (flat.get((k,), 0) for k in ("parsed", "validated", "written"))
    flows = {READ: (parsed + lost[READ], parsed), VALIDATE: (parsed, valid), DEDUPE: (valid, written)}
    stages = [
        {"stage": s, "input": into, "written": out, "dead_lettered": lost[s], "filtered": 0}
        for s, (into, out) in flows.items()
    ]
    return {
        "job": "users",
        "input_rows": stages[0]["input"],
        "written": written,
        "dead_lettered": dead,
        "balanced": all(s["input"] == s["written"] + s["dead_lettered"] for s in stages),
        "stages": stages,
        "vocabularies": {name: flat.get(("vocabulary", name), 0) for name in vocabularies},
    }


class WriteUserStats(beam.PTransform):
    """Named PCollections of the job -> `DATA/stats/users.json` (see `build_stats`)."""

    def __init__(self, out_dir: str, vocabularies: Sequence[str]):
        super().__init__()
        self.out_dir = out_dir
        self.vocabularies = list(vocabularies)

    def expand(self, c):
        entries = [
            c[key] | f"Count{key.title()}" >> beam.Map(lambda _, key: ((key,), 1), key)
            for key in ("parsed", "validated", "written")
        ]
        entries.append(c["letters"] | "Reasons" >> beam.Map(lambda x: (("dead_lettered", reason_key(x)), 1)))
        entries += [
            c["vocabularies"][name]
            | f"Distinct[{name}]" >> beam.Map(lambda _, n: (("vocabulary", n), 1), name)
            for name in self.vocabularies
        ]
        return (
            entries
            | "AllCounts" >> beam.Flatten()
            | "Sum" >> beam.CombinePerKey(sum)
            | "Entries" >> beam.combiners.ToList()
            | "Build" >> beam.Map(build_stats, self.vocabularies)
            | "ToJson" >> beam.Map(lambda stats: json.dumps(stats, indent=2, sort_keys=True))
            | "Write" >> write_one_file(self.out_dir, STATS_FILE)
        )


@dataclasses.dataclass(frozen=True)
class UsersJobSpec:
    """What one run reads and writes (see `build_users_pipeline`)."""

    users: str
    out_dir: str
    columns: tuple[ColumnDecl, ...] = ()
    pseudonymizer: Pseudonymizer | None = None


class PreprocessUsers(beam.PTransform):
    """The whole job on a pipeline root: reads, transforms and writes everything under `out_dir`."""

    def __init__(self, job: UsersJobSpec):
        super().__init__()
        self.job = job

    def expand(self, pbegin):
        job = self.job
        parsed = pbegin | "Read" >> ReadRawTable(job.users, READ, raw.REQUIRED_COLUMNS[raw.USERS_FILE])
        rows, read_dead = parsed.rows, parsed[DEAD_LETTER]
        if job.pseudonymizer is not None:
            rows, read_dead = (rows, read_dead) | "Pseudonymize" >> PseudonymizeUsers(job.pseudonymizer)
        valid = rows | "Validate" >> beam.ParDo(ValidateUserFn(job.columns)).with_outputs(
            DEAD_LETTER, main="users"
        )
        deduped = valid.users | "Dedupe" >> DedupeUsers()
        specs = F.user_features(job.columns)
        _ = (
            deduped.users
            | "Encode" >> beam.Map(lambda r, specs: F.encode_example(specs, r.features), specs)
            | "WriteUsers"
            >> beam.io.WriteToTFRecord(
                fileio.join(job.out_dir, USERS_PREFIX),
                file_name_suffix=".tfrecord.gz",
                compression_type=CompressionTypes.GZIP,
            )
        )
        vocabularies = deduped.users | "WriteVocabularies" >> WriteUserVocabularies(job.out_dir, job.columns)
        letters = (read_dead, valid[DEAD_LETTER], deduped[DEAD_LETTER]) | "AllDeadLetters" >> beam.Flatten()
        _ = letters | "WriteDeadLetters" >> WriteDeadLetters(job.out_dir, USERS_PREFIX)
        named = {"parsed": rows, "validated": valid.users, "written": deduped.users, "letters": letters}
        named["vocabularies"] = vocabularies
        return named | "WriteStats" >> WriteUserStats(job.out_dir, categorical_features(job.columns))


def build_users_pipeline(
    pipeline: beam.Pipeline,
    users_pattern: str,
    out_dir: str,
    columns: Sequence[ColumnDecl] = (),
    pseudonymizer: Pseudonymizer | None = None,
) -> None:
    """Adds the users job to `pipeline` (alone or beside the interactions job); the caller runs it.

    Removes this job's outputs of an earlier run first, and logs (once) the
    declared columns that are not used.

    Args:
        pipeline: A pipeline (or `TestPipeline`), fresh or holding other jobs.
        users_pattern: File pattern of the raw user table(s): CSV, JSONL or Parquet.
        out_dir: The dataset directory DATA (local path or URI).
        columns: Declared user columns (`dataset.json` `user_columns`).
        pseudonymizer: Replaces user ids when given; pass the interactions job's one.

    Raises:
        FileNotFoundError: if no file matches `users_pattern`.
    """
    if not [m for r in FileSystems.match([users_pattern]) for m in r.metadata_list]:
        raise FileNotFoundError(f"no users file matches {users_pattern}")
    unused = F.unused_user_columns(columns)
    if unused:
        logger.warning("users: text and multi_categorical user columns are not used: %s", ", ".join(unused))
    remove_stale_outputs(out_dir)
    job = UsersJobSpec(users_pattern, out_dir, tuple(columns), pseudonymizer)
    _ = pipeline | "PreprocessUsers" >> PreprocessUsers(job)


def remove_stale_outputs(out_dir: str) -> None:
    """Deletes what an earlier run of this job wrote, so globs see only this run's (or nothing)."""
    relative = (f"{USERS_PREFIX}-*.tfrecord.gz", f"dead_letter/{USERS_PREFIX}-*.jsonl", "vocab/user.*.txt")
    patterns = [fileio.join(out_dir, p) for p in (*relative, STATS_FILE)]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        logger.info("users: removing %d files of an earlier run", len(stale))
        FileSystems.delete(stale)


def read_stats(out_dir: str) -> dict:
    """The stats a finished run wrote, checked: every input row is written or dead-lettered.

    Raises:
        RuntimeError: if the counts do not balance (a bug, never bad data).
    """
    return read_balanced_stats(out_dir, STATS_FILE, "users")


def run(argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """`python -m beam_jobs.users`: unknown flags are Beam pipeline options; returns the stats."""
    from beam_jobs.preprocess import pipeline_options

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", required=True, help="raw dataset dir (dataset.json declares user_columns)")
    parser.add_argument("--users", help="user file pattern; default RAW/users.csv")
    parser.add_argument("--out", required=True, help="dataset directory DATA")
    parser.add_argument(
        "--pseudonymize-users", action="store_true", help="replace user ids with keyed hashes"
    )
    parser.add_argument("--pseudonym-key-file", help=f"secret key file; default ${KEY_ENV_VAR}")
    args, beam_args = parser.parse_known_args(argv)
    pseudonymizer = load_pseudonymizer(args.pseudonym_key_file) if args.pseudonymize_users else None
    pipeline = test_pipeline or beam.Pipeline(options=pipeline_options(beam_args))
    columns = raw.read_info(args.raw).user_columns
    users = args.users or fileio.join(args.raw, raw.USERS_FILE)
    build_users_pipeline(pipeline, users, args.out, columns, pseudonymizer)
    pipeline.run().wait_until_finish()
    return read_stats(args.out)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
