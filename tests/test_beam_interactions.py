"""The interactions job: pure split/history logic, each PTransform with assert_that, then end to end."""

from __future__ import annotations

import collections
import csv
import dataclasses
import glob
import gzip
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import interaction_outputs as outputs
from beam_jobs import interactions as job
from beam_jobs import split as S
from beam_jobs.dead_letters import DeadLetter
from beam_jobs.read_tables import TableRow
from tfrs_mm import privacy
from tfrs_mm.config import DataConfig
from tfrs_mm.data.synthetic import SampleSpec, generate_sample
from tfrs_mm.schema.features import PADDING_ID, interaction_features, parsing_spec

DIRECT = ["--runner=DirectRunner"]
ITEMS = [f"i{n}" for n in range(1, 9)]
KEY = b"a-test-key-of-32-bytes-0123456789"
HEADER = "user_id,item_id,timestamp,rating,weight\n"
MESSY = HEADER + (  # every kind of bad row, a duplicate, and rows for each filter; raw ids end in @raw
    "alice@raw,i1,100,5,1\nalice@raw,i2,200,4,\nalice@raw,i3,300,2,\nalice@raw,i2,250,5,\n"
    "alice@raw,i4,400,5,2.5\nalice@raw,i5,500,4,\nbob@raw,i1,100,4,\nbob@raw,i9,150,4,\n"
    "bob@raw,i2,abc,4,\nbob@raw,i3,300,nan,\nbob@raw,,300,4,\nbob@raw,i4,300,4,-1\n"
    "carol@raw,i1,100,5,\ndave@raw,i6,100,5,\ndave@raw,i1,200,5,\ndave@raw,i4,300,4,\n"
    '"erin@raw,x",i1,1,1,1,1\n'
)
USER_SPLITS = [(u, s) for u in ("u1", "u2") for s in ("train", "valid", "test")]
MESSY_CONFIG = DataConfig(
    rating_threshold=3.0, min_item_interactions=2, min_user_interactions=2, history_length=3
)


def ix(user: str, item: str, ts: int = 0, line: int = 1, rating: float | None = None) -> S.Interaction:
    return S.Interaction(user, item, ts, rating, 1.0, "f.csv", line)


def clean_csv(users: int = 4, per_user: int = 5) -> str:
    """Users with distinct timestamps 1..users*per_user and distinct items each."""
    rows = [f"u{u},i{(u + k) % 8 + 1},{k * users + u + 1},4," for u in range(users) for k in range(per_user)]
    return HEADER + "\n".join(rows) + "\n"


def read_split(out_dir: str, split: str, history_length: int) -> list[dict]:
    """The written TFRecords parsed with the manifest's `parsing_spec`."""
    files = sorted(glob.glob(os.path.join(out_dir, f"{split}-*.tfrecord.gz")))
    assert files, f"no {split} shard"
    spec = parsing_spec(interaction_features(history_length))
    rows = []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(512):
        parsed = {k: v.numpy() for k, v in tf.io.parse_example(batch, spec).items()}
        for i in range(len(parsed["item_id"])):
            row = {k: v[i] for k, v in parsed.items()}
            row = {k: v.decode() if isinstance(v, bytes) else v for k, v in row.items()}
            row["history"] = tuple(h.decode() for h in row["history"])
            rows.append({**row, "split": split})
    return rows


def read_all(out_dir: str, history_length: int) -> list[dict]:
    return [row for s in S.SPLITS for row in read_split(out_dir, s, history_length)]


def assert_no_leakage(rows: list[dict], history_length: int, order=lambda row: row["timestamp"]) -> None:
    """Recomputes every history from the written records: only earlier train (+valid for test) items."""
    by_user = collections.defaultdict(list)
    for row in rows:
        by_user[row["user_id"]].append(row)
    for user_rows in by_user.values():
        user_rows.sort(key=order)
        for i, row in enumerate(user_rows):
            allowed = {S.TRAIN, S.VALID} if row["split"] == S.TEST else {S.TRAIN}
            earlier = [r["item_id"] for r in user_rows[:i] if r["split"] in allowed]
            earlier = earlier[-history_length:] if history_length else []
            assert row["history"] == (PADDING_ID,) * (history_length - len(earlier)) + tuple(earlier), row


def stats_of(out_dir: str) -> dict:
    with open(os.path.join(out_dir, "stats", "interactions.json")) as f:
        return json.load(f)


def write_dataset(root, name: str, interactions: str, file_name: str = "interactions.csv") -> tuple[str, str]:
    raw_dir, out_dir = root / name / "raw", root / name / "data"
    (out_dir / "vocab").mkdir(parents=True)
    raw_dir.mkdir(parents=True)
    (raw_dir / file_name).write_text(interactions)
    (out_dir / "vocab" / "item_id.txt").write_text("\n".join(ITEMS) + "\n")
    return str(raw_dir / file_name), str(out_dir)


# ---- pure functions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "sizes"), [(1, [1, 0, 0]), (2, [1, 0, 1]), (3, [1, 1, 1]), (25, [21, 2, 2])]
)
def test_split_sizes_follow_recbole(total, sizes):
    assert S.split_sizes(total, (0.8, 0.1, 0.1)) == sizes


def test_random_labels_are_deterministic_sized_and_keep_a_train_item():
    for n in range(3, 15):
        for user in (f"u{k}" for k in range(40)):
            labels = S.shuffled_labels(n, (0.8, 0.1, 0.1), 42, user)
            assert labels == S.shuffled_labels(n, (0.8, 0.1, 0.1), 42, user)
            assert [labels.count(s) for s in S.SPLITS] == S.split_sizes(n, (0.8, 0.1, 0.1))
            assert S.TRAIN in labels
    reseeded = [S.shuffled_labels(10, (0.8, 0.1, 0.1), 7, f"u{k}") for k in range(40)]
    assert reseeded != [S.shuffled_labels(10, (0.8, 0.1, 0.1), 42, f"u{k}") for k in range(40)]


def test_leave_last_out_labels_and_temporal_cuts():
    assert S.leave_last_out_labels(1) == ["train"]
    assert S.leave_last_out_labels(2) == ["train", "test"]
    assert S.leave_last_out_labels(4) == ["train", "train", "valid", "test"]
    assert S.temporal_cuts(list(range(1001)), (0.8, 0.1, 0.1)) == (800, 900)
    assert S.temporal_cuts([], (0.8, 0.1, 0.1)) is None


def test_cold_items_are_a_stable_hashed_fraction():
    items = [f"item{n}" for n in range(20_000)]
    cold = {i for i in items if S.is_cold_item(i, 0.2, seed=42)}
    assert abs(len(cold) / len(items) - 0.2) < 0.01
    assert cold == {i for i in items if S.is_cold_item(i, 0.2, seed=42)}
    assert cold != {i for i in items if S.is_cold_item(i, 0.2, seed=43)}


def test_history_has_no_leakage_on_a_hand_built_sequence():
    sequence = [ix("u", item, ts) for ts, item in enumerate("abcdef")]
    labels = ["train", "test", "train", "valid", "train", "test"]
    got = [(label, e.item_id, e.history) for label, e in S.with_history(sequence, labels, 3)]
    assert got == [
        ("train", "a", ("", "", "")),
        ("test", "b", ("", "", "a")),  # train + valid before it
        ("train", "c", ("", "", "a")),  # b is test: never in a history
        ("valid", "d", ("", "a", "c")),  # train items only
        ("train", "e", ("", "a", "c")),  # d is valid: not in a train history
        ("test", "f", ("c", "d", "e")),  # the 3 most recent train + valid items, most recent last
    ]
    assert [e.history for _, e in S.with_history(sequence, labels, 0)] == [()] * 6


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"user_id": "u", "item_id": "zz", "timestamp": "1"}, "unknown item"),
        ({"user_id": " ", "item_id": "i1", "timestamp": "1"}, "empty id"),
        ({"user_id": "a\tb", "item_id": "i1", "timestamp": "1"}, "invalid id"),
        ({"user_id": "u", "item_id": "i1", "timestamp": "1.5"}, "invalid timestamp"),
        ({"user_id": "u", "item_id": "i1", "timestamp": ""}, "missing timestamp"),
        ({"user_id": "u", "item_id": "i1", "timestamp": "1", "rating": "nan"}, "invalid rating"),
        ({"user_id": "u", "item_id": "i1", "timestamp": "1", "rating": "-2"}, "invalid rating"),
        ({"user_id": "u", "item_id": "i1", "timestamp": "1", "weight": "inf"}, "invalid weight"),
    ],
)
def test_parse_interaction_dead_letter_reasons(values, reason):
    assert job.parse_interaction(TableRow("f.csv", 2, values), {"i1"}, has_timestamps=True)[0] == reason


def test_parse_interaction_defaults_and_ignores_timestamps_without_them():
    row = TableRow("f.csv", 7, {"user_id": " u ", "item_id": "i1", "timestamp": "junk", "rating": ""})
    assert job.parse_interaction(row, {"i1"}, has_timestamps=False) == S.Interaction(
        "u", "i1", 0, None, 1.0, "f.csv", 7
    )


def test_parse_dead_letters_get_pseudonyms_or_are_withheld():
    pseudonymize = privacy.Pseudonymizer(key=KEY)
    as_dict = DeadLetter("interactions.parse", "r", "", "f", 2, {"user_id": " bob ", "item_id": ""})
    assert job.pseudonymize_letter(as_dict, pseudonymize).row == {
        "user_id": pseudonymize("bob"),
        "item_id": "",
    }
    as_list = DeadLetter("interactions.parse", "wrong field count", "", "f", 3, ["bob", "i1", "x"])
    assert job.pseudonymize_letter(as_list, pseudonymize).row == job.REDACTED


def test_time_based_splits_need_timestamps_before_any_pipeline_runs(tmp_path):
    for split in ("leave-last-out", "temporal"):
        with pytest.raises(ValueError, match="no timestamps"):
            S.check_split_supported(DataConfig(split=split), has_timestamps=False)
    S.check_split_supported(DataConfig(split="random"), has_timestamps=False)
    with pytest.raises(ValueError, match="split_ratios"):
        S.check_split_supported(DataConfig(split_ratios=(0.5, 0.1, 0.1)), has_timestamps=True)
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / "interactions.csv").write_text(clean_csv())
    (raw_dir / "dataset.json").write_text('{"has_timestamps": false}')
    with pytest.raises(ValueError, match="no timestamps"):
        job.run(["--raw", str(raw_dir), "--out", str(tmp_path / "data"), "--split", "temporal"])


def test_pseudonymization_without_a_key_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv(privacy.KEY_ENV_VAR, raising=False)
    argv = ["--raw", str(tmp_path), "--out", str(tmp_path), "--set", "data.pseudonymize_users=true"]
    with pytest.raises(privacy.PseudonymKeyError, match="TFRS_MM_PSEUDONYM_KEY"):
        job.run(argv)
    with pytest.raises(privacy.PseudonymKeyError, match="pseudonymize_users"):
        job.build_interactions_pipeline(
            beam.Pipeline(), "x", "y", str(tmp_path), DataConfig(pseudonymize_users=True), True
        )


# ---- PTransforms with TestPipeline -----------------------------------------------------------


def pipeline() -> TestPipeline:
    return TestPipeline(options=PipelineOptions(DIRECT))


def test_validate_dedupe_and_filter_transforms():
    columns = ("user_id", "item_id", "timestamp", "rating")
    values = [
        ("a", "i1", "10", "5"), ("a", "i2", "20", "4"), ("a", "i2", "30", "5"), ("a", "i3", "5", "2"),
        ("a", "i9", "1", "5"), ("b", "i1", "10", ""), ("b", "i1", "10", "4"), ("c", "i1", "10", "4"),
        ("c", "i2", "15", "4"), ("d", "i3", "10", "5"), ("d", "i1", "11", "5"), ("e", "i2", "10", ""),
    ]  # fmt: skip
    rows = [TableRow("f.csv", line, dict(zip(columns, v))) for line, v in enumerate(values, start=2)]
    config = DataConfig(rating_threshold=3.0, min_item_interactions=2, min_user_interactions=2)
    with pipeline() as p:
        known = beam.pvalue.AsSingleton(p | "Known" >> beam.Create([{"i1", "i2", "i3"}]))
        valid = p | beam.Create(rows) | job.ValidateInteractions(known, has_timestamps=True)
        lines = valid.interactions | "Lines" >> beam.Map(lambda x: x.line)
        assert_that(lines, equal_to([2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13]), label="Valid")
        invalid = valid.dead_letter | "Invalid" >> beam.Map(lambda d: (d.stage, d.reason, d.line))
        assert_that(invalid, equal_to([("interactions.validate", "unknown item", 6)]), label="CheckInvalid")

        deduped = valid.interactions | S.GroupByUser() | S.DedupeInteractions()
        dupes = deduped.dead_letter | "Dupes" >> beam.Map(lambda d: (d.line, d.detail))
        expected = [(3, "superseded by f.csv:4"), (7, "superseded by f.csv:8")]
        assert_that(dupes, equal_to(expected), label="CheckDupes")
        ordered = deduped.groups | "Ordered" >> beam.MapTuple(lambda u, xs: (u, [x.line for x in xs]))
        expected = [("a", [5, 2, 4]), ("b", [8]), ("c", [9, 10]), ("d", [11, 12]), ("e", [13])]
        assert_that(ordered, equal_to(expected), label="CheckOrdered")  # by time; latest duplicate kept

        kept, filtered = deduped.groups | S.FilterInteractions(config)
        kept_items = kept | "KeptItems" >> beam.MapTuple(lambda u, xs: (u, [x.item for x in xs]))
        assert_that(kept_items, equal_to([("a", ["i1", "i2"]), ("c", ["i1", "i2"])]), label="CheckKept")
        reasons = {"rating below threshold": 1, "no rating": 1, "item below min interactions": 1}
        reasons["user below min interactions"] = 2  # b, and d once its rare item is gone
        summed = filtered | "SumFiltered" >> beam.CombinePerKey(sum)
        assert_that(summed, equal_to(list(reasons.items())), label="CheckFiltered")


def test_split_transform_for_every_protocol():
    groups = [
        ("u1", [ix("u1", f"i{k}", ts=k, line=k) for k in range(1, 6)]),
        ("u2", [ix("u2", f"i{k}", ts=10 * k, line=k) for k in range(1, 6)]),
    ]
    counts = {
        "random": (3, 1, 1, 3, 1, 1),  # per user: 5 -> 3/1/1
        "leave-last-out": (3, 1, 1, 3, 1, 1),
        "temporal": (5, 0, 0, 3, 1, 1),  # cuts at ts 30 and 40: u1 is all train
    }
    cold = {f"i{k}" for k in range(1, 6) if S.is_cold_item(f"i{k}", DataConfig().cold_item_fraction, 42)}
    expected = [((p, u, s), n) for p, c in counts.items() for (u, s), n in zip(USER_SPLITS, c) if n]
    expected += [(("cold-item", u, S.TEST), len(cold)) for u in ("u1", "u2") if cold]
    with pipeline() as p:
        created = p | beam.Create(groups)
        splits = {
            protocol: created
            | f"Split{protocol}" >> S.SplitInteractions(DataConfig(split=protocol, history_length=2))
            for protocol in (*counts, "cold-item")
        }
        keyed = [
            splits[protocol][name]
            | f"Key{protocol}{name}" >> beam.Map(lambda e, p, s: (p, e.user_id, s), protocol, name)
            for protocol in splits
            for name in S.SPLITS
        ]
        cold_split = keyed | beam.Flatten() | beam.Filter(lambda k: k[0] != "cold-item" or k[2] == S.TEST)
        assert_that(cold_split | beam.combiners.Count.PerElement(), equal_to(expected), label="Counts")
        test = splits["leave-last-out"]["test"] | "Histories" >> beam.Map(
            lambda e: (e.user_id, e.item_id, e.history)
        )
        assert_that(
            test, equal_to([("u1", "i5", ("i3", "i4")), ("u2", "i5", ("i3", "i4"))]), label="LastOutTest"
        )
        assert_that(splits["temporal"]["cuts"], equal_to([(30, 40)]), label="Cuts")
        cold_test = (
            splits["cold-item"]["test"] | "ColdTest" >> beam.Map(lambda e: e.item_id) | beam.Distinct()
        )
        assert_that(cold_test, equal_to(sorted(cold)), label="ColdTestItems")


# ---- the job end to end ------------------------------------------------------------------------

JSONL = "".join(  # no timestamps: input order is time order
    json.dumps({"user_id": u, "item_id": i, "timestamp": "999"}) + "\n"
    for u, i in [
        ("u1", "i3"),
        ("u2", "i1"),
        ("u1", "i1"),
        ("u1", "i5"),
        ("u2", "i2"),
        ("u1", "i2"),
        ("u2", "i4"),
    ]
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> str:
    """A generated sample catalog, its item vocabulary taken from items.csv."""
    raw_dir = str(tmp_path_factory.mktemp("sample"))
    generate_sample(raw_dir, SampleSpec(num_items=300, num_users=200, audio_seconds=0.5), overwrite=True)
    return raw_dir


def sample_data_dir(raw_dir: str, out_dir) -> str:
    with open(os.path.join(raw_dir, "items.csv"), encoding="utf-8") as f:
        items = [row["item_id"] for row in csv.DictReader(f)]
    (out_dir / "vocab").mkdir(parents=True)
    (out_dir / "vocab" / "item_id.txt").write_text("\n".join(items) + "\n")
    return str(out_dir)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> dict[str, str]:
    """Five small jobs in one pipeline; returns each job's DATA dir."""
    root = tmp_path_factory.mktemp("jobs")
    key_file = root / "key"
    key_file.write_bytes(KEY)
    configs = {
        "private": (MESSY, dataclasses.replace(MESSY_CONFIG, pseudonymize_users=True)),
        "lastout": (clean_csv(), DataConfig(split="leave-last-out", history_length=3)),
        "temporal": (clean_csv(), DataConfig(split="temporal", history_length=3)),
        "cold": (clean_csv(), DataConfig(split="cold-item", cold_item_fraction=0.5, history_length=3)),
        "jsonl": (JSONL, DataConfig(min_user_interactions=1, history_length=2)),
    }
    out_dirs = {}
    with pipeline() as p:
        for name, (content, config) in configs.items():
            file_name = "part-0.jsonl" if name == "jsonl" else "interactions.csv"
            pattern, out_dirs[name] = write_dataset(root, name, content, file_name)
            pseudonymizer = privacy.Pseudonymizer(key_file=str(key_file)) if name == "private" else None
            vocab = os.path.join(out_dirs[name], "vocab", "item_id.txt")
            spec = job.JobSpec(pattern, out_dirs[name], vocab, config, name != "jsonl", pseudonymizer)
            _ = p | f"Job{name}" >> job.PreprocessInteractions(spec)
    return out_dirs


def lines_of(pattern: str) -> list[str]:
    lines = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as f:
            lines += f.read().splitlines()
    return lines


def assert_conserved(out_dir: str, history_length: int) -> dict:
    """input = written + dead-lettered + filtered, in the stats and in the files."""
    stats = stats_of(out_dir)
    counted = [stats["written"], stats["dead_lettered"], stats["filtered"]]
    assert stats["balanced"] and stats["input_rows"] == sum(sum(c.values()) for c in counted)
    for stage in stats["stages"]:
        assert stage["input"] == stage["written"] + stage["dead_lettered"] + stage["filtered"], stage
    for split in S.SPLITS:
        assert len(read_split(out_dir, split, history_length)) == stats["written"][split]
    letters = lines_of(os.path.join(out_dir, "dead_letter", "interactions-*.jsonl"))
    assert len(letters) == sum(stats["dead_lettered"].values())
    return stats


def test_messy_input_counts_every_row_by_reason(jobs):
    stats = assert_conserved(jobs["private"], 3)
    assert stats["input_rows"] == 17
    assert stats["written"] == {"train": 2, "valid": 0, "test": 2}  # alice and dave: 2 each -> 1/0/1
    assert stats["dead_lettered"] == {
        "interactions.dedupe: duplicate interaction": 1,  # alice,i2 at 200; the one at 250 stays
        "interactions.parse: empty required field": 1,
        "interactions.parse: wrong field count": 1,
        "interactions.validate: invalid rating": 1,
        "interactions.validate: invalid timestamp": 1,
        "interactions.validate: invalid weight": 1,
        "interactions.validate: unknown item": 1,
    }
    assert stats["filtered"] == {
        "item below min interactions": 3,  # i2, i5, i6: seen once each after dedupe and ratings
        "rating below threshold": 1,
        "user below min interactions": 2,  # bob, carol
    }
    assert (stats["users"], stats["items"], stats["train_users"], stats["vocabulary_items"]) == (2, 2, 2, 8)
    assert [s["stage"] for s in stats["stages"]] == list(outputs.STAGES)
    assert outputs.stage_counts(stats)[0].input == 17


def test_pseudonymized_outputs_hold_no_raw_user_id(jobs):
    out_dir, pseudonymize = jobs["private"], privacy.Pseudonymizer(key=KEY)
    for path in glob.glob(os.path.join(out_dir, "**", "*"), recursive=True):
        if os.path.isfile(path):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                assert b"@raw" not in f.read(), path
    vocab = lines_of(os.path.join(out_dir, "vocab", "user_id.txt"))
    assert vocab == sorted(pseudonymize(u) for u in ("alice@raw", "dave@raw"))  # 1 train each: by id
    letters = [json.loads(line) for line in lines_of(os.path.join(out_dir, "dead_letter", "*.jsonl"))]
    users = {d["row"]["user_id"] for d in letters if isinstance(d["row"], dict)}
    assert users == {pseudonymize("alice@raw"), pseudonymize("bob@raw")}
    assert [d["row"] for d in letters if d["reason"] == "wrong field count"] == [job.REDACTED]
    assert {r["user_id"] for r in read_all(out_dir, 3)} == set(vocab)


def test_written_records_parse_back_with_the_manifest_spec(jobs):
    rows = read_all(jobs["private"], 3)
    assert_no_leakage(rows, 3)
    by_item = {(r["user_id"], r["item_id"]): r for r in rows}
    alice = privacy.Pseudonymizer(key=KEY)("alice@raw")
    assert by_item[alice, "i4"]["weight"] == pytest.approx(2.5)
    assert by_item[alice, "i1"]["rating"] == 5.0 and by_item[alice, "i1"]["timestamp"] == 100
    frequencies = [line.split("\t") for line in lines_of(os.path.join(jobs["private"], "vocab", "*.tsv"))]
    train_items = collections.Counter(r["item_id"] for r in rows if r["split"] == S.TRAIN)
    assert {item: int(n) for item, n in frequencies} == {item: train_items[item] for item in ITEMS}
    assert [int(n) for _, n in frequencies] == sorted((int(n) for _, n in frequencies), reverse=True)


def test_leave_last_out_end_to_end(jobs):
    stats = assert_conserved(jobs["lastout"], 3)
    assert stats["written"] == {"train": 12, "valid": 4, "test": 4}
    rows = read_all(jobs["lastout"], 3)
    assert_no_leakage(rows, 3)
    u0 = sorted(
        (r["timestamp"], r["split"], r["item_id"], r["history"]) for r in rows if r["user_id"] == "u0"
    )
    assert u0[-2:] == [(13, "valid", "i4", ("i1", "i2", "i3")), (17, "test", "i5", ("i2", "i3", "i4"))]


def test_temporal_end_to_end_cuts_time_globally(jobs):
    stats = assert_conserved(jobs["temporal"], 3)
    assert stats["written"] == {"train": 16, "valid": 2, "test": 2}
    assert stats["split"]["params"]["cut_timestamps"] == [16, 18]
    rows = read_all(jobs["temporal"], 3)
    assert_no_leakage(rows, 3)
    latest = {s: max(r["timestamp"] for r in rows if r["split"] == s) for s in S.SPLITS}
    earliest = {s: min(r["timestamp"] for r in rows if r["split"] == s) for s in S.SPLITS}
    assert latest["train"] < earliest["valid"] <= latest["valid"] < earliest["test"]


def test_cold_item_end_to_end_holds_out_every_interaction_of_cold_items(jobs):
    stats = assert_conserved(jobs["cold"], 3)
    cold = {i for i in ITEMS if S.is_cold_item(i, 0.5, 42)}
    assert stats["cold_items"] == len(cold) > 0
    rows = read_all(jobs["cold"], 3)
    assert_no_leakage(rows, 3)
    assert {r["item_id"] for r in rows if r["split"] == S.TEST} == cold & {r["item_id"] for r in rows}
    assert not cold & {r["item_id"] for r in rows if r["split"] != S.TEST}


def test_jsonl_without_timestamps_orders_by_input(jobs):
    assert_conserved(jobs["jsonl"], 2)
    rows = read_all(jobs["jsonl"], 2)
    assert {r["timestamp"] for r in rows} == {0}
    order = {(r["user_id"], r["item_id"]): n for n, r in enumerate(map(json.loads, JSONL.splitlines()))}
    assert_no_leakage(rows, 2, order=lambda r: order[r["user_id"], r["item_id"]])


def test_sample_catalog_through_the_command_line(sample, tmp_path):
    out_dir = sample_data_dir(sample, tmp_path / "data")
    argv = ["--raw", sample, "--out", out_dir, "--split", "temporal", "--set", "data.history_length=5"]
    stats = job.run([*argv, "--runner=DirectRunner"])
    assert stats == assert_conserved(out_dir, 5)
    with open(os.path.join(sample, "interactions.csv")) as f:
        assert stats["input_rows"] == sum(1 for _ in f) - 1
    assert stats["users"] == 200 and stats["vocabulary_items"] == 300
    rows = read_all(out_dir, 5)
    assert len({(r["user_id"], r["timestamp"]) for r in rows}) == len(rows)  # no ties: time order is total
    assert_no_leakage(rows, 5)
    assert 0.78 < stats["written"]["train"] / len(rows) < 0.82
    train = collections.Counter(r["user_id"] for r in rows if r["split"] == S.TRAIN)
    with open(os.path.join(out_dir, "vocab", "user_id.txt")) as f:
        assert f.read().split() == sorted(train, key=lambda u: (-train[u], u))
    with open(os.path.join(out_dir, "vocab", "item_frequencies.tsv")) as f:
        assert sum(int(line.split("\t")[1]) for line in f) == stats["written"]["train"]


@pytest.mark.slow
def test_multi_processing_direct_runner_writes_the_same_records(jobs, tmp_path):
    pattern, out_dir = write_dataset(tmp_path, "mp", clean_csv())
    argv = ["--raw", os.path.dirname(pattern), "--out", out_dir, "--split", "leave-last-out"]
    argv += [
        "--set",
        "data.history_length=3",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ]
    job.run(argv)

    def records(data_dir):
        return sorted((r["user_id"], r["item_id"], r["split"], r["history"]) for r in read_all(data_dir, 3))

    assert records(out_dir) == records(jobs["lastout"])
