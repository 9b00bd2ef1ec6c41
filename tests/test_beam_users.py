"""The users job: pure parsing and specs, then `preprocess` end to end with and without `users.csv`."""

from __future__ import annotations

import dataclasses
import glob
import gzip
import json
import os

import pytest
import tensorflow as tf

from beam_jobs import interactions as interactions_job
from beam_jobs import preprocess as P
from beam_jobs import users as job
from beam_jobs.read_tables import TableRow
from tests.helpers import write_raw
from tfrs_mm import config as config_lib
from tfrs_mm import privacy, schema
from tfrs_mm.data import raw
from tfrs_mm.data.raw import ColumnDecl
from tfrs_mm.schema.features import decode_example, parsing_spec

DIRECT = ["--runner=DirectRunner"]
KEY = b"a-test-key-of-32-bytes-0123456789"
COLUMNS = (
    ColumnDecl("age", "numeric"),
    ColumnDecl("gender", "categorical"),
    ColumnDecl("occupation", "categorical"),
    ColumnDecl("bio", "text"),
    ColumnDecl("tags", "multi_categorical"),
)
ITEMS = "item_id\ni1\ni2\ni3\n"  # no media or text: no encoder is needed
INTERACTIONS = "user_id,item_id,timestamp,rating\n" + "".join(
    f"{u}@raw,{i},{t},4\n"
    for t, (u, i) in enumerate(
        [("alice", "i1"), ("alice", "i2"), ("bob", "i1"), ("carol", "i3"), ("hank", "i2"), ("zed", "i3")]
    )
)
USERS = (  # raw ids end in @raw; cold@raw has no interactions, zed@raw no users row
    b"user_id,age,gender,occupation,bio,tags\n"
    b"alice@raw,34,F,engineer,likes jazz,a|b\n"
    b"bob@raw,,M,,,\n"
    b"carol@raw, 29 ,, engineer ,,\n"
    b"dave@raw,abc,M,artist,,\n"
    b"erin@raw,nan,F,,,\n"
    b"frank@raw,1e39,F,,,\n"
    b" ,40,F,x,,\n"
    b"alice@raw,50,M,doctor,,\n"
    b'"gina@raw,x",1,2\n'
    b"cold@raw,61,X,retired,,\n"
    b"hank@raw,22,M,artist,,\n"
    b"i\xff@raw,20,F,,,\n"
)


def pseudonym(user: str) -> str:
    return privacy.Pseudonymizer(key=KEY)(f"{user}@raw")


def row(**values: str) -> TableRow:
    return TableRow("users.csv", 2, values)


def read_records(data_dir: str, pattern: str, specs) -> list[dict]:
    """Records parsed with `tf.io.parse_example` and the manifest's `parsing_spec`."""
    files = sorted(glob.glob(os.path.join(data_dir, pattern)))
    assert files, pattern
    records = []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100):
        parsed = {k: v.numpy() for k, v in tf.io.parse_example(batch, parsing_spec(specs)).items()}
        for i in range(len(parsed["user_id"])):
            values = {k: v[i] for k, v in parsed.items()}
            records.append({k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()})
    return records


def lines_of(pattern: str) -> list[str]:
    lines = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as f:
            lines += f.read().splitlines()
    return lines


# ---- specs, parsing and the manifest -------------------------------------------------------------


def test_user_features_keep_categorical_and_numeric_columns_under_a_prefix():
    specs = schema.user_features(COLUMNS)
    assert [(s.name, s.dtype, s.shape, s.varlen) for s in specs] == [
        ("user_id", "string", (), False),
        ("user.age", "float32", (), False),
        ("user.age_present", "int64", (), False),
        ("user.gender", "string", (), False),
        ("user.occupation", "string", (), False),
    ]
    assert schema.unused_user_columns(COLUMNS) == ["bio", "tags"]
    assert [s.name for s in schema.user_features(())] == ["user_id"]


def test_parse_user_types_values_and_marks_missing_ones():
    parsed = job.parse_user(row(user_id=" u1 ", age=" 31.5 ", gender=" F\t", bio="x"), COLUMNS)
    assert parsed == job.UserRecord(
        "u1",
        {"user_id": "u1", "user.age": 31.5, "user.age_present": 1, "user.gender": "F", "user.occupation": ""},
        "users.csv",
        2,
    )
    missing = job.parse_user(row(user_id="u2", age="", gender=""), COLUMNS)
    assert (missing.features["user.age"], missing.features["user.age_present"]) == (0.0, 0)
    assert missing.features["user.gender"] == ""


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"user_id": " "}, "empty id"),
        ({"user_id": "a\tb"}, "invalid id"),
        ({"user_id": "u", "age": "abc"}, "invalid age"),
        ({"user_id": "u", "age": "nan"}, "invalid age"),
        ({"user_id": "u", "age": "-inf"}, "invalid age"),
        ({"user_id": "u", "age": "1e39"}, "invalid age"),  # finite in float64, inf in float32
    ],
)
def test_parse_user_dead_letter_reasons(values, reason):
    assert job.parse_user(row(**values), COLUMNS)[0] == reason


def test_parse_user_names_every_bad_numeric_column():
    columns = (ColumnDecl("age", "numeric"), ColumnDecl("height", "numeric"))
    reason, detail = job.parse_user(row(user_id="u", age="x", height="inf"), columns)
    assert reason == "invalid age" and "age 'x'" in detail and "height 'inf'" in detail


def test_manifest_round_trips_user_features_and_loads_old_manifests():
    manifest = schema.Manifest(
        item_features=schema.item_features({"text": 4}),
        interaction_features=schema.interaction_features(3),
        user_features=schema.user_features(COLUMNS),
        encoders=(schema.EncoderRecord("text", "bundled://t", "t", "1", 4),),
    )
    data = json.loads(json.dumps(manifest.to_dict()))
    assert schema.Manifest.from_dict(data) == manifest
    del data["user_features"]  # written before user features existed
    assert schema.Manifest.from_dict(data) == dataclasses.replace(manifest, user_features=())


# ---- preprocess end to end -------------------------------------------------------------------------


def run_preprocess(raw_dir, out_dir, pseudonym_key_file: str | None = None) -> P.PreprocessResult:
    data = config_lib.DataConfig(min_user_interactions=1, history_length=2)
    data = dataclasses.replace(data, pseudonymize_users=pseudonym_key_file is not None)
    config = dataclasses.replace(config_lib.Config(), data=data)
    return P.preprocess(str(raw_dir), str(out_dir), config, DIRECT, pseudonym_key_file=pseudonym_key_file)


@pytest.fixture(scope="module")
def private(tmp_path_factory) -> tuple[P.PreprocessResult, str]:
    """The messy users.csv, pseudonymised, through `preprocess`: (result, DATA)."""
    root = tmp_path_factory.mktemp("users")
    info = raw.RawDatasetInfo(name="users-test", user_columns=COLUMNS)
    write_raw(root / "raw", ITEMS, INTERACTIONS, USERS, json.dumps(info.to_dict()))
    (root / "key").write_bytes(KEY)
    return run_preprocess(root / "raw", root / "data", str(root / "key")), str(root / "data")


def test_user_records_decode_with_the_manifest_specs(private):
    result, data_dir = private
    manifest = schema.read_manifest(data_dir)
    assert manifest.user_features == schema.user_features(COLUMNS)
    assert manifest.files["users"] == "users-*.tfrecord.gz"
    assert manifest.source["user_columns_unused"] == ["bio", "tags"]
    records = {
        r["user_id"]: r for r in read_records(data_dir, manifest.files["users"], manifest.user_features)
    }
    assert set(records) == {pseudonym(u) for u in ("alice", "bob", "carol", "cold", "hank")}
    fields = ("user.age", "user.age_present", "user.gender", "user.occupation")
    assert [records[pseudonym("alice")][f] for f in fields] == [
        34.0,
        1,
        "F",
        "engineer",
    ]  # the first row wins
    assert [records[pseudonym("bob")][f] for f in fields] == [0.0, 0, "M", ""]
    assert [records[pseudonym("carol")][f] for f in fields] == [29.0, 1, "", "engineer"]
    assert [records[pseudonym("cold")][f] for f in fields] == [61.0, 1, "X", "retired"]  # no interactions
    (path,) = glob.glob(os.path.join(data_dir, "users-*.tfrecord.gz"))
    first = next(iter(tf.data.TFRecordDataset(path, compression_type="GZIP"))).numpy()
    assert set(decode_example(manifest.user_features, first)) == {s.name for s in manifest.user_features}
    assert result.users_stats["written"] == 5 and "users (users.csv): 5 written" in result.summary()


def test_user_ids_are_the_interactions_pseudonyms(private):
    _, data_dir = private
    manifest = schema.read_manifest(data_dir)
    users = {r["user_id"] for r in read_records(data_dir, "users-*.tfrecord.gz", manifest.user_features)}
    interactions = {
        r["user_id"]
        for split in ("train", "valid", "test")
        if glob.glob(os.path.join(data_dir, f"{split}-*.tfrecord.gz"))
        for r in read_records(data_dir, f"{split}-*.tfrecord.gz", manifest.interaction_features)
    }
    assert interactions == {pseudonym(u) for u in ("alice", "bob", "carol", "hank", "zed")}
    assert users & interactions == {pseudonym(u) for u in ("alice", "bob", "carol", "hank")}
    for path in glob.glob(os.path.join(data_dir, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
                assert b"@raw" not in f.read(), path


def test_categorical_vocabularies_by_count_then_value(private):
    _, data_dir = private
    manifest = schema.read_manifest(data_dir)
    expected = {"user.gender": ["M", "F", "X"], "user.occupation": ["engineer", "artist", "retired"]}
    for name, values in expected.items():
        record = manifest.vocabulary(name)
        assert record == schema.VocabularyRecord(name, f"vocab/{name}.txt", len(values), num_oov_buckets=1)
        assert lines_of(os.path.join(data_dir, record.file)) == values
    assert not glob.glob(os.path.join(data_dir, "vocab", "user.age*"))


def test_bad_user_rows_are_dead_lettered_and_counts_balance(private):
    result, data_dir = private
    letters = [json.loads(line) for line in lines_of(os.path.join(data_dir, "dead_letter", "users-*.jsonl"))]
    reasons = sorted((d["stage"], d["reason"]) for d in letters)
    assert reasons == [
        ("users.dedupe", "duplicate user"),
        ("users.read", "empty required field"),
        ("users.read", "non-UTF-8 bytes"),
        ("users.read", "wrong field count"),
        *[("users.validate", "invalid age")] * 3,
    ]
    assert all("age" in d["detail"] for d in letters if d["reason"] == "invalid age")
    assert [d["row"] for d in letters if d["reason"] == "wrong field count"] == [interactions_job.REDACTED]
    (duplicate,) = [d for d in letters if d["reason"] == "duplicate user"]
    assert duplicate["line"] == 9 and duplicate["row"]["user_id"] == pseudonym("alice")
    manifest = schema.read_manifest(data_dir)
    stages = {c.stage: c for c in manifest.stage_counts if c.stage.startswith("users.")}
    assert stages == {
        "users.read": schema.StageCount("users.read", 12, 9, 3),
        "users.validate": schema.StageCount("users.validate", 9, 6, 3),
        "users.dedupe": schema.StageCount("users.dedupe", 6, 5, 1),
    }
    assert all(c.balanced for c in manifest.stage_counts)
    assert manifest.source["dead_lettered"]["users.validate: invalid age"] == 3
    assert result.users_stats["input_rows"] == 12 == len(USERS.splitlines()) - 1


def test_without_users_csv_there_are_no_user_outputs(tmp_path):
    raw_dir = write_raw(tmp_path / "raw", ITEMS, INTERACTIONS.replace("@raw", ""))
    data_dir = tmp_path / "data"
    for stale in (
        "users-00000-of-00001.tfrecord.gz",
        "dead_letter/users-00000-of-00001.jsonl",
        "vocab/user.x.txt",
    ):
        (data_dir / stale).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / stale).write_text("from an earlier run")
    result = run_preprocess(raw_dir, data_dir)
    manifest = schema.read_manifest(str(data_dir))
    assert manifest.user_features == () and "users" not in manifest.files
    assert "user_columns_unused" not in manifest.source and result.users_stats is None
    assert not [v for v in manifest.vocabularies if v.name.startswith("user.")]
    assert not [c for c in manifest.stage_counts if c.stage.startswith("users.")]
    assert not glob.glob(str(data_dir / "**" / "user[s.]*"), recursive=True)
    assert "users (users.csv)" not in result.summary()


def test_command_line_reads_several_files_and_keeps_the_first_row_by_file_order(tmp_path):
    raw_dir, out_dir = tmp_path / "raw", tmp_path / "data"
    raw_dir.mkdir()
    (raw_dir / "users-a.csv").write_text("user_id,gender\nu2,F\nu1,M\n")
    (raw_dir / "users-b.csv").write_text("user_id\nu1\nu3\n")
    stats = job.run(["--raw", str(raw_dir), "--users", str(raw_dir / "users-*.csv"), "--out", str(out_dir)])
    assert stats["balanced"] and stats["written"] == 3 and stats["vocabularies"] == {}
    assert stats["dead_lettered"] == {"users.dedupe: duplicate user": 1}
    (letter,) = [json.loads(line) for line in lines_of(str(out_dir / "dead_letter" / "users-*.jsonl"))]
    assert letter["file"].endswith("users-b.csv") and "users-a.csv:3" in letter["detail"]
    records = read_records(str(out_dir), "users-*.tfrecord.gz", schema.user_features(()))
    assert sorted(r["user_id"] for r in records) == ["u1", "u2", "u3"]
