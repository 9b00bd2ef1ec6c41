"""`tfrs-mm demo`: the whole pipeline on a generated sample catalog.

Generate the sample catalog, validate and summarise it, run the Beam
preprocessing jobs (pretrained encoders, split, manifest) on it, train and
evaluate the two-tower retrieval model, train the cross-attention ranker on its
candidates and show three test users' recommendations with the ranker's
explanations; then index the catalog, export the SavedModels in TF Serving's
layout, serve them with the local TF-Serving-compatible REST server and ask it,
over HTTP, for the same users' recommendations (`tfrs_mm.demo_serving`).
"""

from __future__ import annotations

import csv
import os
from collections import Counter

import numpy as np

from tfrs_mm import config as config_lib
from tfrs_mm import explain
from tfrs_mm.data import raw
from tfrs_mm.data.synthetic import SAMPLE_NAME, SampleSpec, generate_sample
from tfrs_mm.data.validate import validate_raw
from tfrs_mm.demo_serving import build_index_step, export_step, indent, serve_and_query_step

DEMO_SPEC = SampleSpec(num_items=400, num_users=300, seed=0)  # small enough for minutes end to end
DEMO_USERS = 3  # test users whose recommendations are shown with explanations
STEPS = 10


def run_demo(out: str, spec: SampleSpec = DEMO_SPEC) -> int:
    """Runs every stage into `out` and prints what each produced; returns an exit status."""
    data_dir = prepare_data(out, spec)
    if data_dir is None:
        return 1
    config = config_lib.load_config(preset="demo")
    workdir = os.path.join(out, "work", "retrieval")
    train_retrieval(config, data_dir, workdir)
    train_ranker(config, data_dir, workdir)
    users, titles = show_recommendations(data_dir, workdir)
    index_dir = build_index_step(_step(8), data_dir, workdir)
    summary = export_step(_step(9), data_dir, workdir, os.path.join(out, "saved_models"), index_dir)
    serve_and_query_step(_step(10), summary, users, titles)
    return 0


def prepare_data(out: str, spec: SampleSpec = DEMO_SPEC) -> str | None:
    """Steps 1-4: generate, validate, summarise, preprocess; returns the dataset dir, None if invalid."""
    raw_dir = os.path.join(out, "raw")
    overwrite = os.path.isdir(raw_dir) and raw.read_info(raw_dir).name == SAMPLE_NAME
    print(f"{_step(1)} generate-sample --out {raw_dir} --items {spec.num_items} --users {spec.num_users}")
    info = generate_sample(raw_dir, spec, overwrite=overwrite)
    print(f"      {info.notes[-1]}")

    print(f"{_step(2)} validate {raw_dir}")
    report = validate_raw(raw_dir)
    print(indent(report.summary()))
    if not report.ok:
        for problem in report.errors:
            print(f"      {problem}")
        return None

    print(f"{_step(3)} sample catalog summary")
    print(catalog_summary(raw_dir))

    data_dir = os.path.join(out, "data")
    config = config_lib.load_config(preset="demo")
    print(f"{_step(4)} preprocess --raw {raw_dir} --out {data_dir} --preset demo --runner=DirectRunner")
    from beam_jobs.preprocess import preprocess

    result = preprocess(raw_dir, data_dir, config, beam_args=["--runner=DirectRunner"])
    print(indent(result.summary()))
    print(f"      manifest: {os.path.join(data_dir, 'manifest.json')}")
    return data_dir


def _step(number: int) -> str:
    return f"[{number}/{STEPS}]"


def train_retrieval(config: config_lib.Config, data_dir: str, workdir: str) -> None:
    """Step 5: trains and evaluates the two-tower model into `workdir`, printing its metrics."""
    print(f"{_step(5)} train retrieval --data {data_dir} --workdir {workdir} --preset demo")
    from tfrs_mm.cli import format_metrics
    from tfrs_mm.training.retrieval import train_and_evaluate

    metrics = train_and_evaluate(config, data_dir, workdir, verbose=False)
    losses = ", ".join(f"{v:.1f}" for v in metrics["training"]["history"]["loss"])
    print(
        f"      train loss by epoch: {losses} ({metrics['training']['examples_per_second']:.0f} examples/s)"
    )
    print(indent(format_metrics(metrics)))
    print(f"      metrics: {workdir}/metrics.json")


def train_ranker(config: config_lib.Config, data_dir: str, workdir: str) -> None:
    """Step 6: trains the ranker on `workdir`'s retrieval model, printing both stages' metrics."""
    print(f"{_step(6)} train ranking --data {data_dir} --workdir {workdir} --preset demo")
    from tfrs_mm.cli import format_ranking
    from tfrs_mm.training.ranking import ranking_workdir, train_and_evaluate_ranking

    metrics = train_and_evaluate_ranking(config, data_dir, workdir, verbose=False)
    losses = ", ".join(f"{v:.1f}" for v in metrics["training"]["history"]["loss"])
    print(f"      train loss by epoch: {losses}")
    print(indent(format_ranking(metrics)))
    print(f"      metrics: {ranking_workdir(workdir)}/metrics.json")


def show_recommendations(
    data_dir: str, workdir: str, num_users: int = DEMO_USERS
) -> tuple[list[explain.UserContext], dict[str, str]]:
    """Step 7: reranked top-5 lists with explanations for the first test users that have a history.

    Returns:
        Those users and the catalog's titles, for the served recommendations of step 10.
    """
    print(f"{_step(7)} recommendations with explanations for {num_users} test users")
    from tfrs_mm.training.ranking import load_ranker
    from tfrs_mm.training.warm_start import load_towers_model

    retrieval, ranker = load_towers_model(workdir), load_ranker(workdir)
    catalog = list(retrieval.item_tower.catalog_ids)
    titles = explain.item_titles(data_dir)
    vectors = explain.catalog_vectors(retrieval, catalog)
    users = [u for u in explain.evaluation_users(data_dir, catalog) if u.history][:num_users]
    for user in users:
        recent = ", ".join(titles.get(item, item) for item in user.history[-3:])
        print(f"      user {user.user_id}: {len(user.history)} items in history, latest {recent}")
        recs = explain.recommend(
            retrieval,
            ranker,
            catalog,
            user.user_id,
            user.history,
            k=5,
            exclude=user.seen,
            item_vectors=vectors,
        )
        print(indent(explain.format_recommendations(recs, titles), 8))
    return users, titles


def catalog_summary(raw_dir: str) -> str:
    """Genres, modality coverage, activity and ratings of a raw dataset, as text."""
    items = _read(raw_dir, raw.ITEMS_FILE)
    interactions = _read(raw_dir, raw.INTERACTIONS_FILE)
    per_user = np.array(list(Counter(r["user_id"] for r in interactions).values()))
    per_item = Counter(r["item_id"] for r in interactions)
    genres = Counter(g for r in items for g in r.get("categories", "").split(raw.CATEGORY_SEPARATOR) if g)
    ratings = Counter(r["rating"] for r in interactions if r.get("rating"))
    lines = [
        "  genres       " + ", ".join(f"{g} {n}" for g, n in genres.most_common()),
        f"  per user     interactions min {per_user.min()}, median {int(np.median(per_user))}, "
        f"max {per_user.max()}",
        f"  popularity   top item {per_item.most_common(1)[0][1]} interactions; "
        f"{sum(1 for r in items if r['item_id'] not in per_item)} items have none (cold)",
        "  ratings      " + ", ".join(f"{k}: {ratings[k]}" for k in sorted(ratings)),
        "  examples",
    ]
    for row in items[:3]:
        media = ", ".join(row[m] for m in raw.MEDIA_COLUMNS if row.get(m)) or "no media"
        lines.append(f"    {row['item_id']}  {row['title']!r} [{row['categories']}] ({media})")
    return "\n".join(lines)


def _read(raw_dir: str, name: str) -> list[dict[str, str]]:
    with open(os.path.join(raw_dir, name), encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
