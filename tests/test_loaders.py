"""Tests for the dataset loaders: tiny fake sources here, the real datasets when present."""

from __future__ import annotations

import csv
import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import require_shared_data
from tfrs_mm.data.loaders import DATASETS, CountMismatchError, format_report, load_dataset
from tfrs_mm.data.raw import RawDatasetInfo, read_embeddings, read_info

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
FAKE_POSTER = b"\xff\xd8 not really a jpeg"


def _flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in GENRES)


def _fake_ml100k(root: Path) -> Path:
    """A five-rating ML-100K lookalike with a poster folder beside it; returns the data root."""
    d = root / "ml-100k"
    d.mkdir(parents=True)
    (d / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n")
    toy_story_genres = _flags("Animation", "Children's", "Comedy")
    items = [
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{toy_story_genres}",
        f"2|Misérables, Les (1995)|01-Jan-1995||http://y|{_flags('Drama', 'Musical')}",
        f"3|unknown||||{_flags('unknown')}",
    ]
    (d / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (d / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    ratings = ["1\t1\t5\t881250949", "1\t2\t3\t881250950", "2\t1\t4\t881250951", "2\t99\t1\t881250952"]
    (d / "u.data").write_text("\n".join(ratings) + "\n")
    posters = root / "movielens-posters"
    (posters / "ml-1m_128px").mkdir(parents=True)
    (posters / "ml-1m_128px" / "1.jpg").write_bytes(FAKE_POSTER)
    (posters / "ml100k_to_ml1m_movie_id.csv").write_text(
        "ml100k_item_id,ml100k_title,ml1m_movie_id,ml1m_title,match,has_poster\n"
        "1,Toy Story (1995),1,Toy Story (1995),exact_title,True\n"
        '2,"Misérables, Les (1995)",73,"Misérables, Les (1995)",exact_title,False\n'
        "3,unknown,,,none,False\n",
        encoding="utf-8",
    )
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _by_id(path: Path, key: str = "item_id") -> dict[str, dict[str, str]]:
    return {row[key]: row for row in _rows(path)}


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return next(csv.reader(f))


def _line_count(path: Path) -> int:
    """Data rows of a CSV whose fields never span lines (ids and numbers only)."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f) - 1


def _assert_counts_ok(info: RawDatasetInfo) -> None:
    assert info.count_checks
    assert all(c.ok for c in info.count_checks), [c for c in info.count_checks if not c.ok]
    report = format_report(info)
    assert "MISMATCH" not in report
    assert report.count(" ok") >= len(info.count_checks)


# --- No shared data needed -------------------------------------------------------------------------


def test_count_mismatch_raises_and_writes_nothing(tmp_path):
    root = _fake_ml100k(tmp_path / "data")
    out = tmp_path / "raw"
    with pytest.raises(CountMismatchError) as excinfo:
        load_dataset("movielens-100k", str(root), str(out))
    assert {c.name for c in excinfo.value.failed} >= {"ratings", "users", "items"}
    assert "published 100,000, source has 4" in str(excinfo.value)
    assert not out.exists()


def test_allow_count_mismatch_writes_and_records(tmp_path):
    root = _fake_ml100k(tmp_path / "data")
    out = tmp_path / "raw"
    # The dataset's own folder as source: side folders are found in its parent.
    info = load_dataset("movielens-100k", str(root / "ml-100k"), str(out), allow_count_mismatch=True)
    assert read_info(str(out)) == info
    failed = {c.name: c for c in info.count_checks if not c.ok}
    assert failed["ratings"].expected == 100_000 and failed["ratings"].actual == 4
    assert "MISMATCH" in format_report(info)
    unknown_item = [d for d in info.dropped if "unknown item" in d.what]
    assert [d.count for d in unknown_item] == [1]
    items = _by_id(out / "items.csv")
    assert items["2"]["title"] == "Misérables, Les (1995)"
    assert items["1"]["categories"] == "Animation|Children's|Comedy"
    assert items["3"]["title"] == "" and items["3"]["year"] == ""
    assert items["1"]["image"] == "images/1.jpg" and items["2"]["image"] == ""
    assert (out / "images" / "1.jpg").read_bytes() == FAKE_POSTER
    assert _line_count(out / "interactions.csv") == 3
    assert _header(out / "users.csv") == ["user_id", "age", "gender", "occupation"]
    assert info.counts["items_with_image"] == 1
    assert any("ml-100k-imdb-details" in note and "not found" in note for note in info.notes)


def test_missing_source_file_is_a_clear_error(tmp_path):
    root = _fake_ml100k(tmp_path / "data")
    (root / "ml-100k" / "u.user").unlink()
    with pytest.raises(ValueError, match=r"ml-100k lacks u\.user"):
        load_dataset("movielens-100k", str(root), str(tmp_path / "raw"), allow_count_mismatch=True)
    with pytest.raises(ValueError, match="not a directory"):
        load_dataset("movielens-100k", str(tmp_path / "nowhere"), str(tmp_path / "raw"))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("movielens-10m", str(root), str(tmp_path / "raw"))


def test_refuses_to_clobber_a_non_raw_directory(tmp_path):
    root = _fake_ml100k(tmp_path / "data")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="non-empty directory"):
        load_dataset("movielens-100k", str(root), str(out), allow_count_mismatch=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_output_is_deterministic_and_rewritable(tmp_path):
    root = _fake_ml100k(tmp_path / "data")
    first, second = tmp_path / "a", tmp_path / "b"
    load_dataset("movielens-100k", str(root), str(first), allow_count_mismatch=True)
    load_dataset("movielens-100k", str(root), str(second), allow_count_mismatch=True)
    # Loading again into an existing raw dataset overwrites it in place.
    load_dataset("movielens-100k", str(root), str(second), allow_count_mismatch=True)
    files = ["items.csv", "users.csv", "interactions.csv", "dataset.json", "images/1.jpg"]
    _, mismatch, errors = filecmp.cmpfiles(first, second, files, shallow=False)
    assert (mismatch, errors) == ([], [])


def test_report_says_when_nothing_was_dropped():
    report = format_report(RawDatasetInfo(name="tiny", counts={"items": 2, "items_with_title": 1}))
    assert "Dropped:\n  nothing" in report
    assert "1 of 2 items (50.0%)" in report


# --- Real datasets (skipped without ../shared/data) --------------------------------------------------


def _load(tmp_path_factory, name: str, folder: str) -> tuple[RawDatasetInfo, Path, Path]:
    root = require_shared_data(folder)
    out = tmp_path_factory.mktemp(name)
    return load_dataset(name, str(root), str(out)), out, root


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return _load(tmp_path_factory, "movielens-100k", "ml-100k")


@pytest.fixture(scope="module")
def ml1m(tmp_path_factory):
    # A million ratings: loaded once for every ML-1M test.
    return _load(tmp_path_factory, "movielens-1m", "ml-1m")


@pytest.fixture(scope="module")
def ml_latest_small(tmp_path_factory):
    return _load(tmp_path_factory, "movielens-latest-small", "ml-latest-small")


@pytest.fixture(scope="module")
def lastfm(tmp_path_factory):
    return _load(tmp_path_factory, "lastfm-2k", "lastfm-2k-multimodal")


@pytest.mark.shared_data
def test_ml100k_counts_and_features(ml100k):
    info, out, _ = ml100k
    _assert_counts_ok(info)
    assert (info.counts["items"], info.counts["users"], info.counts["interactions"]) == (1682, 943, 100_000)
    assert _line_count(out / "interactions.csv") == 100_000
    assert _header(out / "interactions.csv") == ["user_id", "item_id", "timestamp", "rating"]
    items = _by_id(out / "items.csv")
    assert len(items) == 1682
    assert items["1"]["title"] == "Toy Story (1995)"
    assert items["543"]["title"] == "Misérables, Les (1995)"
    assert items["1"]["categories"] == "Animation|Children's|Comedy"
    assert items["1"]["year"] == "1995"
    assert items["1"]["description"].startswith("A cowboy doll")
    # Star Wars' scraped IMDb text is a "no plot yet" placeholder, which is dropped.
    assert items["50"]["description"] == ""
    assert 1400 < info.counts["items_with_description"] < 1591
    users = _by_id(out / "users.csv", "user_id")
    assert len(users) == 943 and users["1"] == {
        "user_id": "1",
        "age": "24",
        "gender": "M",
        "occupation": "technician",
    }
    kinds = {d.name: d.kind for d in info.user_columns}
    assert kinds == {"age": "numeric", "gender": "categorical", "occupation": "categorical"}
    assert any("zip" in d.what for d in info.dropped)


@pytest.mark.shared_data
def test_ml100k_posters_follow_the_id_mapping(ml100k):
    info, out, root = ml100k
    items = _by_id(out / "items.csv")
    assert items["50"]["title"] == "Star Wars (1977)"
    assert items["50"]["image"] == "images/260.jpg"
    poster = root / "movielens-posters" / "ml-1m_128px" / "260.jpg"
    assert (out / items["50"]["image"]).read_bytes() == poster.read_bytes()
    assert info.counts["items_with_image"] == 1668
    assert all((out / row["image"]).is_file() for row in items.values() if row["image"])


@pytest.mark.shared_data
def test_ml1m_has_no_timestamps(ml1m):
    info, out, root = ml1m
    _assert_counts_ok(info)
    assert info.has_timestamps is False
    assert any("No timestamps" in n and "leave-last-out" in n for n in info.notes)
    assert any("ratings_latest20pct_with_timestamp.csv" in n for n in info.notes)
    assert _header(out / "interactions.csv") == ["user_id", "item_id", "rating"]
    assert _line_count(out / "interactions.csv") == 1_000_209
    assert _line_count(out / "users.csv") == 6040
    items = _by_id(out / "items.csv")
    assert len(items) == 3883
    assert items["73"]["title"] == "Misérables, Les (1995)"
    assert "Woody" in items["1"]["description"]
    assert (out / items["2571"]["image"]).read_bytes() == (
        root / "movielens-posters/ml-1m_128px/2571.jpg"
    ).read_bytes()
    assert info.counts["items_with_description"] == 3845
    assert info.counts["items_with_image"] == 3872
    assert _by_id(out / "users.csv", "user_id")["1"]["occupation"] == "K-12 student"


@pytest.mark.shared_data
def test_ml_latest_small(ml_latest_small):
    info, out, _ = ml_latest_small
    _assert_counts_ok(info)
    assert (info.counts["items"], info.counts["users"], info.counts["interactions"]) == (9742, 610, 100_836)
    assert _header(out / "users.csv") == ["user_id"]
    interactions = _rows(out / "interactions.csv")
    assert len(interactions) == 100_836
    assert {r["rating"] for r in interactions} >= {"0.5", "4.5"}
    assert all(r["timestamp"].isdigit() for r in interactions[:100])
    items = _by_id(out / "items.csv")
    assert items["11"]["title"] == "American President, The (1995)"
    assert items["122888"]["categories"] == ""
    assert items["1"]["image"] == "images/1.jpg" and "Woody" in items["1"]["description"]
    assert info.counts["items_with_image"] == 2947


@pytest.mark.shared_data
def test_lastfm_embeddings_and_split(lastfm):
    info, out, root = lastfm
    _assert_counts_ok(info)
    assert info.has_timestamps is False
    mmrec = root / "lastfm-2k-multimodal" / "mmrec"
    expected = {"text": np.load(mmrec / "all-MiniLM-L6-v2.npy"), "audio": np.load(mmrec / "vggish.npy")}
    assert {e.modality: e.dim for e in info.precomputed_embeddings} == {"text": 384, "audio": 128}
    for record in info.precomputed_embeddings:
        item_ids, values = read_embeddings(str(out), record)
        assert values.shape == expected[record.modality].shape and values.dtype == np.float32
        for k in (0, 1, 700, 1424):
            row = list(item_ids).index(str(k))
            np.testing.assert_array_equal(values[row], expected[record.modality][k].astype(np.float32))
    interactions = _rows(out / "interactions.csv")
    assert len(interactions) == 56_345 and {r["rating"] for r in interactions} == {"1"}
    splits = [r["mmrec_split"] for r in interactions]
    assert (splits.count("train"), splits.count("valid"), splits.count("test")) == (44_327, 4_799, 7_219)
    assert _line_count(out / "users.csv") == 1858


@pytest.mark.shared_data
def test_lastfm_titles_come_from_original_ids(lastfm):
    info, out, root = lastfm
    base = root / "lastfm-2k-multimodal"
    with open(base / "mmrec" / "lfm2k.inter") as a, open(base / "mmrec" / "lfm2k_og_ids.inter") as b:
        first = next(zip(list(a)[1:], list(b)[1:]))
    item_id, artist_id = first[0].split("\t")[1], first[1].split("\t")[1]
    with open(base / "original" / "artists.dat", encoding="utf-8") as f:
        names = dict(line.split("\t")[:2] for line in f)
    items = _by_id(out / "items.csv")
    assert len(items) == 1425
    assert items[item_id]["title"] == names[artist_id]
    assert items[item_id]["description"] and items[item_id]["image"] == ""
    assert info.counts["items_with_title"] == info.counts["items_with_description"] == 1425
    assert json.loads((out / "dataset.json").read_text())["interaction_columns"] == [
        {"name": "mmrec_split", "kind": "categorical"}
    ]


def test_datasets_registry_is_complete():
    assert DATASETS == ("movielens-100k", "movielens-1m", "movielens-latest-small", "lastfm-2k")


@pytest.mark.shared_data
@pytest.mark.parametrize("fixture", ["ml100k", "ml1m", "ml_latest_small", "lastfm"])
def test_loaded_datasets_validate_cleanly(fixture, request):
    from tfrs_mm.data.validate import validate_raw

    info, out, _ = request.getfixturevalue(fixture)
    report = validate_raw(str(out))
    assert report.errors == []
    assert report.counts["items"] == info.counts["items"]
    assert report.counts["interactions"] == info.counts["interactions"]
