"""Ranking benchmarks (issue #5): two-stage quality and ranker latency.

Sub-benchmarks (select with `--only a,b,...`; default: all, in this order):

  sample   the sample catalog (generated, demo preset): retrieval vs retrieval + ranking
           Recall@10 / NDCG@10 on the same top-K candidates, and explanation quality against
           the generator's ground truth (which history item and modality drove each choice).
  ml100k   ml-100k (random 8:1:1, movielens preset, posters + plot text): the same table.
  ml1m     ml-1m (RecBole protocol, movielens preset): the same table; reuses the retrieval run
           of bench_retrieval.py (`runs/ml1m-ours`) when it has one.
  latency  the ranker scoring one list of 100 candidates in-process (the traced serving
           function, warm), p50 / p99 over repeated calls, and batched throughput.

Writes bench/results/ranking.json and bench/results/ranking.md (results of sub-benchmarks not
run this time are kept). Data and runs live under --cache (shared with bench_retrieval.py).

    .venv/bin/python bench/bench_ranking.py --only sample,latency
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import _results  # noqa: E402  (bench/, the script's own directory)

import tfrs_mm  # noqa: E402,F401  (selects tf-keras before anything touches tf.keras)

logger = logging.getLogger("bench_ranking")


def _config(preset: str, overrides: list[str]):
    from tfrs_mm.config import load_config

    return load_config(preset=preset, overrides=overrides)


def _fresh(path: str) -> str:
    if os.path.exists(path):  # BackupAndRestore would resume an old run: start fresh
        shutil.rmtree(path)
    return path


def two_stage_run(name: str, data_dir: str, preset: str, retrieval: list[str], ranking: list[str], args):
    """Trains retrieval (unless reused) then the ranker; returns their settings and metrics."""
    from tfrs_mm.training.ranking import train_and_evaluate_ranking
    from tfrs_mm.training.retrieval import train_and_evaluate

    workdir = os.path.join(args.cache, "runs", f"ranking-{name}")
    reuse = getattr(args, f"{name}_reuse", None)
    out = {"preset": preset, "ranking_overrides": ranking}
    if reuse and os.path.exists(os.path.join(reuse, "towers.json")):
        workdir = reuse
        out["retrieval"] = f"reused {os.path.relpath(reuse, args.cache)}"
        shutil.rmtree(os.path.join(workdir, "ranking"), ignore_errors=True)
    else:
        start = time.perf_counter()
        train_and_evaluate(_config(preset, retrieval), data_dir, _fresh(workdir), verbose=False)
        out["retrieval"] = {"overrides": retrieval, "seconds": round(time.perf_counter() - start, 1)}
    start = time.perf_counter()
    metrics = train_and_evaluate_ranking(_config(preset, ranking), data_dir, workdir, verbose=False)
    out["ranking_seconds"] = round(time.perf_counter() - start, 1)
    out["valid_lists"] = metrics["valid"]
    out["two_stage"] = metrics["two_stage"]
    out["explanations"] = metrics.get("explanations")
    out["lists_per_second"] = metrics["training"]["lists_per_second"]
    for key in ("item_item", "selection_ndcg@10", "best_epoch"):
        out[key] = metrics["training"].get(key)
    out["workdir"] = workdir
    logger.info(
        "%s: %s", name, {k: metrics["two_stage"][k] for k in ("ndcg@10_change", "ndcg@10_relative_change")}
    )
    return out


def bench_sample(args) -> dict:
    from tfrs_mm import cli

    root = os.path.join(args.cache, "sample")
    data_dir = os.path.join(root, "data")
    if not os.path.exists(os.path.join(data_dir, "manifest.json")):
        raw_dir = os.path.join(root, "raw")
        argv = ["generate-sample", "--out", raw_dir, "--items", "600", "--users", "500", "--seed", "11"]
        assert cli.main(argv) == 0
        argv = [
            "preprocess",
            "--raw",
            raw_dir,
            "--out",
            data_dir,
            "--preset",
            "demo",
            "--runner=DirectRunner",
        ]
        assert cli.main(argv) == 0
    retrieval = ["train.epochs=10"]
    ranking = [f"train.epochs={args.sample_epochs}", "train.learning_rate=3e-3"]
    result = two_stage_run("sample", data_dir, "demo", retrieval, ranking, args)
    result["dataset"] = "sample catalog: 600 items, 500 users, seed 11, demo preset"
    return result


def bench_ml100k(args) -> dict:
    from bench_retrieval import prepare

    data_dir = prepare("ml100k", args.cache)
    retrieval = ["train.epochs=10"]
    ranking = [f"train.epochs={args.ml100k_epochs}"]
    result = two_stage_run("ml100k", data_dir, "movielens", retrieval, ranking, args)
    result["dataset"] = "ml-100k, all ratings, random 8:1:1 per user, posters + plot text (movielens preset)"
    return result


def bench_ml1m(args) -> dict:
    from bench_retrieval import prepare

    data_dir = prepare("ml1m", args.cache)
    args.ml1m_reuse = os.path.join(args.cache, "runs", "ml1m-ours")
    ranking = [f"train.epochs={args.ml1m_epochs}"]
    result = two_stage_run("ml1m", data_dir, "movielens", ["train.epochs=10"], ranking, args)
    result["dataset"] = "ml-1m, ratings >= 3, random 8:1:1 per user (RecBole protocol), posters + plot text"
    return result


def bench_latency(args) -> dict:
    """p50/p99 of one 100-candidate list through the traced ranker, and batched lists/s."""
    import tensorflow as tf

    from tfrs_mm.training.ranking import load_ranker

    workdir = os.path.join(args.cache, "runs", "ranking-sample")
    ranker = load_ranker(workdir)
    catalog = ranker.item_tower.catalog_ids
    rng = np.random.default_rng(0)
    spec = [tf.TensorSpec([None], tf.string), *[tf.TensorSpec([None, None], tf.string)] * 2]
    serve = tf.function(lambda u, h, c: ranker(u, h, c)["scores"], input_signature=spec)
    history_length = 10

    def lists(n):
        users = tf.constant([f"u{i:05d}" for i in range(n)])
        history = tf.constant(rng.choice(catalog, size=(n, history_length)))
        return users, history, tf.constant(rng.choice(catalog, size=(n, 100)))

    one = lists(1)
    for _ in range(20):
        serve(*one)
    times = []
    for _ in range(args.latency_calls):
        start = time.perf_counter()
        serve(*one).numpy()
        times.append((time.perf_counter() - start) * 1000)
    batch = lists(64)
    serve(*batch)
    start = time.perf_counter()
    for _ in range(10):
        serve(*batch).numpy()
    batched = 64 * 10 / (time.perf_counter() - start)
    return {
        "setting": f"ranker of runs/ranking-sample, 1 list x 100 candidates, history {history_length}, "
        f"traced tf.function, {args.latency_calls} warm calls; batched: 64 lists per call",
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
        "mean_ms": round(float(np.mean(times)), 2),
        "batched_lists_per_second": round(batched, 1),
    }


BENCHES = {"sample": bench_sample, "ml100k": bench_ml100k, "ml1m": bench_ml1m, "latency": bench_latency}


def _f(x, digits=4):
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(results: dict) -> str:
    lines = [
        "# Ranking benchmarks",
        "",
        "Written by `bench/bench_ranking.py`. Retrieval alone and retrieval + ranking are scored on the "
        "same top-K candidates of the same trained retrieval model, in the same run (full ranking, train "
        "and valid items masked). Single runs on 2 CPU cores.",
        "",
        "| dataset | candidates | retrieval R@10 | +ranking R@10 | retrieval NDCG@10 | +ranking NDCG@10 "
        "| NDCG@10 change | ranker valid AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("sample", "ml100k", "ml1m"):
        r = results.get(name)
        if not r:
            continue
        two, before, after = r["two_stage"], r["two_stage"]["retrieval"], r["two_stage"]["retrieval+ranking"]
        rel = two.get("ndcg@10_relative_change")
        change = (
            f"{two['ndcg@10_change']:+.4f} ({rel:+.1%})"
            if rel is not None
            else f"{two['ndcg@10_change']:+.4f}"
        )
        lines.append(
            f"| {name} | {two['candidates']} | {_f(before['recall@10'])} | {_f(after['recall@10'])} "
            f"| {_f(before['ndcg@10'])} | {_f(after['ndcg@10'])} | {change} | {_f(r['valid_lists']['auc'])} |"
        )
    lines += _selection_lines(results)
    lines += _explanation_lines(results.get("sample"))
    latency = results.get("latency")
    if latency:
        lines += [
            "",
            "## Latency",
            "",
            f"{latency['setting']}: p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms, "
            f"mean {latency['mean_ms']} ms; batched {latency['batched_lists_per_second']} lists/s.",
        ]
    lines += ["", "## Settings", ""]
    for name, r in results.items():
        if name != "latency":
            lines.append(
                f"- **{name}**: {r.get('dataset')}; retrieval {r.get('retrieval')}; ranking "
                f"{r.get('ranking_overrides')} ({r.get('ranking_seconds')} s, "
                f"{r.get('lists_per_second')} lists/s in training)"
            )
    return "\n".join(lines) + "\n"


def _selection_lines(results: dict) -> list[str]:
    rows = [(name, results[name]) for name in ("sample", "ml100k", "ml1m") if results.get(name)]
    rows = [(name, r) for name, r in rows if r.get("selection_ndcg@10")]
    if not rows:
        return []
    lines = [
        "",
        "## Where the change comes from",
        "",
        "NDCG@10 on the valid users kept apart to choose the ranker's epoch (never trained on). Epoch 0 is "
        "the untrained ranker: retrieval's order plus the item-to-item (EASE) evidence, whose ridge λ and "
        "weight γ were fitted on the held-out training lists before training.",
        "",
        "| dataset | retrieval | epoch 0: + item-to-item evidence | kept epoch | λ | γ | items with evidence "
        "|",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        sel, fit = r["selection_ndcg@10"], r.get("item_item") or {}
        lines.append(
            f"| {name} | {_f(sel['retrieval'])} | {_f(sel['epoch_0'])} | {_f(sel['best'])} (epoch "
            f"{r.get('best_epoch')}) | {fit.get('l2', 'n/a')} | {_f(fit.get('weight'), 3)} "
            f"| {fit.get('items', 'n/a')} |"
        )
    return lines


def _explanation_lines(sample: dict | None) -> list[str]:
    e = (sample or {}).get("explanations")
    if not e:
        return []
    return [
        "",
        "## Explanations against the sample catalog's ground truth",
        "",
        "| what | ranker | chance (uniform attention) |",
        "|---|---|---|",
        f"| attention mass on the history item that drove the choice | {_f(e['driver_attention'])} "
        f"| {_f(e['driver_attention_chance'])} |",
        f"| driver item is the most-attended history item | {_f(e['driver_top1'])} "
        f"| {_f(e['driver_top1_chance'])} |",
        f"| weight of the modality that drove the choice | {_f(e['modality_weight'])} "
        f"| {_f(e['modality_weight_chance'])} |",
        f"| driver modality has the largest weight | {_f(e['modality_top1'])} "
        f"| {_f(e['modality_top1_chance'])} |",
        "",
        f"Over {e['examples_with_driver_in_history']} test interactions whose driver item is in the query "
        f"history and {e['examples_with_driver_modality']} whose driver modality is present.",
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma list of {', '.join(BENCHES)}")
    parser.add_argument("--cache", default="/tmp/tfrs_mm_bench")
    parser.add_argument("--sample-epochs", type=int, default=30)
    parser.add_argument("--ml100k-epochs", type=int, default=10)
    parser.add_argument("--ml1m-epochs", type=int, default=8)
    parser.add_argument("--latency-calls", type=int, default=300)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = [] if args.report_only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}")
    for name in names:
        start = time.perf_counter()
        result = BENCHES[name](args)
        result["seconds"] = round(time.perf_counter() - start, 1)
        result["command"] = " ".join(
            ["bench/bench_ranking.py", *(argv if argv is not None else sys.argv[1:])]
        )
        _results.record("ranking", name, result, markdown)
    _results.write_markdown("ranking", _results.load("ranking"), markdown)


if __name__ == "__main__":
    main()
