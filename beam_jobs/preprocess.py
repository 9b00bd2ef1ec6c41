"""`tfrs-mm preprocess`: run the items job, then the interactions (+ users) job, then write `manifest.json`.

    python -m beam_jobs.preprocess --raw RAW --out DATA [--split random] [--set data.x=y]
        [--runner=DirectRunner --direct_num_workers=2 ...]

The items job is a pipeline of its own because the interactions job validates
against the item vocabulary it writes. The users job (when `RAW/users.csv`
exists) needs no item vocabulary and runs in the interactions pipeline, with
the same pseudonymizer. Each job writes its own counts (`stats/*.json`) from
inside the pipeline, so the manifest's input = written + dead-lettered
bookkeeping comes out the same on any runner.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from collections.abc import Callable, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import interactions as interactions_job
from beam_jobs import users as users_job
from beam_jobs.dataset_manifest import build_manifest, format_summary
from beam_jobs.items import STATS_DIR, ItemsJobSpec, ModalitySource, build_items_pipeline
from beam_jobs.read_tables import CSV_FIELD_LIMIT
from tfrs_mm import config as config_lib
from tfrs_mm import fileio, schema
from tfrs_mm.data import raw
from tfrs_mm.privacy import Pseudonymizer, load_pseudonymizer

logger = logging.getLogger("beam_jobs")

PipelineFactory = Callable[[], beam.Pipeline]
MIN_AUDIO_SECONDS = 3.0  # musicnn embeds whole 3 s patches


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options with DirectRunner unless a runner is named (PrismRunner cannot run offline)."""
    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=DirectRunner")
    return PipelineOptions(args)


def detect_modalities(items_pattern: str, info: raw.RawDatasetInfo) -> set[str]:
    """Modalities at least one item has, plus precomputed ones.

    Reads the items CSV once at launch (the validator's cost); for JSONL or
    Parquet items every modality is assumed and items without one get a mask bit.
    Bad rows are the jobs' to dead-letter, not a reason to stop here: undecodable
    bytes and huge fields are read through, and a file the csv module cannot
    parse counts as having every modality.
    """
    import csv

    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    found = {e.modality for e in info.precomputed_embeddings}
    if not items_pattern.endswith(".csv") or "*" in items_pattern:
        return found | set(raw.MODALITIES)
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    # Beam filesystems give a binary stream on local paths and URIs alike.
    with FileSystems.open(items_pattern, "application/octet-stream", CompressionTypes.UNCOMPRESSED) as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
        try:
            for row in csv.DictReader(text):
                found.update(m for m in ("image", "audio") if (row.get(m) or "").strip())
                if (row.get("title") or "").strip() or (row.get("description") or "").strip():
                    found.add("text")
                if len(found) == len(raw.MODALITIES):
                    break
        except csv.Error:
            return found | set(raw.MODALITIES)
    return found


def resolve_modalities(
    raw_dir: str,
    items_pattern: str,
    info: raw.RawDatasetInfo,
    data: config_lib.DataConfig,
    cache_dir: str | None,
) -> tuple[dict[str, ModalitySource], list[schema.EncoderRecord]]:
    """Chooses the embedding source per modality and exports bundled encoders into the cache."""
    from tfrs_mm import encoders

    handles = {"text": data.text_encoder, "image": data.image_encoder, "audio": data.audio_encoder}
    precomputed = {e.modality: e for e in info.precomputed_embeddings}
    sources, records = {}, []
    for modality in sorted(detect_modalities(items_pattern, info)):
        if modality in precomputed:
            emb = precomputed[modality]
            sources[modality] = ModalitySource(dim=emb.dim, precomputed=fileio.join(raw_dir, emb.file))
            records.append(
                schema.EncoderRecord(modality, f"precomputed:{emb.file}", emb.encoder, "", emb.dim, "", True)
            )
            continue
        path, encoder_info = encoders.resolve_encoder(
            handles[modality],
            modality,
            image_size=data.image_size,
            text_max_tokens=data.text_max_tokens,
            cache_dir=cache_dir,
        )
        sources[modality] = ModalitySource(dim=encoder_info.dim, model_path=path)
        records.append(encoders.encoder_record(encoder_info))
    return sources, records


@dataclasses.dataclass(frozen=True)
class PreprocessResult:
    """What a preprocess run produced: the manifest, the jobs' counts, and how long each job took.

    `users_stats` is None when the raw dataset has no `users.csv`; the users
    job runs in the interactions pipeline, so its time is in `interactions_seconds`.
    """

    manifest: schema.Manifest
    items_stats: dict
    interactions_stats: dict
    items_seconds: float
    interactions_seconds: float
    users_stats: dict | None = None

    def summary(self) -> str:
        return format_summary(self.manifest, self.items_seconds, self.interactions_seconds)


def _run(pipeline: beam.Pipeline, build: Callable[[beam.Pipeline], None]) -> float:
    start = time.perf_counter()
    with pipeline as p:
        build(p)
    return time.perf_counter() - start


def _read_stats(out_dir: str, name: str) -> dict:
    with fileio.open_file(fileio.join(out_dir, STATS_DIR, f"{name}.json")) as f:
        return json.load(f)


def _items_spec(
    raw_dir: str,
    out_dir: str,
    items_pattern: str,
    sources: dict[str, ModalitySource],
    info: raw.RawDatasetInfo,
    data: config_lib.DataConfig,
) -> ItemsJobSpec:
    return ItemsJobSpec(
        raw_dir=raw_dir,
        out_dir=out_dir,
        items_pattern=items_pattern,
        modalities=sources,
        item_columns=info.item_columns,
        audio_seconds=data.audio_seconds,
        batch_size=data.embed_batch_size,
    )


def _build_interactions_and_users(
    pipeline: beam.Pipeline,
    raw_dir: str,
    out_dir: str,
    data: config_lib.DataConfig,
    info: raw.RawDatasetInfo,
    pseudonymizer: Pseudonymizer | None,
    users: str | None,
) -> None:
    """Adds the interactions job, and the users job when there is a `users` file, to one pipeline."""
    interactions_job.build_interactions_pipeline(
        pipeline,
        interactions_pattern=fileio.join(raw_dir, raw.INTERACTIONS_FILE),
        item_vocab_path=fileio.join(out_dir, "vocab", "item_id.txt"),
        out_dir=out_dir,
        config=data,
        has_timestamps=info.has_timestamps,
        pseudonymizer=pseudonymizer,
    )
    if users:
        users_job.build_users_pipeline(pipeline, users, out_dir, info.user_columns, pseudonymizer)
    else:
        users_job.remove_stale_outputs(out_dir)  # a stale users-*.tfrecord.gz would look like this run's


def preprocess(
    raw_dir: str,
    out_dir: str,
    config: config_lib.Config,
    beam_args: Sequence[str] = (),
    cache_dir: str | None = None,
    items_pattern: str | None = None,
    pseudonym_key_file: str | None = None,
    make_pipeline: PipelineFactory | None = None,
) -> PreprocessResult:
    """Turns a raw dataset into a dataset directory with `manifest.json`.

    Args:
        raw_dir: The raw dataset (local path or URI).
        out_dir: The dataset directory to write.
        config: Resolved config; `config.data` drives splitting and encoders.
        beam_args: Beam pipeline options, e.g. `["--runner=DataflowRunner", ...]`.
        cache_dir: Encoder model cache (a shared URI such as gs://... for remote runners).
        items_pattern: Items file(s) when not `RAW/items.csv`, e.g. `RAW/items-*.parquet`.
        pseudonym_key_file: Key for `data.pseudonymize_users` (else `$TFRS_MM_PSEUDONYM_KEY`).
        make_pipeline: Builds each pipeline (tests pass TestPipeline); default uses `beam_args`.

    Raises:
        ValueError: when the split needs timestamps the dataset lacks, or the config is unusable.
    """
    info = raw.read_info(raw_dir)
    interactions_job.check_split_supported(config.data, info.has_timestamps)
    if config.data.audio_seconds < MIN_AUDIO_SECONDS:
        raise ValueError(f"data.audio_seconds must be at least {MIN_AUDIO_SECONDS} (one musicnn patch)")
    pseudonymizer = load_pseudonymizer(pseudonym_key_file) if config.data.pseudonymize_users else None
    make_pipeline = make_pipeline or (lambda: beam.Pipeline(options=pipeline_options(beam_args)))
    items_pattern = items_pattern or fileio.join(raw_dir, raw.ITEMS_FILE)
    sources, encoder_records = resolve_modalities(raw_dir, items_pattern, info, config.data, cache_dir)
    spec = _items_spec(raw_dir, out_dir, items_pattern, sources, info, config.data)
    logger.info("items job: %s → %s (%s)", raw_dir, out_dir, ", ".join(sorted(sources)))
    items_seconds = _run(make_pipeline(), lambda p: build_items_pipeline(p, spec))
    users = fileio.join(raw_dir, raw.USERS_FILE)
    users = users if fileio.exists(users) else None
    logger.info("interactions job: split=%s%s", config.data.split, ", with users.csv" if users else "")
    interactions_seconds = _run(
        make_pipeline(),
        lambda p: _build_interactions_and_users(p, raw_dir, out_dir, config.data, info, pseudonymizer, users),
    )
    items_stats, interactions_stats = _read_stats(out_dir, "items"), interactions_job.read_stats(out_dir)
    users_stats = users_job.read_stats(out_dir) if users else None
    manifest = build_manifest(
        info, config, raw_dir, out_dir, sources, encoder_records, items_stats, interactions_stats, users_stats
    )
    schema.write_manifest(manifest, out_dir)
    config_lib.save_config(config, out_dir)
    return PreprocessResult(
        manifest, items_stats, interactions_stats, items_seconds, interactions_seconds, users_stats
    )


def run_from_args(
    args, beam_args: Sequence[str], make_pipeline: PipelineFactory | None = None
) -> PreprocessResult:
    """Runs preprocess for parsed `beam_jobs.options` flags."""
    from beam_jobs.options import resolve_preprocess_config

    return preprocess(
        args.raw,
        args.out,
        resolve_preprocess_config(args),
        beam_args=beam_args,
        cache_dir=args.model_cache,
        items_pattern=args.items,
        pseudonym_key_file=args.pseudonym_key_file,
        make_pipeline=make_pipeline,
    )


def run(argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> PreprocessResult:
    """`python -m beam_jobs.preprocess`: unknown flags are Beam pipeline options.

    `test_pipeline`, when given, is used for both jobs' pipelines (a TestPipeline
    can be run more than once).
    """
    import argparse

    from beam_jobs.options import add_preprocess_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_preprocess_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    result = run_from_args(args, beam_args, (lambda: test_pipeline) if test_pipeline is not None else None)
    print(result.summary())
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run()
