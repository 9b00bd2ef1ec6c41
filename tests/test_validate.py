"""`tfrs-mm validate`: every bad-input case is reported with file, line and reason."""

import json
import os

import numpy as np
import pytest

from tests.helpers import write_raw
from tfrs_mm import cli
from tfrs_mm.data import raw
from tfrs_mm.data.validate import validate_raw

ITEMS_HEADER = "item_id,title,image,audio\n"
INTERACTIONS_HEADER = "user_id,item_id,timestamp,rating\n"


def problems(root):
    return [(p.file, p.line, p.severity, p.reason) for p in validate_raw(str(root)).problems]


def only_error(root, file, line, reason_part):
    found = problems(root)
    assert len(found) == 1, found
    got_file, got_line, severity, reason = found[0]
    assert (got_file, got_line, severity) == (file, line, "error"), found
    assert reason_part in reason, reason


def test_valid_dataset_has_no_problems(tmp_path):
    assert problems(write_raw(tmp_path)) == []


def test_unterminated_quote_is_reported_where_the_row_starts(tmp_path):
    items = ITEMS_HEADER + 'i1,"broken,,\ni2,Two,,\n'
    root = write_raw(tmp_path, items=items, interactions=INTERACTIONS_HEADER)
    only_error(root, "items.csv", 2, "malformed CSV row")


def test_stray_quote_inside_field_is_malformed(tmp_path):
    items = ITEMS_HEADER + 'i1,One,,\ni2,"Tw"o",,\ni3,Three,,\n'
    root = write_raw(tmp_path, items=items, interactions=INTERACTIONS_HEADER + "u1,i3,1,1\n")
    only_error(root, "items.csv", 3, "malformed CSV row")


def test_wrong_field_count(tmp_path):
    root = write_raw(tmp_path, interactions=INTERACTIONS_HEADER + "u1,i1,100,4,extra\nu1,i2,200\n")
    found = problems(root)
    assert [(f, line) for f, line, _, _ in found] == [("interactions.csv", 2), ("interactions.csv", 3)]
    assert "expected 4 fields, got 5" in found[0][3] and "got 3" in found[1][3]


def test_missing_required_column(tmp_path):
    root = write_raw(tmp_path, interactions="user_id,timestamp\nu1,1\n")
    only_error(root, "interactions.csv", 1, "missing required column(s) ['item_id']")


def test_missing_required_file(tmp_path):
    root = write_raw(tmp_path)
    os.remove(root / "interactions.csv")
    only_error(root, "interactions.csv", 0, "file not found")


def test_unknown_extra_column_and_declared_one(tmp_path):
    items = "item_id,title,year\ni1,One,1999\ni2,Two,abc\n"
    root = write_raw(tmp_path / "a", items=items)
    only_error(root, "items.csv", 1, "unknown column 'year'")
    info = json.dumps({"item_columns": [{"name": "year", "kind": "numeric"}]})
    root = write_raw(tmp_path / "b", items=items, info=info)
    only_error(root, "items.csv", 3, "year 'abc' is not a finite number")


def test_media_missing_absolute_and_escaping(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"\x89PNG\r\n\x1a\n")
    root = tmp_path / "raw"
    items = (
        ITEMS_HEADER
        + "i1,One,images/missing.png,\n"
        + f"i2,Two,{outside},\n"
        + "i3,Three,../secret.png,\n"
        + "i4,Four,images/link.png,\n"
        + "i5,Five,images,\n"
    )
    write_raw(root, items=items, interactions=INTERACTIONS_HEADER)
    os.symlink(outside, root / "images" / "link.png")
    found = {line: reason for _, line, _, reason in problems(root)}
    assert "not found" in found[2]
    assert "absolute path" in found[3]
    assert "outside the dataset root" in found[4]
    assert "through a symlink" in found[5]
    assert "not a regular file" in found[6]


def test_empty_and_mislabelled_media(tmp_path):
    items = ITEMS_HEADER + "i1,One,images/empty.png,images/a.png\n"
    root = write_raw(tmp_path, items=items, interactions=INTERACTIONS_HEADER + "u1,i1,1,1\n")
    (root / "images" / "empty.png").write_bytes(b"")
    found = problems(root)
    assert [(line, "empty" in r or "not a recognised audio" in r) for _, line, _, r in found] == [
        (2, True),
        (2, True),
    ]


def test_non_utf8_bytes(tmp_path):
    items = ITEMS_HEADER.encode() + b"i1,Caf\xe9,,\ni2,Two,,\n"
    root = write_raw(tmp_path, items=items, interactions=INTERACTIONS_HEADER + "u1,i2,1,1\n")
    only_error(root, "items.csv", 2, "non-UTF-8 bytes in column(s) ['title']")


def test_oversized_field(tmp_path):
    root = write_raw(tmp_path, items=ITEMS_HEADER + f"i1,{'x' * 2000},,\n", interactions=INTERACTIONS_HEADER)
    report = validate_raw(str(root), max_field_bytes=1000)
    assert [(p.line, "exceed" in p.reason) for p in report.errors] == [(2, True)]


def test_duplicate_item_ids(tmp_path):
    root = write_raw(tmp_path, items=ITEMS_HEADER + "i1,One,,\ni2,Two,,\ni1,Again,,\n")
    only_error(root, "items.csv", 4, "duplicate item_id 'i1' (first on line 2)")


def test_interaction_naming_unknown_item(tmp_path):
    root = write_raw(tmp_path, interactions=INTERACTIONS_HEADER + "u1,i1,1,4\nu1,nope,2,4\n")
    only_error(root, "interactions.csv", 3, "unknown item 'nope'")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("u1,i1,yesterday,4", "timestamp 'yesterday' is not an integer"),
        ("u1,i1,1.5,4", "timestamp '1.5' is not an integer"),
        ("u1,i1,100,great", "rating 'great' is not a finite number"),
        ("u1,i1,100,nan", "rating 'nan' is not a finite number"),
        ("u1,i1,100,inf", "rating 'inf' is not a finite number"),
        ("u1,i1,100,-2", "rating -2 is negative"),
        (",i1,100,4", "empty user_id or item_id"),
    ],
)
def test_bad_interaction_values(tmp_path, row, reason):
    root = write_raw(tmp_path, interactions=INTERACTIONS_HEADER + row + "\n")
    only_error(root, "interactions.csv", 2, reason)


def test_duplicates_and_unknown_users_are_warnings(tmp_path):
    interactions = INTERACTIONS_HEADER + "u1,i1,1,4\nu1,i1,2,5\nu2,i2,3,3\n"
    root = write_raw(tmp_path, interactions=interactions, users="user_id\nu1\n")
    found = problems(root)
    assert [(line, severity) for _, line, severity, _ in found] == [(3, "warning"), (4, "warning")]
    assert "duplicate interaction" in found[0][3] and "'u2' is not in users.csv" in found[1][3]
    assert validate_raw(str(root)).ok


def test_duplicate_and_empty_user_ids(tmp_path):
    root = write_raw(tmp_path, users="user_id\nu1\nu1\n\n")
    found = problems(root)
    assert found[0][:2] == ("users.csv", 3) and "duplicate user_id 'u1'" in found[0][3]


def test_invalid_dataset_json(tmp_path):
    root = write_raw(tmp_path, info="{not json")
    only_error(root, "dataset.json", 0, "not valid JSON")
    root = write_raw(tmp_path / "b", info=json.dumps({"colour": "blue"}))
    only_error(root, "dataset.json", 0, "unknown keys ['colour']")


def test_precomputed_embeddings_are_checked(tmp_path):
    root = write_raw(tmp_path)
    record = raw.write_embeddings(
        str(root), "text", ["i1", "ghost"], np.array([[1.0, 0.0], [np.nan, 1]]), "x"
    )
    raw.write_info(raw.RawDatasetInfo(precomputed_embeddings=(record,)), str(root))
    reasons = [r for _, _, _, r in problems(root)]
    assert any("hold NaN or inf" in r for r in reasons) and any("'ghost'" in r for r in reasons)


def test_not_a_directory(tmp_path):
    assert "not a directory" in problems(tmp_path / "nope")[0][3]


def test_cli_lists_problems_and_exits_1(tmp_path, capsys):
    root = write_raw(tmp_path, interactions=INTERACTIONS_HEADER + "u1,i1,1,x\nu1,zz,1,1\n")
    assert cli.main(["validate", str(root)]) == 1
    out = capsys.readouterr().out
    assert "interactions.csv:2: error: rating 'x'" in out
    assert "interactions.csv:3: error: unknown item 'zz'" in out
    assert "INVALID: 2 errors" in out


def test_cli_exits_0_with_summary(tmp_path, capsys):
    assert cli.main(["validate", str(write_raw(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "OK: 0 errors, 0 warnings" in out and "interactions" in out
