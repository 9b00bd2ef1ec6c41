"""Assembles `manifest.json` from what the two jobs wrote, and the run's summary table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from beam_jobs.interaction_outputs import ITEM_FREQUENCIES, USER_VOCAB, stage_counts
from beam_jobs.items import ITEMS_PREFIX, ModalitySource
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


def build_manifest(
    info: raw.RawDatasetInfo,
    config: config_lib.Config,
    raw_dir: str,
    out_dir: str,
    modalities: Mapping[str, ModalitySource],
    encoders: Sequence[schema.EncoderRecord],
    items_stats: Mapping,
    interactions_stats: Mapping,
) -> schema.Manifest:
    """The dataset directory's manifest; `write_manifest` checks its counts balance."""
    vocab = fileio.join(out_dir, "vocab")
    vocabularies = (
        schema.VocabularyRecord("item_id", "vocab/item_id.txt", items_stats.get("written", 0)),
        schema.VocabularyRecord("user_id", USER_VOCAB, _count_lines(fileio.join(out_dir, USER_VOCAB))),
        schema.VocabularyRecord(
            "categories", "vocab/categories.txt", _count_lines(fileio.join(vocab, "categories.txt"))
        ),
    )
    split = interactions_stats["split"]
    split_counts = {**interactions_stats["written"], "users": interactions_stats["users"]}
    split_counts.update(items=interactions_stats["items"], cold_items=interactions_stats["cold_items"])
    return schema.Manifest(
        item_features=schema.item_features({m: s.dim for m, s in modalities.items()}, info.item_columns),
        interaction_features=schema.interaction_features(config.data.history_length),
        encoders=tuple(encoders),
        vocabularies=vocabularies,
        item_frequencies=ITEM_FREQUENCIES,
        split=schema.SplitRecord(split["protocol"], split["params"], split_counts),
        stage_counts=(*item_stage_counts(items_stats, modalities), *stage_counts(interactions_stats)),
        files={
            "items": f"{ITEMS_PREFIX}-*.tfrecord.gz",
            **{s: f"{s}-*.tfrecord.gz" for s in ("train", "valid", "test")},
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
            "dead_lettered": {**_item_letters(items_stats), **interactions_stats["dead_lettered"]},
            "filtered": interactions_stats["filtered"],
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
    letters = manifest.source.get("dead_lettered", {})
    lines.append("dead letters by reason:" if letters else "dead letters: none")
    lines += [f"  {reason:<52} {n:>7,}" for reason, n in sorted(letters.items())]
    for reason, n in sorted(manifest.source.get("filtered", {}).items()):
        lines.append(f"  filtered: {reason:<42} {n:>7,}")
    return "\n".join(lines)
