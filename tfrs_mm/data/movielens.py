"""MovieLens readers: ML-100K, ML-1M and ml-latest-small, with posters and plot text.

All three share MovieLens movie ids with the poster folder (`movielens-posters/`,
keyed by ML-1M id) and the ML-1M side information, except ML-100K, whose items
reach both through `movielens-posters/ml100k_to_ml1m_movie_id.csv`.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence

from tfrs_mm.data.loaders import (
    IMAGES_DIR,
    DatasetSpec,
    LoadedDataset,
    LoadLog,
    Table,
    read_csv_rows,
    read_fields,
    side_path,
)
from tfrs_mm.data.raw import CATEGORY_SEPARATOR, ColumnDecl

ITEM_HEADER = ("item_id", "title", "description", "categories", "image", "audio", "year")
ITEM_COLUMNS = (ColumnDecl("year", "numeric"),)
POSTERS_DIR = "movielens-posters"
POSTER_IMAGES = "ml-1m_128px"
ML100K_TO_ML1M = "ml100k_to_ml1m_movie_id.csv"
IMDB_DETAILS = os.path.join("ml-100k-imdb-details", "movielens100k_details.json")
EXTRAINFOS = os.path.join("side_info", "movies_extrainfos.dat")
ML1M_RATINGS = os.path.join("derived", "ratings_no_timestamp.csv")
# Codes 0..20 of users.dat, as listed in the ML-1M README.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
_PLAIN_YEAR = re.compile(r"\d{4}(\.0)?")
IMDB_NO_PLOT = "It looks like we don't have any Plot Summaries"
TERMS_NOTE = (
    "MovieLens terms: research use only, no commercial use, cite Harper & Konstan (2015); posters and "
    "plot text are third-party content for internal research only. Do not redistribute this directory."
)
ZIP_REASON = "not a useful feature here, and with age, gender and occupation it is quasi-identifying"


def _item_table(items: Mapping[str, Mapping[str, str]]) -> Table:
    rows = [[item_id, *(v.get(c, "") for c in ITEM_HEADER[1:])] for item_id, v in items.items()]
    return Table(ITEM_HEADER, rows)


def _reorder(rows: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """(user, item, rating, timestamp) rows -> the raw format's (user, item, timestamp, rating)."""
    return [(user, item, ts, rating) for user, item, rating, ts in rows]


def _unique(rows: Sequence[Sequence[str]], log: LoadLog, what: str) -> list[Sequence[str]]:
    """Keeps the first row per id (column 0) and records repeats."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            kept.append(row)
    log.drop(what, len(rows) - len(kept), "repeats an id already read; the first row is kept")
    return kept


def _id_key(value: str) -> tuple[int, int, str]:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def _movie_items(rows: Sequence[Sequence[str]], log: LoadLog, file_label: str) -> dict[str, dict[str, str]]:
    """Items from (id, title, genres) rows; the year comes from the title's trailing `(yyyy)`."""
    items = {}
    no_genres = 0
    for movie_id, title, genres in _unique(rows, log, f"{file_label} rows"):
        if genres == "(no genres listed)":
            genres, no_genres = "", no_genres + 1
        title_year = _TITLE_YEAR.search(title)
        year = title_year.group(1) if title_year else ""
        items[movie_id] = {"title": title.strip(), "categories": genres, "year": year}
    if no_genres:
        log.note(f"{no_genres} movies have '(no genres listed)'; their categories are empty.")
    return items


def _attach_posters(items: dict, ml1m_ids: Mapping[str, str], data_root: str, log: LoadLog) -> dict[str, str]:
    """Points items at `images/<ml1m id>.jpg`; returns {relative path: poster file} to copy."""
    poster_dir = side_path(data_root, POSTERS_DIR, POSTER_IMAGES)
    if poster_dir is None:
        log.note(f"{os.path.join(data_root, POSTERS_DIR, POSTER_IMAGES)} not found: items have no image.")
        return {}
    available = set(os.listdir(poster_dir))
    images = {}
    for item_id, ml1m_id in ml1m_ids.items():
        if f"{ml1m_id}.jpg" in available and item_id in items:
            rel = f"{IMAGES_DIR}/{ml1m_id}.jpg"
            items[item_id]["image"] = rel
            images[rel] = os.path.join(poster_dir, f"{ml1m_id}.jpg")
    log.note(
        f"Images are the {POSTERS_DIR} posters scaled to fit 128×128 px, keyed by ML-1M movie id; "
        f"{len(images):,} distinct files copied to {IMAGES_DIR}/."
    )
    return images


def _attach_plots(items: dict, path: str | None, log: LoadLog, *, own_catalogue: bool) -> None:
    """Uses the ML-1M plot summaries (OMDb/IMDb text) as descriptions where movie ids match."""
    if path is None:
        log.note(f"ml-1m/{EXTRAINFOS} not found: items have no description.")
        return
    rows, bad = read_fields(path, "::", 11)
    log.drop_malformed(EXTRAINFOS, bad, "11 '::'-separated fields")
    matched = placeholders = 0
    for row in rows:
        item = items.get(row[0])
        if item is None:
            continue
        matched += 1
        plot = row[9].strip()
        if plot and plot != "N/A":
            item["description"] = plot
        else:
            placeholders += 1
    log.drop(f"{EXTRAINFOS} plots of 'N/A'", placeholders, "a placeholder, not a plot; no description")
    log.drop(
        f"{EXTRAINFOS} fields other than the plot",
        matched,
        "credits, MPAA rating, dates and OMDb genres are not loaded; poster URLs are unreachable offline",
    )
    if own_catalogue:
        log.drop(f"{EXTRAINFOS} rows", len(rows) - matched, "movie id not in movies.dat")
    else:
        log.note(f"Descriptions are ML-1M plots ({EXTRAINFOS}) for the {matched:,} shared movie ids.")


def _check_rated(log: LoadLog, interactions: Sequence[Sequence[str]], published: Mapping[str, int]) -> None:
    """Compares the ratings count and distinct rated users/items with the published figures."""
    log.check("ratings", published["ratings"], len(interactions))
    log.check("rated users", published["rated users"], len({row[0] for row in interactions}))
    log.check("rated items", published["rated items"], len({row[1] for row in interactions}))


def _drop_unknown(rows: list, items: Mapping, users: Mapping | None, log: LoadLog, label: str) -> list:
    """Drops interactions naming an item (or user) missing from the item (or user) file."""
    kept = []
    unknown_items = unknown_users = 0
    for row in rows:
        if row[1] not in items:
            unknown_items += 1
        elif users is not None and row[0] not in users:
            unknown_users += 1
        else:
            kept.append(row)
    log.drop(f"{label} rows with an unknown item", unknown_items, "item id not in the item file")
    log.drop(f"{label} rows with an unknown user", unknown_users, "user id not in the user file")
    return kept


def read_ml100k(dataset_dir: str, data_root: str) -> LoadedDataset:
    """Reads MovieLens 100K (`u.data`, `u.item`, `u.user`, `u.genre`) plus IMDb plots and posters."""
    log = LoadLog()
    items = _ml100k_items(dataset_dir, log)
    details = side_path(data_root, IMDB_DETAILS)
    if details is None:
        log.note(f"{os.path.join(data_root, IMDB_DETAILS)} not found: items have no description.")
    else:
        _attach_imdb_plots(items, details, log)
    images = _attach_posters(items, _ml100k_to_ml1m(data_root, log), data_root, log)
    rows, bad = read_fields(os.path.join(dataset_dir, "u.user"), "|", 5)
    log.drop_malformed("u.user", bad, "5 '|'-separated fields")
    users = {row[0]: row[1:4] for row in _unique(rows, log, "u.user rows")}
    log.drop("u.user zip_code column", len(users), ZIP_REASON)
    rows, bad = read_fields(os.path.join(dataset_dir, "u.data"), "\t", 4)
    log.drop_malformed("u.data", bad, "4 tab-separated fields")
    _check_rated(log, rows, {"ratings": 100_000, "rated users": 943, "rated items": 1_682})
    log.check("users", 943, len(users))
    log.check("items", 1_682, len(items))
    rows = _drop_unknown(rows, items, users, log, "u.data")
    log.note("Interactions are u.data; the official splits (u1..u5, ua, ub) partition it and are not loaded.")
    log.note(TERMS_NOTE)
    return LoadedDataset(
        items=_item_table(items),
        users=Table(("user_id", "age", "gender", "occupation"), [[u, *v] for u, v in users.items()]),
        interactions=Table(("user_id", "item_id", "timestamp", "rating"), _reorder(rows)),
        log=log,
        item_columns=ITEM_COLUMNS,
        user_columns=(
            ColumnDecl("age", "numeric"),
            ColumnDecl("gender", "categorical"),
            ColumnDecl("occupation", "categorical"),
        ),
        images=images,
    )


def _ml100k_items(dataset_dir: str, log: LoadLog) -> dict[str, dict[str, str]]:
    """Items from `u.item` (latin-1), with genre names from the flags in `u.genre` order."""
    genre_rows, bad = read_fields(os.path.join(dataset_dir, "u.genre"), "|", 2)
    log.drop_malformed("u.genre", bad, "'name|id'")
    genres = [name for name, _ in sorted(genre_rows, key=lambda row: int(row[1]))]
    n_fields = 5 + len(genres)
    rows, bad = read_fields(os.path.join(dataset_dir, "u.item"), "|", n_fields, encoding="latin-1")
    log.drop_malformed("u.item", bad, f"{n_fields} '|'-separated fields")
    items = {}
    placeholders = 0
    for row in _unique(rows, log, "u.item rows"):
        title = row[1].strip()
        if title == "unknown":
            title, placeholders = "", placeholders + 1
        # The release date is often a later re-release; the title's year is the film's, as in ML-1M.
        title_year = _TITLE_YEAR.search(title)
        release_year = row[2][-4:] if row[2][-4:].isdigit() else ""
        year = title_year.group(1) if title_year else release_year
        flags = row[5:]
        genre_names = (g for g, flag in zip(genres, flags) if flag == "1")
        items[row[0]] = {"title": title, "categories": CATEGORY_SEPARATOR.join(genre_names), "year": year}
    log.drop("u.item titles 'unknown'", placeholders, "a placeholder, not a title; the title is left empty")
    log.drop(
        "u.item columns release_date, video_release_date and IMDb_URL",
        len(items),
        "`year` comes from the title (the release date only when the title has none); video release "
        "dates are all empty; URLs are unreachable offline",
    )
    titles = Counter(item["title"] for item in items.values() if item["title"])
    repeats = sum(n - 1 for n in titles.values() if n > 1)
    log.note(f"{repeats} items repeat another item's title (ML-100K lists some movies twice); all are kept.")
    return items


def _attach_imdb_plots(items: dict, path: str, log: LoadLog) -> None:
    """Sets the one-line IMDb plots of `movielens100k_details.json` as descriptions."""
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    unknown = 0
    problems: Counter[str] = Counter()
    for record in records:
        item = items.get(str(record.get("movie_id")))
        if item is None:
            unknown += 1
            continue
        problem = _imdb_problem(record, item["title"])
        if problem is None:
            item["description"] = record["description"].strip()
        else:
            problems[problem] += 1
    log.drop(f"{IMDB_DETAILS} records", unknown, "item id not in u.item")
    for problem, count in sorted(problems.items()):
        log.drop(f"{IMDB_DETAILS} descriptions", count, problem)
    log.drop(
        f"{IMDB_DETAILS} fields other than the description",
        len(records) - unknown,
        "cast, crew, IMDb rating and length are not loaded; poster URLs are unreachable offline",
    )
    log.note(
        f"Descriptions are IMDb plots scraped in 2021 ({IMDB_DETAILS}); the scraper matched some titles "
        "to the wrong IMDb page, and only the detectable mismatches were dropped."
    )


def _imdb_problem(record: Mapping, title: str) -> str | None:
    """Why a scraped IMDb record is not this item's plot, or None when it looks right."""
    text = (record.get("description") or "").strip()
    if not text or text.startswith(IMDB_NO_PLOT):
        return "IMDb placeholder ('no Plot Summaries for this title yet'), not a plot"
    if not title:
        return "the item's title is the placeholder 'unknown', so the scraped page is arbitrary"
    year = str(record.get("year") or "").strip()
    if year and not _PLAIN_YEAR.fullmatch(year):
        return "the matched IMDb page is a TV episode, series, video or game, not this film"
    title_year = _TITLE_YEAR.search(title)
    if year and title_year and abs(int(float(year)) - int(title_year.group(1))) > 2:
        return "the matched IMDb page is more than 2 years off the title's year (e.g. a remake)"
    return None


def _ml100k_to_ml1m(data_root: str, log: LoadLog) -> dict[str, str]:
    """ML-100K item id -> ML-1M movie id, from the poster folder's mapping file."""
    path = side_path(data_root, POSTERS_DIR, ML100K_TO_ML1M)
    if path is None:
        return {}
    header = ("ml100k_item_id", "ml100k_title", "ml1m_movie_id", "ml1m_title", "match", "has_poster")
    rows, bad = read_csv_rows(path, header)
    log.drop_malformed(ML100K_TO_ML1M, bad, f"{len(header)} CSV fields")
    mapping = {row[0]: row[2] for row in rows if row[2]}
    log.note(f"{len(rows) - len(mapping)} items have no ML-1M id in {ML100K_TO_ML1M}, hence no poster.")
    return mapping


def _occupation(code: str) -> str:
    """The README's name for an ML-1M occupation code; unknown codes pass through."""
    return ML1M_OCCUPATIONS[int(code)] if code.isdigit() and int(code) < len(ML1M_OCCUPATIONS) else code


def read_ml1m(dataset_dir: str, data_root: str) -> LoadedDataset:
    """Reads MovieLens 1M (rebuilt ratings without timestamps) plus plots and posters."""
    log = LoadLog()
    rows, bad = read_fields(os.path.join(dataset_dir, "movies.dat"), "::", 3, encoding="latin-1")
    log.drop_malformed("movies.dat", bad, "3 '::'-separated fields")
    items = _movie_items(rows, log, "movies.dat")
    _attach_plots(items, side_path(dataset_dir, EXTRAINFOS), log, own_catalogue=True)
    images = _attach_posters(items, {i: i for i in items}, data_root, log)
    rows, bad = read_fields(os.path.join(dataset_dir, "users.dat"), "::", 5, encoding="latin-1")
    log.drop_malformed("users.dat", bad, "5 '::'-separated fields")
    users = [
        (u, gender, age, _occupation(occ)) for u, gender, age, occ, _ in _unique(rows, log, "users.dat rows")
    ]
    log.drop("users.dat zip-code column", len(users), ZIP_REASON)
    rows, bad = read_csv_rows(os.path.join(dataset_dir, ML1M_RATINGS), ("user_id", "movie_id", "rating"))
    log.drop_malformed(ML1M_RATINGS, bad, "3 CSV fields")
    _check_rated(log, rows, {"ratings": 1_000_209, "rated users": 6_040, "rated items": 3_706})
    log.check("users", 6_040, len(users))
    log.check("items", 3_883, len(items))
    rows = _drop_unknown(rows, items, {u[0] for u in users}, log, ML1M_RATINGS)
    log.note(
        f"No timestamps: ratings come from {ML1M_RATINGS} (rebuilt in the original order), so temporal "
        "and leave-last-out splits are unavailable; use a random or cold-item split."
    )
    log.note(
        "derived/ratings_latest20pct_with_timestamp.csv holds the latest 200,042 ratings with timestamps "
        "(usable as a temporal hold-out); it is not loaded."
    )
    log.note("User age is the ML-1M age-range code (1 = under 18, 18, 25, 35, 45, 50, 56 = 56+).")
    log.note(TERMS_NOTE)
    return LoadedDataset(
        items=_item_table(items),
        users=Table(("user_id", "gender", "age", "occupation"), users),
        interactions=Table(("user_id", "item_id", "rating"), rows),
        log=log,
        has_timestamps=False,
        item_columns=ITEM_COLUMNS,
        user_columns=tuple(ColumnDecl(c, "categorical") for c in ("gender", "age", "occupation")),
        images=images,
    )


def read_ml_latest_small(dataset_dir: str, data_root: str) -> LoadedDataset:
    """Reads ml-latest-small (`movies.csv`, `ratings.csv`) plus ML-1M plots and posters by shared id."""
    log = LoadLog()
    rows, bad = read_csv_rows(os.path.join(dataset_dir, "movies.csv"), ("movieId", "title", "genres"))
    log.drop_malformed("movies.csv", bad, "3 CSV fields")
    items = _movie_items(rows, log, "movies.csv")
    _attach_plots(items, side_path(data_root, "ml-1m", EXTRAINFOS), log, own_catalogue=False)
    images = _attach_posters(items, {i: i for i in items}, data_root, log)
    header = ("userId", "movieId", "rating", "timestamp")
    rows, bad = read_csv_rows(os.path.join(dataset_dir, "ratings.csv"), header)
    log.drop_malformed("ratings.csv", bad, "4 CSV fields")
    log.check("ratings", 100_836, len(rows))
    log.check("users", 610, len({row[0] for row in rows}))
    log.check("items", 9_742, len(items))
    rows = _drop_unknown(rows, items, None, log, "ratings.csv")
    users = sorted({row[0] for row in rows}, key=_id_key)
    log.counts["rated_items"] = len({row[1] for row in rows})
    log.note("No user features: users.csv lists the rated user ids only.")
    log.note("Ratings are half-stars from 0.5 to 5.0.")
    log.note("tags.csv (free-text user tags) and links.csv (IMDb/TMDb ids) are not loaded.")
    log.note(TERMS_NOTE)
    return LoadedDataset(
        items=_item_table(items),
        users=Table(("user_id",), [(u,) for u in users]),
        interactions=Table(("user_id", "item_id", "timestamp", "rating"), _reorder(rows)),
        log=log,
        item_columns=ITEM_COLUMNS,
        images=images,
    )


ML_100K = DatasetSpec("ml-100k", ("u.data", "u.item", "u.user", "u.genre"), read_ml100k)
ML_1M = DatasetSpec("ml-1m", ("movies.dat", "users.dat", ML1M_RATINGS), read_ml1m)
ML_LATEST_SMALL = DatasetSpec("ml-latest-small", ("movies.csv", "ratings.csv"), read_ml_latest_small)
