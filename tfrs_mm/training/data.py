"""Reading a dataset directory for training: the item table, vocabularies and tf.data pipelines.

Everything is located through `manifest.json`, so the trainer reads exactly
what the Beam jobs wrote, with the same feature specs.
"""

from __future__ import annotations

import functools
import glob

import numpy as np

from tfrs_mm import fileio, schema
from tfrs_mm.schema import features as F
from tfrs_mm.training import numeric_checks


def _files(data_dir: str, pattern: str) -> list[str]:
    path = fileio.join(data_dir, pattern)
    if fileio.is_uri(path):
        import tensorflow as tf

        return sorted(tf.io.gfile.glob(path))
    return sorted(glob.glob(path))


def read_item_records(data_dir: str, manifest: schema.Manifest) -> dict[str, np.ndarray]:
    """All item records as arrays: `item_id` [N] str, `{m}_embedding` [N, d_m], `{m}_present` [N]."""
    specs = [s for s in manifest.item_features if not s.varlen]
    return _read_records(data_dir, manifest, "items", specs, F.ITEM_ID)


def _read_records(
    data_dir: str, manifest: schema.Manifest, kind: str, specs: list, key: str
) -> dict[str, np.ndarray]:
    """Every record of `manifest.files[kind]` as arrays sorted by `key`; string features decoded."""
    import tensorflow as tf

    files = _files(data_dir, manifest.files[kind])
    if not files:
        raise FileNotFoundError(f"no {kind} records match {manifest.files[kind]} in {data_dir}")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
    parts: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    for batch in dataset:
        parsed = tf.io.parse_example(batch, schema.parsing_spec(specs))
        for name in parts:
            parts[name].append(parsed[name].numpy())
    arrays = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    order = np.argsort(arrays[key])  # shards arrive in any order: sort by id for determinism
    arrays = {name: values[order] for name, values in arrays.items()}
    for s in specs:
        if s.dtype == "string":
            arrays[s.name] = np.array([v.decode("utf-8") for v in arrays[s.name]], dtype=object)
    return arrays


def read_user_table(data_dir: str, manifest: schema.Manifest):
    """The `UserTable` of the dataset's user records (users.csv), or None when it has none."""
    from tfrs_mm.models.user_features import UserTable

    specs = list(manifest.user_features)
    if "users" not in manifest.files or len(specs) <= 1:
        return None
    arrays = _read_records(data_dir, manifest, "users", specs, F.USER_ID)
    masks = {F.presence_feature(s.name) for s in specs if s.dtype == "float32"}
    categorical = [s.name for s in specs if s.dtype == "string" and s.name != F.USER_ID]
    numeric = [s.name for s in specs if s.dtype == "float32"]
    # The records hold 0 where a value is missing, so any NaN or inf is damage, present or not.
    source = f"users records ({manifest.files['users']})"
    numeric_checks.check_finite_records(arrays, numeric, F.USER_ID, source)
    unexpected = [s.name for s in specs if s.name not in {F.USER_ID, *categorical, *numeric, *masks}]
    if unexpected:
        raise ValueError(f"user features {unexpected} are neither categorical, numeric nor presence masks")
    return UserTable(
        user_ids=arrays[F.USER_ID],
        categorical={name: arrays[name] for name in categorical},
        vocabularies={name: read_vocabulary(data_dir, manifest, name) for name in categorical},
        numeric={name: arrays[name] for name in numeric},
        numeric_present={name: arrays[F.presence_feature(name)].astype(bool) for name in numeric},
    )


def read_item_frequencies(data_dir: str, manifest: schema.Manifest) -> dict[str, int]:
    """Train interaction count per item (0 for items never seen in train), for logQ correction."""
    counts = {}
    with fileio.open_file(fileio.join(data_dir, manifest.item_frequencies)) as f:
        for line in f:
            if line.strip():
                item, count = line.rstrip("\n").split("\t")
                counts[item] = int(count)
    return counts


def read_vocabulary(data_dir: str, manifest: schema.Manifest, name: str) -> list[str]:
    """Tokens of a manifest vocabulary, in file order."""
    with fileio.open_file(fileio.join(data_dir, manifest.vocabulary(name).file)) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def read_split(data_dir: str, manifest: schema.Manifest, split: str):
    """(users, items, histories [n, H]) of every example of `split`, in file order."""
    users, items, histories = [], [], []
    for batch in interaction_dataset(data_dir, manifest, split, batch_size=8192):
        users += [u.decode() for u in batch[F.USER_ID].numpy()]
        items += [i.decode() for i in batch[F.ITEM_ID].numpy()]
        histories.append(batch[F.HISTORY].numpy())
    width = next(s for s in manifest.interaction_features if s.name == F.HISTORY).shape[0]
    return users, items, np.concatenate(histories) if histories else np.zeros([0, width], object)


def steps_per_epoch(manifest: schema.Manifest, split: str, batch_size: int) -> int:
    """Batches in one pass over `split` (the last one may be short)."""
    return -(-manifest.split.counts[split] // batch_size)


def interaction_dataset(
    data_dir: str,
    manifest: schema.Manifest,
    split: str,
    batch_size: int,
    *,
    shuffle: bool = False,
    shuffle_buffer: int = 0,
    seed: int = 0,
    cache: bool = False,
    repeat: bool = False,
):
    """A batched `tf.data.Dataset` of {user_id [B], item_id [B], history [B, H], ...} for one split.

    Parsing is parallel and the pipeline prefetches; `cache` keeps parsed
    examples in memory after the first epoch (for datasets that fit).
    `shuffle` reshuffles every epoch over `shuffle_buffer` examples, 0 meaning
    the whole split: the Beam job writes each user's examples together, and a
    short buffer would fill a batch with a few users. A NaN or infinite float
    feature stops iteration with an error naming it (`numeric_checks`).
    """
    import tensorflow as tf

    dataset = _records(data_dir, manifest, split, cache)
    if shuffle:
        dataset = dataset.shuffle(
            _buffer(manifest, split, shuffle_buffer), seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=False)
    if not repeat and split in manifest.split.counts:
        # A known number of steps lets Keras checkpoint mid-epoch and resume at the right step.
        steps = steps_per_epoch(manifest, split, batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    return _parsed(dataset, manifest, split)


def train_stream(
    data_dir: str,
    manifest: schema.Manifest,
    batch_size: int,
    *,
    epochs: int,
    seed: int,
    shuffle_buffer: int = 0,
    cache: bool = False,
    start: tuple[int, int] = (0, 0),
    history_sampler=None,
):
    """The train split shuffled afresh every epoch, as one stream of batches from (epoch, step) `start` on.

    Epoch `e` is shuffled with a seed made of (`seed`, `e`), so its order does
    not depend on how many epochs this process has already run: a run resumed
    from a backup at (epoch, step) continues with exactly the batches an
    uninterrupted run would see next. (Keras alone restarts the epoch's
    iterator, so a resumed epoch would train its first batches twice and never
    reach its last ones.) Fit it with `steps_per_epoch(manifest, "train", batch_size)`.
    A `history_sampler` (`history_sampler.TrainSetHistories`) replaces each
    batch's histories with samples seeded by (`seed`, epoch, step).
    """
    import tensorflow as tf

    records = _records(data_dir, manifest, "train", cache)
    buffer, steps = _buffer(manifest, "train", shuffle_buffer), steps_per_epoch(manifest, "train", batch_size)

    def epoch_batches(epoch):
        epoch_seed = seed * 1_000_003 + epoch
        order = records.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        # The epochs are told apart only by counting batches: a wrong count in the manifest must fail.
        batches = order.batch(batch_size).apply(tf.data.experimental.assert_cardinality(steps))
        # Each batch carries its (epoch seed, step) pair for the history sampler's stateless randomness.
        return batches.enumerate().map(
            lambda step, batch: (tf.stack([tf.constant(epoch_seed, tf.int64), step]), batch)
        )

    epoch, step = start
    # Python-int seeds, one dataset per epoch: a tensor seed (from `Dataset.range(...).flat_map`)
    # breaks `shuffle` in graph mode when the global seed is 0.
    parts = [epoch_batches(e) for e in range(epoch, epochs)] or [epoch_batches(0).take(0)]
    dataset = functools.reduce(lambda done, part: done.concatenate(part), parts).skip(step)
    if history_sampler is None:
        return _parsed(dataset.map(lambda _, batch: batch), manifest, "train")
    return _parsed(dataset, manifest, "train", history_sampler)


def _records(data_dir: str, manifest: schema.Manifest, split: str, cache: bool):
    import tensorflow as tf

    files = _files(data_dir, manifest.files[split])
    if not files:
        raise FileNotFoundError(f"no {split} records match {manifest.files[split]} in {data_dir}")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    return dataset.cache() if cache else dataset


def _buffer(manifest: schema.Manifest, split: str, shuffle_buffer: int) -> int:
    # Records are grouped by user: only a buffer the size of the split gives uniform batches.
    return shuffle_buffer or manifest.split.counts.get(split, 0) or 100_000


def _parsed(batches, manifest: schema.Manifest, split: str, history_sampler=None):
    """Batches of serialised records → parsed, finite-checked, prefetched feature batches.

    With a `history_sampler`, `batches` holds (seed, serialised batch) pairs.
    """
    import tensorflow as tf

    spec = schema.parsing_spec(manifest.interaction_features)
    floats = numeric_checks.float_features(manifest.interaction_features)

    def parse(*element):
        features = tf.io.parse_example(element[-1], spec)
        if history_sampler is not None:
            features = history_sampler(features, element[0])
        return numeric_checks.assert_finite_batch(features, floats, split)

    dataset = batches.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Shard by element, not by file: a split may be a single TFRecord shard, fewer than the workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
