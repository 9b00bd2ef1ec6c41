"""Beam, hostile catalog: `tfrs-mm preprocess` on a corrupted catalog, with figures.

`run_catalog_faults` writes the hostile catalog (`tfrs_mm.data.hostile`),
runs `tfrs-mm validate`'s checks and the preprocess jobs on it in-process on
the DirectRunner under an audit hook that records every file Python opens,
then checks each bad input's fate (dead-lettered with its expected reason,
written, or lost), the stage counts (input = written + dead-lettered +
filtered) and that no file outside the catalog root was opened.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import threading
from collections import defaultdict
from typing import ClassVar

from tfrs_mm.data import raw
from tfrs_mm.data.hostile import CatalogFault, write_hostile_catalog


class OpenAudit:
    """Records every path Python opens (`open` audit events) that resolves under a watched path.

    Audit hooks cannot be removed, so one hook is installed per process and
    feeds whichever audits are active. The DirectRunner runs in this process,
    so its reads (Beam filesystems use `io.open`) all pass through it.
    """

    active: ClassVar[list[OpenAudit]] = []
    installed = False
    guard = threading.local()

    def __init__(self, watched, root: str):
        self.watched = tuple(watched)
        self.root = root
        self.opened: list[str] = []  # opens of watched paths: must stay empty
        self.inside: set[str] = set()  # files opened under the root: shows the hook saw the reads

    def __enter__(self) -> OpenAudit:
        if not OpenAudit.installed:
            sys.addaudithook(_audit_hook)
            OpenAudit.installed = True
        OpenAudit.active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        OpenAudit.active.remove(self)

    def note(self, real: str) -> None:
        if any(real == w or real.startswith(w + os.sep) for w in self.watched):
            self.opened.append(real)
        elif real.startswith(self.root + os.sep):
            self.inside.add(real)


def _audit_hook(event: str, args: tuple) -> None:
    if event != "open" or not OpenAudit.active or getattr(OpenAudit.guard, "busy", False):
        return
    path = args[0] if args else None
    if not isinstance(path, (str, bytes, os.PathLike)):
        return  # an already-open file descriptor
    OpenAudit.guard.busy = True
    try:
        real = os.path.realpath(os.fsdecode(path))  # follows symlinks: a link out counts as outside
        for audit in list(OpenAudit.active):
            audit.note(real)
    except Exception:  # an exception here would fail the audited open itself
        pass
    finally:
        OpenAudit.guard.busy = False


def _preprocess(root: str, data_dir: str, encoder_cache: str | None) -> str:
    """Runs preprocess as `tfrs-mm preprocess` does, in-process; returns "" or what stopped it."""
    from beam_jobs.preprocess import run_from_args
    from tfrs_mm import cli

    argv = ["preprocess", "--raw", root, "--out", data_dir, "--preset", "demo", "--runner=DirectRunner"]
    argv += ["--model-cache", encoder_cache] if encoder_cache else []
    args, beam_args = cli.build_parser().parse_known_args(argv)
    try:
        print(run_from_args(args, beam_args).summary())
    except Exception as e:  # a crash is the finding: report it as a figure
        return f"{type(e).__name__}: {e}"[:2000]
    return ""


def _dead_letters(data_dir: str) -> tuple[dict, dict]:
    """Dead letters as "stage: reason" lists by (file name, line) and by (stage, item id)."""
    rows, media = defaultdict(list), defaultdict(list)
    for path in sorted(glob.glob(os.path.join(data_dir, "dead_letter", "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for letter in (json.loads(line) for line in f if line.strip()):
                reason = f"{letter['stage']}: {letter['reason']}"
                rows[os.path.basename(letter["file"]), letter["line"]].append(reason)
                if isinstance(letter["row"], dict) and "item_id" in letter["row"]:
                    media[letter["stage"], letter["row"]["item_id"]].append(reason)
    return rows, media


def _examples(data_dir: str, prefix: str):
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(data_dir, f"{prefix}-*.tfrecord.gz")))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP") if files else ():
        example = tf.train.Example.FromString(record.numpy())
        values = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            got = list(getattr(feature, kind).value) if kind else []
            values[name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in got]
        yield values


def _written_keys(data_dir: str) -> set[str]:
    """What the jobs wrote, as the `CatalogFault.key`s a bad input would have if it got through."""
    keys = set()
    for x in _examples(data_dir, "items"):
        item = x["item_id"][0]
        keys |= {f"item\t{item}", f"item\t{item}\t{x['title'][0]}"}
        keys |= {f"media\t{item}\t{m}" for m in raw.MODALITIES if x.get(f"{m}_present", [0])[0]}
    for split in ("train", "valid", "test"):
        for x in _examples(data_dir, split):
            keys.add(f"interaction\t{x['user_id'][0]}\t{x['item_id'][0]}\t{x['timestamp'][0]}")
    for x in _examples(data_dir, "users"):
        keys.add(f"user\t{x['user_id'][0]}\t{x.get('user.age', [0.0])[0]:g}")
    return keys


def _outcome(fault: CatalogFault, letters: tuple[dict, dict], written: set[str], finished: bool) -> dict:
    rows, media = letters
    got = media[fault.stage, fault.item_id] if fault.item_id else rows[fault.file, fault.line]
    expected = f"{fault.stage}: {fault.reason}"
    fate = "dead-lettered" if got else "written" if fault.key in written else "lost"
    return {
        "name": fault.name,
        "group": fault.group,
        "where": f"{fault.file}:{fault.line}" if fault.line else f"{fault.item_id} {fault.file!r}",
        "expected": expected,
        "got": got,
        "fate": fate,
        "survived": finished and expected in got,
    }


def _group(outcomes: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for o in outcomes:
        groups[o["group"]].append(o)
    figures = []
    for name, members in groups.items():
        failed = [
            f"{o['name']} ({o['where']}): expected {o['expected']!r}, {o['fate']} {o['got']}"
            for o in members
            if not o["survived"]
        ]
        reasons = sorted({o["expected"] for o in members})
        figures.append(
            {
                "name": name,
                "tried": len(members),
                "survived": sum(o["survived"] for o in members),
                "records_lost": sum(o["fate"] == "lost" for o in members),
                "detail": "; ".join(failed) or f"all dead-lettered as {', '.join(reasons)}",
            }
        )
    return figures


def _stages(data_dir: str) -> dict[str, dict[str, int]]:
    path = os.path.join(data_dir, "manifest.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        counts = json.load(f)["stage_counts"]
    fields = ("input", "written", "dead_lettered", "filtered")
    return {c["stage"]: {k: int(c.get(k, 0)) for k in fields} for c in counts}


def run_catalog_faults(work_dir: str, encoder_cache: str | None = None) -> dict:
    """Builds the hostile catalog in `work_dir`, runs `tfrs-mm preprocess` on it and returns figures.

    Args:
        work_dir: Scratch directory (see the module docstring for its layout).
        encoder_cache: Encoder model cache (default `$TFRS_MM_CACHE` or `~/.cache/tfrs_mm`).

    Returns:
        `faults`: per corruption, {name, tried, survived (dead-lettered with the expected
        reason by a job that finished), records_lost (neither written, dead-lettered nor
        filtered), detail}; `stages`: {stage: {input, written, dead_lettered, filtered}}
        from the manifest; `files_read_outside_root`: opens of watched paths during the run;
        also `finished`, `error`, `records_lost` (over all stages), `opened_outside_root`,
        `files_read_inside_root` (distinct files the audit saw opened under the root: proof
        it was listening), `inputs` (every bad input's fate) and `validate_errors`.
    """
    from tfrs_mm.data.validate import validate_raw

    catalog = write_hostile_catalog(work_dir)
    data_dir = os.path.join(os.path.realpath(work_dir), "data")
    shutil.rmtree(data_dir, ignore_errors=True)  # an earlier run's dead letters would blur this one's
    with OpenAudit(catalog.watched, catalog.root) as audit:
        report = validate_raw(catalog.root)  # the other reader of raw catalogs
        error = _preprocess(catalog.root, data_dir, encoder_cache)
    letters, written = _dead_letters(data_dir), _written_keys(data_dir) if not error else set()
    outcomes = [_outcome(f, letters, written, not error) for f in catalog.faults]
    stages = _stages(data_dir) if not error else {}
    return {
        "faults": _group(outcomes),
        "stages": stages,
        "files_read_outside_root": len(audit.opened),
        "finished": not error,
        "error": error,
        "records_lost": sum(
            s["input"] - s["written"] - s["dead_lettered"] - s["filtered"] for s in stages.values()
        ),
        "opened_outside_root": sorted(set(audit.opened)),
        "files_read_inside_root": len(audit.inside),
        "inputs": outcomes,
        "validate_errors": len(report.errors),
    }
