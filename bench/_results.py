"""The bench scripts' results files, `bench/results/<name>.{json,md}`, kept across partial runs.

Each script runs some of its sub-benchmarks; `record` re-reads the JSON first,
so the results of sub-benchmarks not run this time (or written meanwhile by
another run) are kept, then rewrites both files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def load(name: str) -> dict:
    """`<name>.json`, or {} before the first run."""
    path = os.path.join(RESULTS, f"{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def write_markdown(name: str, results: dict, markdown: Callable[[dict], str]) -> None:
    """`<name>.md` from `markdown(results)`."""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(markdown(results))


def record(name: str, key: str, result: dict, markdown: Callable[[dict], str]) -> dict:
    """Sets `key` in the re-read `<name>.json` to `result`, writes both files; returns all results."""
    results = load(name)
    results[key] = result
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    write_markdown(name, results, markdown)
    return results
