"""Last.fm-2K reader: the MMRec version with precomputed text and audio embeddings.

Items and users keep MMRec's 0-based ids so that row i of the MMRec `.npy`
feature files stays item i. The original HetRec ids, given row by row in
`lfm2k_og_ids.inter`, are used only to join artist names and tag text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from tfrs_mm.data.loaders import DatasetSpec, Embedding, LoadedDataset, LoadLog, Table, read_fields
from tfrs_mm.data.raw import ITEM_COLUMNS, ColumnDecl

INTER = os.path.join("mmrec", "lfm2k.inter")
OG_IDS = os.path.join("mmrec", "lfm2k_og_ids.inter")
ARTISTS = os.path.join("original", "artists.dat")
TAG_TEXT = "lfm2k_text.tsv"
INTER_HEADER = ("userID", "itemID", "rating", "x_label")
SPLITS = {"0": "train", "1": "valid", "2": "test"}
EMBEDDINGS = (
    ("text", os.path.join("mmrec", "all-MiniLM-L6-v2.npy"), "all-MiniLM-L6-v2 on artist tag text (MMRec)"),
    ("audio", os.path.join("mmrec", "vggish.npy"), "VGGish on a song per artist (MMRec)"),
)
PUBLISHED_ITEMS = 1_425


def read_lastfm2k(dataset_dir: str, data_root: str) -> LoadedDataset:
    """Reads MMRec's `lfm2k.inter` with artist names, tag text and precomputed embeddings.

    Args:
        dataset_dir: The `lastfm-2k-multimodal` folder.
        data_root: Unused; every Last.fm file lives under `dataset_dir`.
    """
    del data_root
    log = LoadLog()
    inter = _read_inter(dataset_dir, INTER)
    artist_of = _original_item_ids(inter, _read_inter(dataset_dir, OG_IDS))
    log.check("interactions", 56_345, len(inter))
    log.check("users", 1_858, len({row[0] for row in inter}))
    log.check("items", PUBLISHED_ITEMS, len(artist_of))
    item_ids = sorted(artist_of, key=int)
    names = _read_tsv_values(os.path.join(dataset_dir, ARTISTS), ("id", "name", "url", "pictureURL"), log)
    log.drop(f"{ARTISTS} url and pictureURL columns", len(names), "web links, unreachable offline")
    text_path = os.path.join(dataset_dir, TAG_TEXT)
    texts = _read_tsv_values(text_path, ("artistID", "text"), log) if os.path.isfile(text_path) else {}
    if not texts:
        log.note(f"{text_path} not found or empty: items have no description.")
    items = [(i, names.get(artist_of[i], ""), texts.get(artist_of[i], ""), "", "", "") for i in item_ids]
    rows = [(user, item, rating, SPLITS[label]) for user, item, rating, label in inter if label in SPLITS]
    log.drop(f"{INTER} rows", len(inter) - len(rows), f"x_label not one of {sorted(SPLITS)}")
    embeddings = [_embedding(dataset_dir, m, rel, enc, item_ids, log) for m, rel, enc in EMBEDDINGS]
    _add_notes(log)
    return LoadedDataset(
        items=Table(ITEM_COLUMNS, items),
        users=Table(("user_id",), [(u,) for u in sorted({row[0] for row in inter}, key=int)]),
        interactions=Table(("user_id", "item_id", "rating", "mmrec_split"), rows),
        log=log,
        has_timestamps=False,
        interaction_columns=(ColumnDecl("mmrec_split", "categorical"),),
        embeddings=tuple(e for e in embeddings if e is not None),
    )


def _read_inter(dataset_dir: str, rel: str) -> list[list[str]]:
    path = os.path.join(dataset_dir, rel)
    rows, bad = read_fields(path, "\t", len(INTER_HEADER), header=INTER_HEADER)
    # The two .inter files are joined row by row, so a skipped line would misalign them.
    if bad:
        raise ValueError(
            f"{path}: malformed lines {bad[:5]}; expected {len(INTER_HEADER)} tab-separated values"
        )
    not_ids = [row for row in rows if not (row[0].isdigit() and row[1].isdigit())]
    if not_ids:
        raise ValueError(f"{path}: user and item ids must be non-negative integers, found {not_ids[0][:2]}")
    return rows


def _original_item_ids(inter: Sequence[Sequence[str]], og: Sequence[Sequence[str]]) -> dict[str, str]:
    """MMRec item id -> HetRec artist id, checking that both id mappings are one-to-one.

    Raises:
        ValueError: the files differ in rows, or an id maps to two ids.
    """
    if len(inter) != len(og):
        raise ValueError(
            f"{OG_IDS} has {len(og)} rows but {INTER} has {len(inter)}; they must be the same rows"
        )
    items: dict[str, str] = {}
    users: dict[str, str] = {}
    for number, (row, og_row) in enumerate(zip(inter, og), start=2):
        if row[2:] != og_row[2:]:
            raise ValueError(
                f"{OG_IDS} line {number}: rating/x_label differ from {INTER}, so rows do not align"
            )
        for mapping, key, value in ((users, row[0], og_row[0]), (items, row[1], og_row[1])):
            if mapping.setdefault(key, value) != value:
                raise ValueError(
                    f"{OG_IDS} line {number}: MMRec id {key} maps to both {mapping[key]} and {value}"
                )
    for what, mapping in (("user", users), ("item", items)):
        if len(set(mapping.values())) != len(mapping):
            raise ValueError(
                f"{OG_IDS}: two MMRec {what} ids share an original id; the mapping is not one-to-one"
            )
    return items


def _read_tsv_values(path: str, header: Sequence[str], log: LoadLog) -> dict[str, str]:
    """Column 1 by column 0 of a tab-separated file with a header (HetRec-style, unquoted)."""
    rows, bad = read_fields(path, "\t", len(header), header=header)
    log.drop_malformed(os.path.basename(path), bad, f"{len(header)} tab-separated fields")
    values: dict[str, str] = {}
    for row in rows:
        values.setdefault(row[0], row[1].strip())
    log.drop(f"{os.path.basename(path)} rows", len(rows) - len(values), "repeat an id; the first row is kept")
    return values


def _embedding(
    dataset_dir: str, modality: str, rel: str, encoder: str, item_ids: Sequence[str], log: LoadLog
) -> Embedding | None:
    """Selects the MMRec feature rows of `item_ids` (row i is itemID i) as float32."""
    path = os.path.join(dataset_dir, rel)
    if not os.path.isfile(path):
        log.note(f"{rel} not found: no precomputed {modality} embedding.")
        return None
    values = np.load(path, allow_pickle=False)
    if values.ndim != 2:
        raise ValueError(f"{path}: expected a [items, dim] matrix, got shape {values.shape}")
    log.check(f"{modality} embedding rows", PUBLISHED_ITEMS, values.shape[0])
    covered = [i for i in item_ids if int(i) < values.shape[0]]
    log.drop(f"{rel} rows", values.shape[0] - len(covered), "no interaction names that item id")
    if len(covered) < len(item_ids):
        log.note(f"{len(item_ids) - len(covered)} items lack a {modality} embedding (id beyond {rel}).")
    selected = values[np.asarray([int(i) for i in covered], dtype=np.int64)]
    return Embedding(modality, covered, selected.astype(np.float32), encoder)


def _add_notes(log: LoadLog) -> None:
    log.note(
        "No timestamps: use the MMRec split (interaction column mmrec_split: train/valid/test from "
        "x_label 0/1/2) or a random split; temporal and leave-last-out splits are unavailable."
    )
    log.note("Implicit feedback: every rating is 1 (the user listened to the artist).")
    log.note(
        f"Ids are MMRec's; the HetRec ids in {OG_IDS} were used to join artist names ({ARTISTS}) as titles "
        f"and tag text ({TAG_TEXT}) as descriptions."
    )
    log.note(
        "No image or audio files exist offline: lfm2k_covers_extended_mapping.tsv and "
        "lfm2k_song_extended_mapping.tsv hold only cover and YouTube URLs. The text and audio modalities "
        "come as the precomputed embeddings; mmrec/whisper.npy ([1425, 512] Whisper audio features) is an "
        "alternative audio embedding that is not loaded."
    )
    log.note(
        "original/user_artists.dat, tags.dat and user_friends.dat (full HetRec 2011 data) are not loaded."
    )
    log.note("HetRec/Last.fm terms: non-commercial use only; cite the MMRec multimodal extension paper.")


LASTFM_2K = DatasetSpec("lastfm-2k-multimodal", (INTER, OG_IDS, ARTISTS), read_lastfm2k)
