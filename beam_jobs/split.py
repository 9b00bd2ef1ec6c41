"""Per-user steps of the interactions job: group, dedupe, filter, split, leakage-free history.

One shuffle groups each user's interactions in order (by timestamp, then input
file and line; by input order alone when the dataset has no timestamps); the
later steps work on those groups. Dedupe keeps the latest of each (user,
item). Filters run rating threshold, then rare items, then rare users, one pass
each (RecBole repeats items and users until nothing changes, so here a user
can keep an item that the user filter pushed below its minimum). Protocols:

- `random`: RecBole's per-user ratio split of a deterministic shuffle seeded
  by (seed, user); every user keeps at least one train item.
- `leave-last-out`: last interaction to test, second-last to valid (RecBole's
  leave-one-out: 1 interaction -> train, 2 -> train + test).
- `temporal`: one global time cut at the `split_ratios` quantiles of all
  kept timestamps (`ts <= cut1` train, `<= cut2` valid, the rest test; a
  quantile is the smallest timestamp with at least that share at or before
  it, so ties and tiny data tilt shares towards train).
- `cold-item`: items whose seeded hash falls below `cold_item_fraction` are
  held out, all their interactions to test; the other interactions are split
  per user between train and valid like `random`.

History rule (no leakage): an example's `history` holds the user's most recent
earlier items, most recent last, left-padded with `PADDING_ID`, taken from
train items for train and valid examples and from train + valid items for test
examples; never a later item, never a test item.
"""

from __future__ import annotations

import collections
import hashlib
import random
from collections.abc import Container, Iterable, Iterator, Sequence
from typing import NamedTuple

import apache_beam as beam

from beam_jobs.dead_letters import DEAD_LETTER, DeadLetter
from tfrs_mm.config import DataConfig
from tfrs_mm.schema.features import PADDING_ID

DEDUPE = "interactions.dedupe"
TRAIN, VALID, TEST = "train", "valid", "test"
SPLITS = (TRAIN, VALID, TEST)
SPLIT_PROTOCOLS = ("random", "leave-last-out", "temporal", "cold-item")
NEEDS_TIMESTAMPS = ("leave-last-out", "temporal")
QUANTILE_RESOLUTION = 1000  # temporal cuts land on a 0.1% grid of the timestamp distribution


class Interaction(NamedTuple):
    """One validated interaction; `file` and `line` give input order and provenance."""

    user: str
    item: str
    timestamp: int  # Unix seconds; 0 when the dataset has none
    rating: float | None  # None when absent
    weight: float
    file: str
    line: int

    def to_row(self) -> dict:
        """The fields a dead letter shows (the user id is already pseudonymised when configured)."""
        return {
            "user_id": self.user,
            "item_id": self.item,
            "timestamp": self.timestamp,
            "rating": self.rating,
            "weight": self.weight,
        }


class Example(NamedTuple):
    """One output record, before tf.train.Example encoding; `history` has length H."""

    user_id: str
    item_id: str
    history: tuple[str, ...]
    timestamp: int
    rating: float
    weight: float


def order_key(interaction: Interaction) -> tuple[int, str, int]:
    """Sort key "earlier first": timestamp (all 0 without timestamps), then file and line."""
    return interaction.timestamp, interaction.file, interaction.line


def check_split_supported(config: DataConfig, has_timestamps: bool) -> None:
    """Rejects a split the data cannot support, before any pipeline runs.

    Raises:
        ValueError: on an unknown protocol, bad ratios or fraction, or a
            time-based protocol on data without timestamps.
    """
    if config.split not in SPLIT_PROTOCOLS:
        raise ValueError(f"split must be one of {SPLIT_PROTOCOLS}, got {config.split!r}")
    ratios = config.split_ratios
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0 or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(
            f"split_ratios must be 3 non-negative numbers summing to 1 with train > 0, got {ratios}"
        )
    if config.split == "cold-item" and not 0.0 < config.cold_item_fraction < 1.0:
        raise ValueError(f"cold_item_fraction must be in (0, 1), got {config.cold_item_fraction}")
    if config.split in NEEDS_TIMESTAMPS and not has_timestamps:
        raise ValueError(
            f"split {config.split!r} orders interactions in time, but this dataset has no timestamps "
            "(dataset.json has_timestamps=false); use --split random or cold-item"
        )
    if config.history_length < 0:
        raise ValueError(f"history_length must be >= 0, got {config.history_length}")


def split_sizes(total: int, ratios: Sequence[float]) -> list[int]:
    """How many of `total` interactions go to each split; RecBole's `_calcu_split_ids`.

    Every split but the first gets floor(ratio * total), rounded up to 1 while
    the first split keeps more than one, so a user with 3 interactions and
    8:1:1 gets 1/1/1 and every user keeps at least one train interaction.
    """
    sizes = [int(r * total) for r in ratios]
    sizes[0] = total - sum(sizes[1:])
    for i in range(1, len(ratios)):
        if sizes[0] <= 1:
            break
        if 0 < ratios[-i] * total < 1:
            sizes[-i] += 1
            sizes[0] -= 1
    return sizes


def stable_fraction(*parts: object) -> float:
    """A uniform number in [0, 1) from a SHA-256 of the parts: the same on every worker and run."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_cold_item(item: str, fraction: float, seed: int) -> bool:
    """Whether the `cold-item` protocol holds `item` out (about `fraction` of all items)."""
    return stable_fraction(seed, "cold-item", item) < fraction


def shuffled_labels(count: int, ratios: Sequence[float], seed: int, user: str) -> list[str]:
    """Split labels for `count` ordered interactions of `user`, sized by `split_sizes` and shuffled."""
    sizes = split_sizes(count, ratios)
    labels = [label for label, size in zip(SPLITS, sizes) for _ in range(size)]
    random.Random(int(stable_fraction(seed, "random", user) * 2**53)).shuffle(labels)
    return labels


def leave_last_out_labels(count: int) -> list[str]:
    """Last to test, second-last to valid, the rest to train; 2 interactions: train + test, 1: train."""
    held_out = [VALID, TEST][-min(2, count - 1) :] if count > 1 else []
    return [TRAIN] * (count - len(held_out)) + held_out


def temporal_cuts(quantiles: Sequence[int], ratios: Sequence[float]) -> tuple[int, int] | None:
    """Cut timestamps (train <= cut1 < valid <= cut2 < test) from a 0.1% quantile grid.

    Args:
        quantiles: [QUANTILE_RESOLUTION + 1] timestamps, min first and max last
            (`ApproximateQuantiles` output); empty when there is no data.
        ratios: train, valid, test shares.
    """
    if not quantiles:
        return None
    last = len(quantiles) - 1
    cut1 = quantiles[round(ratios[0] * last)]
    cut2 = quantiles[round((ratios[0] + ratios[1]) * last)]
    return int(cut1), int(cut2)


def temporal_label(timestamp: int, cuts: tuple[int, int]) -> str:
    return TRAIN if timestamp <= cuts[0] else VALID if timestamp <= cuts[1] else TEST


def assign_labels(
    interactions: Sequence[Interaction], config: DataConfig, cuts: tuple[int, int] | None = None
) -> list[str]:
    """The split of each of one user's interactions, given in order (see `order_key`)."""
    user = interactions[0].user if interactions else ""
    if config.split == "random":
        return shuffled_labels(len(interactions), config.split_ratios, config.seed, user)
    if config.split == "leave-last-out":
        return leave_last_out_labels(len(interactions))
    if config.split == "temporal":
        if cuts is None:
            raise ValueError("the temporal split needs cut timestamps")
        return [temporal_label(x.timestamp, cuts) for x in interactions]
    warm = [
        i
        for i, x in enumerate(interactions)
        if not is_cold_item(x.item, config.cold_item_fraction, config.seed)
    ]
    labels = [TEST] * len(interactions)
    warm_labels = shuffled_labels(len(warm), config.split_ratios[:2], config.seed, user)
    for index, label in zip(warm, warm_labels):
        labels[index] = label
    return labels


def with_history(
    interactions: Iterable[Interaction], labels: Iterable[str], history_length: int
) -> Iterator[tuple[str, Example]]:
    """Yields (split, example) with the leakage-free history (module docstring) of each interaction.

    Args:
        interactions: One user's interactions, in order.
        labels: The split of each.
        history_length: H; histories are [H] item ids, most recent last.
    """
    train_items = collections.deque(maxlen=history_length)  # history of train and valid examples
    seen_items = collections.deque(maxlen=history_length)  # train + valid: history of test examples
    for x, label in zip(interactions, labels):
        source = seen_items if label == TEST else train_items
        history = (PADDING_ID,) * (history_length - len(source)) + tuple(source)
        rating = 0.0 if x.rating is None else x.rating
        yield label, Example(x.user, x.item, history, x.timestamp, rating, x.weight)
        if label == TRAIN:
            train_items.append(x.item)
        if label in (TRAIN, VALID):
            seen_items.append(x.item)


class GroupByUser(beam.PTransform):
    """`Interaction`s -> (user, [Interaction] sorted by `order_key`): one shuffle for all later steps."""

    def expand(self, interactions):
        return (
            interactions
            | "KeyByUser" >> beam.Map(lambda x: (x.user, x))
            | "Group" >> beam.GroupByKey()
            | "Order" >> beam.MapTuple(lambda user, xs: (user, sorted(xs, key=order_key)))
        )


class DedupeUserFn(beam.DoFn):
    """Keeps the latest interaction of each (user, item); the others become dead letters."""

    def __init__(self):
        self.duplicates = beam.metrics.Metrics.counter("interactions", "duplicate_rows")

    def process(self, group: tuple[str, list[Interaction]]):
        user, interactions = group
        latest = {x.item: x for x in interactions}  # in order, so the last one seen wins
        kept = [x for x in interactions if latest[x.item] is x]
        for x in interactions:
            if latest[x.item] is not x:
                winner = latest[x.item]
                detail = f"superseded by {winner.file}:{winner.line}"
                letter = DeadLetter(DEDUPE, "duplicate interaction", detail, x.file, x.line, x.to_row())
                self.duplicates.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter)
        yield user, kept


class DedupeInteractions(beam.PTransform):
    """(user, ordered interactions) -> the same without duplicates (main) and dead letters."""

    def expand(self, groups):
        return groups | "Dedupe" >> beam.ParDo(DedupeUserFn()).with_outputs(DEAD_LETTER, main="groups")


class FilterRatingsFn(beam.DoFn):
    """Drops interactions rated below `threshold` (or unrated); emits (reason, count) as `filtered`."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def process(self, group: tuple[str, list[Interaction]]):
        user, interactions = group
        kept = [x for x in interactions if x.rating is not None and x.rating >= self.threshold]
        unrated = sum(x.rating is None for x in interactions)
        yield from _filtered("no rating", unrated)
        yield from _filtered("rating below threshold", len(interactions) - len(kept) - unrated)
        if kept:
            yield user, kept


class FilterRareFn(beam.DoFn):
    """Drops rare items' interactions, then users left with fewer than `min_user` interactions."""

    def __init__(self, min_user: int):
        self.min_user = min_user

    def process(self, group: tuple[str, list[Interaction]], rare_items: Container[str]):
        user, interactions = group
        kept = [x for x in interactions if x.item not in rare_items]
        yield from _filtered("item below min interactions", len(interactions) - len(kept))
        if len(kept) < self.min_user:
            yield from _filtered("user below min interactions", len(kept))
        elif kept:
            yield user, kept


def _filtered(reason: str, count: int):
    if count:
        beam.metrics.Metrics.counter("interactions", "filtered_rows").inc(count)
        yield beam.pvalue.TaggedOutput("filtered", (reason, count))


class FilterInteractions(beam.PTransform):
    """(user, ordered interactions) -> kept groups (main) and `filtered`: (reason, count) pairs.

    Order: rating threshold, then items with fewer than `min_item_interactions`
    (counted after the rating filter), then users with fewer than
    `min_user_interactions` (counted after the item filter); one pass each.
    """

    def __init__(self, config: DataConfig):
        super().__init__()
        self.config = config

    def expand(self, groups):
        filtered = []
        if self.config.rating_threshold is not None:
            rated = groups | "Ratings" >> beam.ParDo(
                FilterRatingsFn(self.config.rating_threshold)
            ).with_outputs("filtered", main="groups")
            groups = rated.groups
            filtered.append(rated.filtered)
        rare = (
            groups
            | "Items" >> beam.FlatMapTuple(lambda _, xs: [x.item for x in xs])
            | "CountItems" >> beam.combiners.Count.PerElement()
            | "Rare" >> beam.Filter(lambda kv, least: kv[1] < least, self.config.min_item_interactions)
            | "RareIds" >> beam.Keys()
            | "RareSet" >> beam.combiners.ToSet()
        )
        kept = groups | "Rarity" >> beam.ParDo(
            FilterRareFn(self.config.min_user_interactions), rare_items=beam.pvalue.AsSingleton(rare)
        ).with_outputs("filtered", main="groups")
        filtered.append(kept.filtered)
        return kept.groups, filtered | "AllFiltered" >> beam.Flatten()


class SplitUserFn(beam.DoFn):
    """(user, [Interaction] in order) -> `Example`s tagged `train`, `valid` or `test`."""

    def __init__(self, config: DataConfig):
        self.config = config
        self.counters = {s: beam.metrics.Metrics.counter("interactions", f"written_{s}") for s in SPLITS}

    def process(self, group: tuple[str, list[Interaction]], cuts: tuple[int, int] | None = None):
        _, interactions = group
        labels = assign_labels(interactions, self.config, cuts)
        for label, example in with_history(interactions, labels, self.config.history_length):
            self.counters[label].inc()
            yield beam.pvalue.TaggedOutput(label, example)


class SplitInteractions(beam.PTransform):
    """Splits per-user groups into train/valid/test `Example`s with leakage-free histories.

    Input: (user, [Interaction] in order). Returns a dict with `train`, `valid`
    and `test` PCollections of `Example`, and `cuts`: one element, the temporal
    cut timestamps (None for the other protocols).
    """

    def __init__(self, config: DataConfig):
        super().__init__()
        self.config = config

    def expand(self, groups):
        if self.config.split == "temporal":
            ratios = self.config.split_ratios
            cuts = (
                groups
                | "Timestamps" >> beam.MapTuple(lambda _, xs: [x.timestamp for x in xs])
                | "Quantiles"
                >> beam.ApproximateQuantiles.Globally(QUANTILE_RESOLUTION + 1, input_batched=True)
                | "Cuts" >> beam.Map(temporal_cuts, ratios)
            )
        else:
            cuts = groups.pipeline | "NoCuts" >> beam.Create([None])
        outputs = groups | "Split" >> beam.ParDo(
            SplitUserFn(self.config), cuts=beam.pvalue.AsSingleton(cuts)
        ).with_outputs(*SPLITS)
        return {TRAIN: outputs[TRAIN], VALID: outputs[VALID], TEST: outputs[TEST], "cuts": cuts}
