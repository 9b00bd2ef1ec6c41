"""The local cache of exported encoder SavedModels.

Layout: `<cache>/<name>/<version>-<digest>/` holding a SavedModel and an
`encoder.json` describing it; `<digest>` hashes everything that changes the
export (weights hash, options such as the image size, export format). Entries
are written into a temporary sibling and renamed into place, so a reader sees
a complete entry or none, and concurrent exporters (several Beam workers on
one machine) cannot corrupt each other: the first rename wins, later ones
discard their copy. The cache is local; distributed workers each fill their own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from tfrs_mm import fileio

CACHE_ENV = "TFRS_MM_CACHE"
ENCODER_JSON = "encoder.json"
_SAVED_MODEL_PB = "saved_model.pb"

logger = logging.getLogger(__name__)


def default_cache_dir() -> str:
    """`$TFRS_MM_CACHE` if set, else `~/.cache/tfrs_mm/encoders`."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "tfrs_mm", "encoders")


def config_digest(payload: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of `payload` as canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def read_encoder_json(directory: str) -> dict[str, Any] | None:
    """The `encoder.json` of an exported encoder (local path or URI), or None when there is none."""
    path = fileio.join(directory, ENCODER_JSON)
    if not fileio.exists(path):
        return None
    with fileio.open_file(path) as f:
        return json.load(f)


def is_complete(directory: str) -> bool:
    """True when `directory` holds a SavedModel and its `encoder.json`."""
    return all(os.path.isfile(os.path.join(directory, n)) for n in (_SAVED_MODEL_PB, ENCODER_JSON))


def cached_export(
    cache_dir: str, name: str, entry: str, export: Callable[[str], Mapping[str, Any]]
) -> tuple[str, bool]:
    """Returns the cache entry `<cache_dir>/<name>/<entry>`, exporting it first if needed.

    Args:
        cache_dir: Root of the cache (local path).
        name: Encoder name (one directory per encoder).
        entry: `<version>-<digest>`.
        export: Writes a SavedModel into the directory it is given and returns
            the contents of `encoder.json`.

    Returns:
        (path of the entry, whether this call's export was published there).
    """
    final = os.path.join(cache_dir, name, entry)
    if is_complete(final):
        return final, False
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{entry}-", dir=parent)
    try:
        meta = export(tmp)
        with open(os.path.join(tmp, ENCODER_JSON), "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if not is_complete(tmp):
            raise RuntimeError(f"exporting {name}/{entry} wrote no {_SAVED_MODEL_PB}")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like ~/.cache
        published = _publish(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final, published


def _publish(tmp: str, final: str) -> bool:
    """Renames `tmp` to `final`; False when a complete `final` appeared meanwhile."""
    if os.path.exists(final) and not is_complete(final):
        # A damaged entry (files deleted by hand): move it aside rather than trust it.
        logger.warning("replacing incomplete encoder cache entry %s", final)
        stale = tempfile.mkdtemp(prefix=".stale-", dir=os.path.dirname(final))
        os.rename(final, os.path.join(stale, "entry"))
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if not is_complete(final):
            raise
        logger.info("encoder cache entry %s was written concurrently; keeping that copy", final)
        return False
    return True
