"""Outputs of the interactions job: split TFRecords, vocabularies and the stats JSON.

The stats are computed inside the pipeline from each stage's own
PCollections, so on any runner `stats/interactions.json` says how many rows
each stage took in, wrote, dead-lettered and filtered, and `read_stats`
refuses a run whose counts do not balance.
"""

from __future__ import annotations

import dataclasses
import json

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes

from beam_jobs.dead_letters import reason_key
from beam_jobs.split import DEDUPE, SPLITS, TRAIN, is_cold_item
from tfrs_mm import fileio
from tfrs_mm.config import DataConfig
from tfrs_mm.privacy import Pseudonymizer
from tfrs_mm.schema.features import encode_example, interaction_features
from tfrs_mm.schema.manifest import StageCount

PARSE, VALIDATE = "interactions.parse", "interactions.validate"
USER_VOCAB = "vocab/user_id.txt"  # paths relative to DATA
ITEM_FREQUENCIES = "vocab/item_frequencies.tsv"
STATS_FILE = "stats/interactions.json"
FILTER = "interactions.filter"
STAGES = (PARSE, VALIDATE, DEDUPE, FILTER, "interactions.split")


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What one run reads and writes (see `build_interactions_pipeline`)."""

    interactions: str
    out_dir: str
    item_vocab: str
    config: DataConfig
    has_timestamps: bool
    pseudonymizer: Pseudonymizer | None = None


class WriteSplits(beam.PTransform):
    """{split: `Example`s} -> gzipped `DATA/<split>-*.tfrecord.gz` of tf.train.Examples."""

    def __init__(self, out_dir: str, history_length: int):
        super().__init__()
        self.out_dir = out_dir
        self.specs = interaction_features(history_length)

    def expand(self, splits):
        for split in SPLITS:
            name = split.capitalize()
            _ = (
                splits[split]
                | f"Encode{name}" >> beam.Map(lambda e, specs: encode_example(specs, e._asdict()), self.specs)
                | f"Write{name}"
                >> beam.io.WriteToTFRecord(
                    fileio.join(self.out_dir, split),
                    file_name_suffix=".tfrecord.gz",
                    compression_type=CompressionTypes.GZIP,
                )
            )
        return pvalue.PDone(splits[TRAIN].pipeline)


def vocabulary_lines(counts: list[tuple[str, int]], with_counts: bool) -> list[str]:
    """`token` or `token<TAB>count` lines, most frequent first, ties by token, as one text ([] if none).

    One element, so `WriteToText` keeps the order.
    """
    ordered = sorted(counts, key=lambda kv: (-kv[1], kv[0]))
    lines = [f"{t}\t{c}" if with_counts else t for t, c in ordered]
    return ["\n".join(lines)] if lines else []


def write_one_file(out_dir: str, relative: str) -> beam.io.WriteToText:
    """Writes exactly `out_dir/relative` (no shard suffix) through Beam filesystems."""
    stem, dot, suffix = relative.rpartition(".")
    return beam.io.WriteToText(fileio.join(out_dir, stem), dot + suffix, num_shards=1, shard_name_template="")


class WriteVocabularies(beam.PTransform):
    """Train `Example`s -> `vocab/user_id.txt` and `vocab/item_frequencies.tsv` (every vocab item).

    Returns:
        (user, train count) and (item, train count) PCollections.
    """

    def __init__(self, out_dir: str, item_vocab):
        super().__init__()
        self.out_dir = out_dir
        self.item_vocab = item_vocab

    def expand(self, train):
        users = train | "Users" >> beam.Map(lambda e: e.user_id)
        users = users | "CountUsers" >> beam.combiners.Count.PerElement()
        seen = train | "Items" >> beam.Map(lambda e: (e.item_id, 1))
        unseen = self.item_vocab | "VocabItems" >> beam.Map(lambda item: (item, 0))
        items = (seen, unseen) | "AllItems" >> beam.Flatten() | "CountItems" >> beam.CombinePerKey(sum)
        for name, counts, path in (("User", users, USER_VOCAB), ("Item", items, ITEM_FREQUENCIES)):
            _ = (
                counts
                | f"{name}List" >> beam.combiners.ToList()
                | f"{name}Lines" >> beam.FlatMap(vocabulary_lines, with_counts=name == "Item")
                | f"Write{name}s" >> write_one_file(self.out_dir, path)
            )
        return users, items


def build_stats(entries: list[tuple[tuple, object]], job: JobSpec) -> dict:
    """`stats/interactions.json` from the (key path, value) entries `WriteStats` counted.

    Keys: `input_rows`; `written` {train, valid, test}; `dead_lettered`
    {"stage: reason": n}; `filtered` {reason: n}; `stages` [{stage, input,
    written, dead_lettered, filtered}] for parse, validate, dedupe, filter and
    split, each side counted on its own; `balanced` (input = written +
    dead-lettered + filtered at every stage); `users` and `items` (in any
    split); `train_users`, `train_items`, `vocabulary_items`, `cold_items`;
    `split` {protocol, params}; `filters`; `has_timestamps`; `pseudonymized_users`.
    """
    flat, config = dict(entries), job.config
    dead = {k[1]: v for k, v in sorted(flat.items()) if k[0] == "dead_lettered"}
    filtered = {k[1]: v for k, v in sorted(flat.items()) if k[0] == "filtered"}
    written = {s: flat.get(("written", s), 0) for s in SPLITS}
    stages = _stages(flat, dead, sum(filtered.values()), sum(written.values()))
    params = {
        "ratios": list(config.split_ratios),
        "seed": config.seed,
        "history_length": config.history_length,
    }
    if config.split == "cold-item":
        params["cold_item_fraction"] = config.cold_item_fraction
    if config.split == "temporal":
        params["cut_timestamps"] = flat.get(("cut_timestamps",))
    filters = {
        k: getattr(config, k) for k in ("rating_threshold", "min_item_interactions", "min_user_interactions")
    }
    return {
        "job": "interactions",
        "input_rows": stages[0]["input"],
        "written": written,
        "dead_lettered": dead,
        "filtered": filtered,
        "balanced": all(s["input"] == s["written"] + s["dead_lettered"] + s["filtered"] for s in stages),
        "stages": stages,
        **{
            k: flat.get((k,), 0) for k in ("users", "items", "train_users", "train_items", "vocabulary_items")
        },
        "cold_items": flat.get(("cold_items",), 0),
        "split": {"protocol": config.split, "params": params},
        "filters": {**filters, "order": "rating, then items, then users; one pass each"},
        "has_timestamps": job.has_timestamps,
        "pseudonymized_users": config.pseudonymize_users,
    }


def _stages(flat: dict, dead: dict[str, int], filtered: int, written: int) -> list[dict]:
    """Per-stage counts, each measured on its own PCollection, so `balanced` is a real check."""
    counts = [flat.get((k,), 0) for k in ("parsed", "parsed", "validated", "deduped", "kept")] + [written]
    stages = []
    for i, stage in enumerate(STAGES):
        lost = sum(v for k, v in dead.items() if k.startswith(stage + ": "))
        into = counts[i] + (lost if stage == PARSE else 0)  # parse dead letters never became rows
        dropped = filtered if stage == FILTER else 0
        row = {
            "stage": stage,
            "input": into,
            "written": counts[i + 1],
            "dead_lettered": lost,
            "filtered": dropped,
        }
        stages.append(row)
    return stages


class WriteStats(beam.PTransform):
    """Named PCollections of the job -> `DATA/stats/interactions.json` (see `build_stats`).

    Every count is a (key path, 1 or n) pair summed in one combine, which keeps
    the graph small (a `Count.Globally` per figure would triple it).
    """

    def __init__(self, job: JobSpec):
        super().__init__()
        self.job = job

    def expand(self, c):
        items = c["kept"] | "KeptItems" >> beam.FlatMapTuple(lambda _, xs: {x.item for x in xs})
        seen = c["item_counts"] | "Seen" >> beam.Filter(lambda kv: kv[1] > 0)
        ones = {
            ("parsed",): c["parsed"],
            ("validated",): c["validated"],
            ("users",): c["kept"],
            ("items",): items | "DistinctItems" >> beam.Distinct(),
            ("train_users",): c["user_counts"],
            ("train_items",): seen,
            ("vocabulary_items",): c["vocab"],
            **{("written", s): c[s] for s in SPLITS},
        }
        if self.job.config.split == "cold-item":
            fraction, seed = self.job.config.cold_item_fraction, self.job.config.seed
            ones[("cold_items",)] = c["vocab"] | "ColdItems" >> beam.Filter(is_cold_item, fraction, seed)
        entries = [
            pcoll | f"Count{'_'.join(key).title()}" >> beam.Map(lambda _, key: (key, 1), key)
            for key, pcoll in ones.items()
        ]
        for key in ("deduped", "kept"):
            sizes = c[key] | f"Size{key.title()}" >> beam.Map(lambda group, key: ((key,), len(group[1])), key)
            entries.append(sizes)
        entries.append(c["letters"] | "Reasons" >> beam.Map(lambda x: (("dead_lettered", reason_key(x)), 1)))
        entries.append(
            c["filtered"] | "Filtered" >> beam.MapTuple(lambda reason, n: (("filtered", reason), n))
        )
        counts = entries | "AllCounts" >> beam.Flatten() | "Sum" >> beam.CombinePerKey(sum)
        cuts = c["cuts"] | "KeyCuts" >> beam.Map(lambda cuts: (("cut_timestamps",), cuts and list(cuts)))
        return (
            (counts, cuts)
            | "AllEntries" >> beam.Flatten()
            | "Entries" >> beam.combiners.ToList()
            | "Build" >> beam.Map(build_stats, self.job)
            | "ToJson" >> beam.Map(lambda stats: json.dumps(stats, indent=2, sort_keys=True))
            | "Write" >> write_one_file(self.job.out_dir, STATS_FILE)
        )


def read_stats(out_dir: str) -> dict:
    """The stats a finished run wrote, checked: every input row is written, dead-lettered or filtered."""
    return read_balanced_stats(out_dir, STATS_FILE, "interactions")


def read_balanced_stats(out_dir: str, stats_file: str, job: str) -> dict:
    """A job's stats file (`stats_file` relative to `out_dir`), refused unless its counts balance.

    Raises:
        RuntimeError: if the counts do not balance (a bug, never bad data).
    """
    with fileio.open_file(fileio.join(out_dir, stats_file)) as f:
        stats = json.load(f)
    if not stats["balanced"]:
        raise RuntimeError(f"{job} job lost rows: {json.dumps(stats['stages'])}")
    return stats


def stage_counts(stats: dict) -> tuple[StageCount, ...]:
    """`StageCount`s for the manifest, one per stage of the job."""
    fields = {f.name for f in dataclasses.fields(StageCount)}
    return tuple(StageCount(**{k: v for k, v in s.items() if k in fields}) for s in stats["stages"])
