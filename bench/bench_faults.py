"""Fault, load and bad-input figures (issue #7): one command, one table.

Runs the three scenario suites of `tfrs_mm.faults` (the same functions the
`faults` test tier asserts on) and writes what they measured:

  catalog   a hostile copy of the sample catalog through `tfrs-mm preprocess` (DirectRunner):
            bad inputs tried, dead-lettered with the expected reason, records lost, files read
            outside the catalog root, and input = written + dead-lettered + filtered per stage.
  training  SIGKILL mid-epoch and resume; NaN and inf in every numeric feature.
  serving   schemathesis fuzz, hostile requests and slow clients, then a bounded concurrent
            load with a hot swap and a corrupt version, and server RSS over the requests.

Writes bench/results/faults.json and bench/results/faults.md (suites not run this time keep their
last results).

    .venv/bin/python bench/bench_faults.py                 # all three (make faults-report)
    .venv/bin/python bench/bench_faults.py --only serving --requests 10000 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

import _results  # noqa: E402  (bench/, the script's own directory)

import tfrs_mm  # noqa: E402,F401  (selects tf-keras before anything touches tf.keras)

SUITES = ("catalog", "training", "serving")
LOAD_ROWS = ("hot_swap_under_load", "memory_run")  # requests under load, not bad inputs: counted apart
logger = logging.getLogger("bench_faults")


def run_suite(name: str, work_dir: str, args) -> dict:
    from tfrs_mm import faults

    if name == "catalog":
        return faults.run_catalog_faults(work_dir)
    if name == "training":
        return faults.run_training_faults(work_dir)
    return faults.run_serving_faults(work_dir, requests=args.requests, concurrency=args.concurrency)


def totals(results: dict) -> dict:
    """Sums over every suite's fault rows (tried, survived, records lost), load requests apart."""
    rows = [row for suite in SUITES for row in results.get(suite, {}).get("faults", [])]
    faults = [r for r in rows if r["name"] not in LOAD_ROWS]
    load = [r for r in rows if r["name"] in LOAD_ROWS]
    return {
        "kinds": len(faults),
        "tried": sum(r["tried"] for r in faults),
        "survived": sum(r["survived"] for r in faults),
        "records_lost": sum(r["records_lost"] for r in rows),
        "load_requests": sum(r["tried"] for r in load),
        "load_requests_answered": sum(r["survived"] for r in load),
    }


def _fault_rows(results: dict) -> list[str]:
    lines = ["| suite | fault | tried | survived | records lost | detail |", "|---|---|---:|---:|---:|---|"]
    for suite in SUITES:
        for row in results.get(suite, {}).get("faults", []):
            detail = str(row.get("detail", "")).replace("|", "/").replace("\n", " ")[:160]
            lines.append(
                f"| {suite} | {row['name']} | {row['tried']} | {row['survived']} | {row['records_lost']} "
                f"| {detail} |"
            )
    return lines


def _stage_rows(catalog: dict) -> list[str]:
    lines = ["| stage | input | written | dead-lettered | filtered |", "|---|---:|---:|---:|---:|"]
    for stage, c in catalog.get("stages", {}).items():
        lines.append(f"| {stage} | {c['input']} | {c['written']} | {c['dead_lettered']} | {c['filtered']} |")
    return lines


def markdown(results: dict) -> str:
    total = totals(results)
    lines = [
        "# Fault, load and bad-input figures",
        "",
        "Produced by `make faults-report` (`bench/bench_faults.py`); the `faults` test tier",
        "(`make test-faults`) asserts on the same scenarios. 2 CPU cores, shared machine.",
        "",
        f"**{total['tried']} bad inputs and faults tried over {total['kinds']} kinds; "
        f"{total['survived']} survived; records lost: {total['records_lost']}. Under load: "
        f"{total['load_requests']} requests, {total['load_requests_answered']} answered correctly.**",
        "",
    ]
    load = results.get("serving", {}).get("load")
    if load:
        lines += [
            "## Load held (serving)",
            "",
            "| requests | concurrency | errors | p50 ms | p99 ms | hot swaps | corrupt versions served "
            "| RSS start MiB | RSS end MiB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {load['requests']} | {load['concurrency']} | {load['errors']} | {load['p50_ms']} "
            f"| {load['p99_ms']} | {load['hot_swaps']} | {load['corrupt_versions_served']} "
            f"| {load['rss_start_mb']} | {load['rss_end_mb']} |",
            "",
        ]
    resume = results.get("training", {}).get("resume")
    if resume:
        lines += [
            "## Training killed mid-epoch and resumed",
            "",
            "```",
            json.dumps(resume, indent=1),
            "```",
            "",
        ]
    lines += ["## Faults tried", "", *_fault_rows(results), ""]
    if "catalog" in results:
        lines += ["## Catalog stages (input = written + dead-lettered + filtered)", ""]
        lines += _stage_rows(results["catalog"])
        lines += [
            "",
            f"Files read outside the catalog root: {results['catalog'].get('files_read_outside_root')}.",
        ]
    lines += [
        "",
        "Seconds per suite: " + ", ".join(f"{s} {results[s].get('seconds')}" for s in SUITES if s in results),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma list of {', '.join(SUITES)}")
    parser.add_argument("--requests", type=int, default=10_000, help="serving: requests under load")
    parser.add_argument("--concurrency", type=int, default=8, help="serving: concurrent clients")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if set(names) - set(SUITES):
        parser.error(f"unknown suites {sorted(set(names) - set(SUITES))}")
    for name in names:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"tfrs_mm_faults_{name}_") as work_dir:
            result = run_suite(name, work_dir, args)
        result["seconds"] = round(time.perf_counter() - start, 1)
        logger.info("%s: %s", name, {k: v for k, v in result.items() if k != "faults"})
        _results.record("faults", name, result, markdown)
    results = _results.record("faults", "totals", totals(_results.load("faults")), markdown)
    total = results["totals"]
    held = total["tried"] == total["survived"] and total["load_requests"] == total["load_requests_answered"]
    return 0 if held and total["records_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
