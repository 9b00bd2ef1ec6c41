"""Assembles `manifest.json` from what the jobs wrote, and the run's summary table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from beam_jobs.interaction_outputs import ITEM_FREQUENCIES, USER_VOCAB, stage_counts
from beam_jobs.items import ITEMS_PREFIX, ModalitySource
from beam_jobs.users import DEDUPE as USERS_WRITTEN_STAGE
from beam_jobs.users import USERS_PREFIX, vocabulary_file
from tfrs_mm import __version__, fileio, schema
from tfrs_mm import config as config_lib
from tfrs_mm.data import raw

ITEM_STAGES = ("items.read", "items.parse", "items.dedupe")


def _count_lines(path: str) -> int:
    with fileio.open_file(path) as f:
        return sum(1 for line in f if line.strip())


def item_stage_counts(
    stats: Mapping[str, int], modalities: Mapping[str, ModalitySource]
) -> list[schema.StageCount]:
    """The items job's stages: rows → items, then one stage per modality (inputs → embeddings)."""
    letters = {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith("dead_letter/")}
    item_letters = sum(v for k, v in letters.items() if k.split(":")[0] in ITEM_STAGES)
    counts = [schema.StageCount("items", stats.get("input", 0), stats.get("written", 0), item_letters)]
    for modality, source in sorted(modalities.items()):
        embedded = stats.get(f"{modality}/embedded", 0)
        dead = stats.get(f"{modality}/dead_lettered", 0)
        # Precomputed rows are not items' inputs: count those that reached an item.
        given = embedded + dead if source.precomputed else stats.get(f"{modality}/input", 0)
        counts.append(schema.StageCount(f"items.{modality}", given, embedded, dead))
    return counts


def user_parts(info: raw.RawDatasetInfo, users_stats: Mapping | None) -> dict:
    """The manifest's user features, vocabularies, counts, files and source entries; empty without users."""
    if users_stats is None:
        return {
            "features": (),
            "vocabularies": (),
            "stage_counts": (),
            "files": {},
            "source": {},
            "dead_lettered": {},
        }
    vocabularies = tuple(
        schema.VocabularyRecord(name, vocabulary_file(name), size, num_oov_buckets=1)
        for name, size in users_stats["vocabularies"].items()
    )
    return {
        "features": schema.user_features(info.user_columns),
        "vocabularies": vocabularies,
        "stage_counts": stage_counts(users_stats),
        "files": {"users": f"{USERS_PREFIX}-*.tfrecord.gz"},
        "source": {"user_columns_unused": schema.unused_user_columns(info.user_columns)},
        "dead_lettered": users_stats["dead_lettered"],
    }


def _vocabularies(out_dir: str, items_stats: Mapping) -> tuple[schema.VocabularyRecord, ...]:
    """Item ids, user ids and categories; their sizes are the written files' line counts."""
    categories = "vocab/categories.txt"
    return (
        schema.VocabularyRecord("item_id", "vocab/item_id.txt", items_stats.get("written", 0)),
        schema.VocabularyRecord("user_id", USER_VOCAB, _count_lines(fileio.join(out_dir, USER_VOCAB))),
        schema.VocabularyRecord("categories", categories, _count_lines(fileio.join(out_dir, categories))),
    )


def _split_record(interactions_stats: Mapping) -> schema.SplitRecord:
    split = interactions_stats["split"]
    counts = {**interactions_stats["written"], "users": interactions_stats["users"]}
    counts.update(items=interactions_stats["items"], cold_items=interactions_stats["cold_items"])
    return schema.SplitRecord(split["protocol"], split["params"], counts)


def build_manifest(
    info: raw.RawDatasetInfo,
    config: config_lib.Config,
    raw_dir: str,
    out_dir: str,
    modalities: Mapping[str, ModalitySource],
    encoders: Sequence[schema.EncoderRecord],
    items_stats: Mapping,
    interactions_stats: Mapping,
    users_stats: Mapping | None = None,
) -> schema.Manifest:
    """The dataset directory's manifest; `write_manifest` checks its counts balance.

    `users_stats` (`beam_jobs.users.read_stats`) is None without `users.csv`: no user features then.
    """
    users = user_parts(info, users_stats)
    letters = {**_item_letters(items_stats), **interactions_stats["dead_lettered"], **users["dead_lettered"]}
    return schema.Manifest(
        item_features=schema.item_features({m: s.dim for m, s in modalities.items()}, info.item_columns),
        interaction_features=schema.interaction_features(config.data.history_length),
        user_features=users["features"],
        encoders=tuple(encoders),
        vocabularies=(*_vocabularies(out_dir, items_stats), *users["vocabularies"]),
        item_frequencies=ITEM_FREQUENCIES,
        split=_split_record(interactions_stats),
        stage_counts=(
            *item_stage_counts(items_stats, modalities),
            *stage_counts(interactions_stats),
            *users["stage_counts"],
        ),
        files={
            "items": f"{ITEMS_PREFIX}-*.tfrecord.gz",
            **{s: f"{s}-*.tfrecord.gz" for s in ("train", "valid", "test")},
            **users["files"],
            "dead_letter": "dead_letter/*.jsonl",
            "stats": "stats/*.json",
        },
        source={
            "raw_dir": raw_dir,
            "name": info.name,
            "has_timestamps": info.has_timestamps,
            "notes": list(info.notes),
            "pseudonymized_users": config.data.pseudonymize_users,
            "filters": interactions_stats["filters"],
            "dead_lettered": letters,
            "filtered": interactions_stats["filtered"],
            **users["source"],
        },
        created_by=f"tfrs_mm {__version__}",
    )


def _item_letters(stats: Mapping[str, int]) -> dict[str, int]:
    return {k.split("/", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("dead_letter/")}


def format_summary(manifest: schema.Manifest, items_seconds: float, interactions_seconds: float) -> str:
    """The table printed at the end of `tfrs-mm preprocess`."""
    stages = {c.stage: c for c in manifest.stage_counts}
    items = stages["items"]
    lines = [
        "stage                     input    written  dead-lettered  filtered",
        *(
            f"{c.stage:<22} {c.input:>9,} {c.written:>10,} {c.dead_lettered:>14,} {c.filtered:>9,}"
            for c in manifest.stage_counts
        ),
        "",
        f"items: {items.written:,} written in {items_seconds:.1f} s "
        f"({items.written / max(items_seconds, 1e-9):.1f} items/s)",
    ]
    for record in manifest.encoders:
        stage = stages.get(f"items.{record.modality}")
        embedded = f"{stage.written:,}/{stage.input:,} embedded" if stage else ""
        lines.append(f"  {record.modality:<6} {embedded:<22} {record.name} {record.version} ({record.dim}-d)")
    counts = manifest.split.counts
    lines.append(
        f"interactions ({manifest.split.protocol} split, {interactions_seconds:.1f} s): "
        f"train {counts.get('train', 0):,} / valid {counts.get('valid', 0):,} / "
        f"test {counts.get('test', 0):,}; "
        f"{counts.get('users', 0):,} users, {counts.get('items', 0):,} items"
    )
    users = stages.get(USERS_WRITTEN_STAGE)
    if users is not None:
        names = [f.name for f in manifest.user_features[1:] if not f.name.endswith("_present")]
        lines.append(f"users (users.csv): {users.written:,} written; features: {', '.join(names) or 'none'}")
    letters = manifest.source.get("dead_lettered", {})
    lines.append("dead letters by reason:" if letters else "dead letters: none")
    lines += [f"  {reason:<52} {n:>7,}" for reason, n in sorted(letters.items())]
    for reason, n in sorted(manifest.source.get("filtered", {}).items()):
        lines.append(f"  filtered: {reason:<42} {n:>7,}")
    return "\n".join(lines)
