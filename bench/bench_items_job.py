"""Items job throughput against calling the same encoders directly in a batched loop.

    python bench/bench_items_job.py [--items 2000] [--out bench/results] [-- BEAM_ARGS...]

Both runs start from the same raw sample catalog and the same exported
encoders (cache warmed first, so neither pays for the export), read and decode
the same media, and include loading the models. The baseline does exactly the
model work with no Beam: batches of `--batch-size` per modality. The ratio
beam / direct items per second says what Beam costs (target >= 0.8).
Writes `items_job.json` and `items_job.md` into `--out`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time

import tfrs_mm  # noqa: F401  (selects tf-keras before TensorFlow is used)


def direct_embed(raw_dir: str, sources: dict, batch_size: int, audio_seconds: float) -> int:
    """Reads, decodes and embeds every item's media in batches; returns the number of items."""
    import numpy as np
    import tensorflow as tf

    from beam_jobs.item_media import TARGET_RATE, decode_audio, fit_length, resample
    from beam_jobs.item_records import normalize_text
    from tfrs_mm.encoders import register_text_ops

    register_text_ops(required=True)
    with open(os.path.join(raw_dir, "items.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    inputs = {
        "text": [
            ". ".join(t for t in (normalize_text(r["title"]), normalize_text(r["description"])) if t)
            for r in rows
        ],
        "image": [_read_bytes(os.path.join(raw_dir, r["image"])) for r in rows if r["image"]],
        "audio": [],
    }
    for r in rows:
        if r["audio"]:
            waveform, rate = decode_audio(_read_bytes(os.path.join(raw_dir, r["audio"])))
            inputs["audio"].append(
                fit_length(resample(waveform, rate, TARGET_RATE), int(audio_seconds * TARGET_RATE))
            )
    for modality, (path, _) in sources.items():
        model = tf.saved_model.load(path)
        values = inputs[modality]
        for start in range(0, len(values), batch_size):
            batch = values[start : start + batch_size]
            batch = np.stack(batch) if modality == "audio" else tf.constant(batch)
            model(batch).numpy()
    return len(rows)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def beam_embed(
    raw_dir: str, out_dir: str, sources: dict, batch_size: int, audio_seconds: float, beam_args
) -> int:
    import apache_beam as beam

    from beam_jobs.items import ItemsJobSpec, ModalitySource, build_items_pipeline
    from beam_jobs.preprocess import pipeline_options

    spec = ItemsJobSpec(
        raw_dir=raw_dir,
        out_dir=out_dir,
        items_pattern=os.path.join(raw_dir, "items.csv"),
        modalities={m: ModalitySource(dim=d, model_path=p) for m, (p, d) in sources.items()},
        audio_seconds=audio_seconds,
        batch_size=batch_size,
    )
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        build_items_pipeline(p, spec)
    with open(os.path.join(out_dir, "stats", "items.json")) as f:
        return json.load(f)["written"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--work", default="build/bench/items_job")
    parser.add_argument("--out", default="bench/results")
    args, beam_args = parser.parse_known_args(argv)

    from tfrs_mm.data.synthetic import SampleSpec, generate_sample
    from tfrs_mm.encoders import resolve_encoder

    raw_dir = os.path.join(args.work, "raw")
    generate_sample(raw_dir, SampleSpec(num_items=args.items, num_users=args.users, seed=0), overwrite=True)
    handles = {
        "text": "bundled://all-minilm-l6-v2",
        "image": "bundled://efficientnet-lite0",
        "audio": "bundled://musicnn",
    }
    sources = {}
    for modality, handle in handles.items():
        path, info = resolve_encoder(handle, modality)
        sources[modality] = (path, info.dim)

    start = time.perf_counter()
    direct_items = direct_embed(raw_dir, sources, args.batch_size, 3.0)
    direct_seconds = time.perf_counter() - start
    start = time.perf_counter()
    beam_items = beam_embed(
        raw_dir, os.path.join(args.work, "data"), sources, args.batch_size, 3.0, beam_args
    )
    beam_seconds = time.perf_counter() - start

    result = {
        "items": args.items,
        "batch_size": args.batch_size,
        "beam_args": beam_args or ["--runner=DirectRunner"],
        "direct": {
            "items": direct_items,
            "seconds": round(direct_seconds, 2),
            "items_per_second": round(direct_items / direct_seconds, 2),
        },
        "beam": {
            "items": beam_items,
            "seconds": round(beam_seconds, 2),
            "items_per_second": round(beam_items / beam_seconds, 2),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }
    result["ratio"] = round(result["beam"]["items_per_second"] / result["direct"]["items_per_second"], 3)
    result["target_ratio"] = 0.8
    result["meets_target"] = result["ratio"] >= 0.8
    _write(args.out, result)
    return result


def _write(out: str, result: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "items_job.json"), "w") as f:
        json.dump(result, f, indent=2)
    d, b = result["direct"], result["beam"]
    lines = [
        f"# Items job throughput ({result['items']} sample items, text + image + audio)",
        "",
        "| run | items | seconds | items/s |",
        "|---|---|---|---|",
        f"| direct batched encoder calls | {d['items']} | {d['seconds']} | {d['items_per_second']} |",
        f"| Beam items job ({' '.join(result['beam_args'])}) | {b['items']} | {b['seconds']} "
        f"| {b['items_per_second']} |",
        "",
        f"Ratio Beam / direct: **{result['ratio']}** (target >= {result['target_ratio']}: "
        f"{'met' if result['meets_target'] else 'not met'}). Machine: {result['machine']['cpus']} CPUs.",
    ]
    with open(os.path.join(out, "items_job.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
