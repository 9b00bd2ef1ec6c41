"""ScaNN against exact brute force (TF and numpy) on clustered vectors (issue #6).

Sub-benchmarks (select with `--only a,b`; default: all, in this order):

  100k   100,000 clustered 64-d unit vectors
  1m     1,000,000 clustered 64-d unit vectors

Each size measures, in the same run, on the same vectors and the same queries:

  numpy exact  q @ V.T + argpartition (`tfrs_mm.indexing.exact_top_k`, the tuner's ground truth)
  TF exact     TFRS `BruteForce` (tf.matmul + tf.math.top_k), traced as the export serves it
  ScaNN        the TFRS ScaNN layer the product exports (`AnisotropicScaNN` via
               `make_index_layer`): params from `choose_params` (with `index.reorder_k` =
               `--reorder-k`, 100 by default: the product's 4k = 40 re-scored candidates cap
               recall@10 near 0.94 on the 1M set), `num_leaves_to_search` tuned by `tune_index`
               to recall@10 >= 0.95 against numpy exact on tuning queries

and reports recall@10 against numpy exact on held-out queries (not the tuning ones),
single-query latency p50 / p99 and QPS (one query per call, back to back), batched QPS
(`--batch` queries per call), ScaNN's build + tuning time (`tune_index`, which also computes its
own exact ground truth and times every setting), and ScaNN's speed-up over each brute force,
single (p50 latency ratio) and batched (QPS ratio), with "met?" against the issue's target:
ScaNN at least 10x faster than the faster brute force at recall@10 >= 0.95 on 1M vectors.

Data: `--clusters` Gaussian centres drawn from N(0, I_64); a vector is a centre plus
`--sigma` * N(0, I_64) noise, unit-normalised (seeded). Queries come from the same mixture and
are never in the indexed set.

Writes bench/results/index.json and bench/results/index.md (sizes not run this time are kept).

    .venv/bin/python bench/bench_index.py --only 100k
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

import _results  # noqa: E402  (bench/, the script's own directory)

import tfrs_mm  # noqa: E402,F401  (selects tf-keras before anything touches tf.keras)

SIZES = {"100k": 100_000, "1m": 1_000_000}
K = 10
RECALL_TARGET = 0.95
SPEEDUP_TARGET = 10.0  # the "ScaNN at least 10x faster than brute force" on 1M
TARGET_SIZE = "1m"
WARMUP_CALLS = 5
MIN_BATCHED_SECONDS, MAX_BATCHED_PASSES = 3.0, 20
# ScaNN's own examples re-score 100 candidates for k=10. The product default (4k = 40) caps
# recall@10 near 0.94 on the 1M set whatever the leaves searched (first run of this bench).
REORDER_K = 100
GENERATE_CHUNK = 100_000  # rows drawn at a time: keeps the float64 noise draw small
logger = logging.getLogger("bench_index")

Search = Callable[[np.ndarray], np.ndarray]  # [B, d] float32 queries -> [B, K] item rows


# ---------------------------------------------------------------------------- data


def clustered(rng: np.random.Generator, centers: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """[n, d] float32 unit vectors: a random centre each, plus `sigma` Gaussian noise."""
    parts = []
    for start in range(0, n, GENERATE_CHUNK):
        m = min(GENERATE_CHUNK, n - start)
        x = centers[rng.integers(0, len(centers), m)] + sigma * rng.normal(size=(m, centers.shape[1]))
        parts.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return np.concatenate(parts)


def make_data(n: int, args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors [n, d], tuning queries, held-out queries), all from one seeded mixture."""
    centers = np.random.default_rng(args.seed).normal(size=(args.clusters, args.dim))
    vectors_rng, tune_rng, eval_rng = np.random.default_rng(args.seed + 1).spawn(3)
    return (
        clustered(vectors_rng, centers, n, args.sigma),
        clustered(tune_rng, centers, args.tune_queries, args.sigma),
        clustered(eval_rng, centers, args.eval_queries, args.sigma),
    )


# ---------------------------------------------------------------------------- timing


def time_single(search: Search, queries: np.ndarray, count: int) -> dict:
    """Back-to-back one-query calls: p50 / p99 latency (ms) and queries per second."""
    for row in queries[:WARMUP_CALLS]:
        search(row[None, :])
    times = []
    for row in queries[:count]:
        start = time.perf_counter()
        search(row[None, :])
        times.append(time.perf_counter() - start)
    return {
        "single_p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
        "single_p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3),
        "single_qps": round(len(times) / sum(times), 1),
        "single_queries": len(times),
    }


def run_batched(search: Search, queries: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([search(queries[i : i + batch]) for i in range(0, len(queries), batch)])


def time_batched(search: Search, queries: np.ndarray, batch: int) -> tuple[dict, np.ndarray]:
    """Batched queries per second (best pass over `queries`) and the results [Q, K].

    At least two passes, more while they took under `MIN_BATCHED_SECONDS` in all: a fast method's
    pass lasts a fraction of a second, which one stall from another job would dominate.
    """
    search(queries[:batch])  # traces the full-batch shape before anything is timed
    passes, found = [], None
    while len(passes) < 2 or (sum(passes) < MIN_BATCHED_SECONDS and len(passes) < MAX_BATCHED_PASSES):
        start = time.perf_counter()
        found = run_batched(search, queries, batch)
        passes.append(time.perf_counter() - start)
    qps = round(len(queries) / min(passes), 1)
    return {"batched_qps": qps, "batch_size": batch, "batched_passes": len(passes)}, found


def measure(name: str, search: Search, queries: np.ndarray, truth: np.ndarray, args) -> dict:
    """Recall@K against `truth` and the latency / throughput of one method."""
    from tfrs_mm.indexing import recall_at_k

    logger.info("%s: timing", name)
    batched, found = time_batched(search, queries, args.batch)
    result = {**time_single(search, queries, args.single), **batched}
    result["recall_at_10"] = round(recall_at_k(found, truth), 4)
    logger.info("%s: %s", name, result)
    return result


def traced(layer, dim: int) -> Search:
    """A TFRS top-k layer as the export serves it: one traced graph, rows out."""
    from tfrs_mm.indexing.tuner import search_function

    function = search_function(layer, dim)
    return lambda q: function(q).numpy()


# ---------------------------------------------------------------------------- one size


def bench_size(name: str, args) -> dict:
    """numpy exact, TF exact and tuned ScaNN over `SIZES[name]` clustered vectors."""
    from tfrs_mm.config import IndexConfig
    from tfrs_mm.indexing import IndexParams, choose_params, exact_top_k, make_index_layer, tune_index

    n = SIZES[name]
    start = time.perf_counter()
    vectors, tune_queries, eval_queries = make_data(n, args)
    logger.info("%s: %d vectors in %.1fs", name, n, time.perf_counter() - start)
    truth = exact_top_k(eval_queries, vectors, K)
    methods = {
        "numpy_exact": measure("numpy exact", lambda q: exact_top_k(q, vectors, K), eval_queries, truth, args)
    }
    brute_force = make_index_layer(IndexParams(exact=True, k=K), vectors)
    methods["tf_exact"] = measure("TF exact", traced(brute_force, args.dim), eval_queries, truth, args)
    del brute_force

    config = IndexConfig(
        k=K,
        recall_target=args.recall_target,
        exact_below=0,
        reorder_k=args.reorder_k,
        tune_queries=args.tune_queries,
    )
    params = choose_params(n, config)
    start = time.perf_counter()
    tuned = tune_index(vectors, params, tune_queries, config.recall_target)
    tune_seconds = time.perf_counter() - start
    logger.info("%s: tuned %s in %.0fs, recall %.4f", name, tuned.params, tune_seconds, tuned.recall)
    scann = measure("ScaNN", traced(tuned.index, args.dim), eval_queries, truth, args)
    methods["scann"] = {
        **scann,
        "build_and_tuning_seconds": round(tune_seconds, 1),
        "tuning_recall_at_10": round(tuned.recall, 4),
        "params": tuned.params.to_dict(),
        "tuning_curve": [(p.num_leaves_to_search, round(p.recall, 4)) for p in tuned.curve],
    }
    return {
        "n": n,
        "dim": args.dim,
        "methods": methods,
        "speedup": speedups(methods),
        "target": target_check(name, methods, args.recall_target),
    }


def speed(method: dict, mode: str) -> float:
    """Queries per second for the speed-ups: single from the p50 latency, batched from the best pass.

    The single-query mean is dominated by stalls when other jobs share the cores; the median is not.
    """
    return 1e3 / method["single_p50_ms"] if mode == "single" else method["batched_qps"]


def speedups(methods: dict) -> dict:
    """ScaNN's speed over each brute force's, single (p50 latency ratio) and batched (QPS ratio)."""
    scann = methods["scann"]
    return {
        f"{mode}_vs_{exact}": round(speed(scann, mode) / speed(methods[exact], mode), 1)
        for mode in ("single", "batched")
        for exact in ("tf_exact", "numpy_exact")
    }


def target_check(name: str, methods: dict, recall_target: float) -> dict:
    """The issue's target per mode: >= 10x over the faster brute force at held-out recall >= target."""
    scann = methods["scann"]
    check = {"applies": name == TARGET_SIZE, "recall_met": scann["recall_at_10"] >= recall_target}
    for mode in ("single", "batched"):
        fastest = max(speed(methods["tf_exact"], mode), speed(methods["numpy_exact"], mode))
        speedup = speed(scann, mode) / fastest
        check[f"{mode}_speedup_vs_fastest_exact"] = round(speedup, 1)
        check[f"{mode}_met"] = bool(check["recall_met"] and speedup >= SPEEDUP_TARGET)
    return check


# ---------------------------------------------------------------------------- report


def markdown(results: dict) -> str:
    lines = [
        "# Index benchmark: ScaNN vs exact brute force",
        "",
        "Written by `bench/bench_index.py`. Each size's three methods ran in the same process on the same "
        "vectors and queries; recall@10 is against numpy exact search on held-out queries (ScaNN was tuned "
        "on a separate set). Single-query QPS is back-to-back one-query calls; batched QPS uses the batch "
        "size shown. Single runs on 2 CPU cores shared with other jobs: compare within a row group, not "
        "across runs. ScaNN re-scores `reorder_k` candidates (see Settings): the product default, 4k = 40, "
        "caps recall@10 near 0.94 on the 1M set however many leaves are searched, so the bench sets "
        "`index.reorder_k` (`--reorder-k`, 100 by default, as in ScaNN's own examples for k = 10).",
        "",
        "| vectors | method | recall@10 | single p50 ms | single p99 ms | single QPS | batched QPS | "
        "build + tuning s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {"numpy_exact": "numpy exact", "tf_exact": "TF exact (TFRS BruteForce)", "scann": "ScaNN (TFRS)"}
    sizes = [s for s in SIZES if s in results]
    for size in sizes:
        r = results[size]
        for key, label in labels.items():
            m = r["methods"][key]
            build = m.get("build_and_tuning_seconds", "")
            lines.append(
                f"| {r['n']:,} | {label} | {m['recall_at_10']:.4f} | {m['single_p50_ms']:.2f} | "
                f"{m['single_p99_ms']:.2f} | {m['single_qps']:,.0f} | {m['batched_qps']:,.0f} "
                f"(B={m['batch_size']}) | {build} |"
            )
    lines += [
        "",
        "Speed-up of ScaNN: single = ratio of p50 latencies (the mean QPS above includes stalls from "
        "other jobs on the shared cores), batched = ratio of batched QPS. Target: ScaNN >= "
        f"{SPEEDUP_TARGET:g}x faster than brute force at recall@10 >= {RECALL_TARGET} on 1M vectors, "
        "checked against the faster of the two brute forces and the held-out recall.",
        "",
        "| vectors | mode | vs TF exact | vs numpy exact | ScaNN recall@10 | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        r = results[size]
        t, recall = r["target"], r["methods"]["scann"]["recall_at_10"]
        for mode in ("single", "batched"):
            wanted = r["settings"]["recall_target"]
            target = f">= {SPEEDUP_TARGET:g}x, recall >= {wanted}" if t["applies"] else ""
            met = ("yes" if t[f"{mode}_met"] else "no") if t["applies"] else ""
            lines.append(
                f"| {r['n']:,} | {mode} | {r['speedup'][f'{mode}_vs_tf_exact']:.1f}x | "
                f"{r['speedup'][f'{mode}_vs_numpy_exact']:.1f}x | {recall:.4f} | {target} | {met} |"
            )
    lines += ["", "## Settings", ""]
    for size in sizes:
        r, s = results[size], results[size]["methods"]["scann"]
        p = s["params"]
        curve = ", ".join(f"{leaves}: {recall}" for leaves, recall in s["tuning_curve"])
        lines += [
            f"- **{size}** ({r['n']:,} x {r['dim']}): ScaNN num_leaves={p['num_leaves']}, "
            f"num_leaves_to_search={p['num_leaves_to_search']} (tuned), reorder_k={p['reorder_k']}, "
            f"dimensions_per_block={p['dimensions_per_block']}, anisotropic threshold="
            f"{p['anisotropic_quantization_threshold']}; recall@10 on the tuning queries "
            f"{s['tuning_recall_at_10']}",
            f"  - tuning sweep (leaves searched: recall@10): {curve}",
            f"  - settings: {json.dumps(r['settings'], sort_keys=True)}",
            f"  - command: `{r['command']}`; wall time {r['seconds']} s",
        ]
    lines.append("")
    return "\n".join(lines)


def settings(args) -> dict:
    from importlib import metadata

    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    return {
        "k": K,
        "recall_target": args.recall_target,
        "reorder_k": args.reorder_k,
        "clusters": args.clusters,
        "sigma": args.sigma,
        "dim": args.dim,
        "seed": args.seed,
        "tune_queries": args.tune_queries,
        "eval_queries": args.eval_queries,
        "single_queries": args.single,
        "batch": args.batch,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tensorflow_recommenders": tfrs.__version__,
        "scann": metadata.version("scann"),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SIZES), help=f"comma list of {', '.join(SIZES)}")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument(
        "--sigma", type=float, default=1.0, help="noise scale relative to the centres' spread"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recall-target", type=float, default=RECALL_TARGET)
    parser.add_argument(
        "--reorder-k", type=int, default=REORDER_K, help="index.reorder_k (0: the product default, 4k)"
    )
    parser.add_argument(
        "--tune-queries", type=int, default=1_000, help="queries the tuner measures recall on"
    )
    parser.add_argument("--eval-queries", type=int, default=1_000, help="held-out queries for the table")
    parser.add_argument("--single", type=int, default=200, help="one-query calls timed per method")
    parser.add_argument("--batch", type=int, default=256, help="queries per batched call")
    parser.add_argument("--report-only", action="store_true", help="rewrite index.md from index.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.report_only:
        _results.write_markdown("index", _results.load("index"), markdown)
        return
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(SIZES)
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}")
    command = " ".join(
        [
            os.path.relpath(sys.executable, REPO),
            "bench/bench_index.py",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    for name in names:
        start = time.perf_counter()
        result = {"settings": settings(args), **bench_size(name, args)}
        result["seconds"] = round(time.perf_counter() - start, 1)
        result["command"] = command
        _results.record("index", name, result, markdown)
        logger.info("%s done in %.0fs", name, result["seconds"])


if __name__ == "__main__":
    main()
