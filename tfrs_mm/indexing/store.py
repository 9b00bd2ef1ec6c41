"""Index versions on disk: `WORKDIR/index/<integer version>/`, written whole or not at all.

A version holds `item_ids.txt` (one id per line, row order), `vectors.npy`
(float32 [n, d]) and `index.json` (params, measured recall and latency, the
tuning curve, provenance). It is written into a temporary sibling and renamed
into place, so a reader (the export) never sees a partial version; versions are
integers like TF Serving's, and the largest is the latest. On object stores
(gs://, s3://) a directory rename is a copy, so there `index.json` is written
last and marks a complete version.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from typing import Any

import numpy as np

from tfrs_mm import fileio

INDEX_DIR = "index"
ITEM_IDS_FILE = "item_ids.txt"
VECTORS_FILE = "vectors.npy"
INDEX_JSON = "index.json"


def index_root(workdir: str) -> str:
    return fileio.join(workdir, INDEX_DIR)


def list_versions(workdir: str) -> list[int]:
    """Complete index versions of `workdir`, ascending."""
    root = index_root(workdir)
    if not fileio.exists(root):
        return []
    names = _listdir(root)
    return sorted(
        int(name) for name in names if name.isdigit() and fileio.exists(fileio.join(root, name, INDEX_JSON))
    )


def latest_version_dir(workdir: str) -> str | None:
    """The newest complete version directory, or None when there is none."""
    versions = list_versions(workdir)
    return fileio.join(index_root(workdir), str(versions[-1])) if versions else None


def write_version(
    workdir: str, item_ids: list[str], vectors: np.ndarray, info: dict[str, Any]
) -> tuple[int, str]:
    """Writes a new version after the largest existing one; returns (version, its directory).

    Raises:
        ValueError: if ids and vectors disagree, or an id contains a line break.
    """
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or len(item_ids) != len(vectors):
        raise ValueError(f"{len(item_ids)} item ids for vectors of shape {vectors.shape}")
    if any("\n" in i or "\r" in i for i in item_ids):
        raise ValueError("item ids must not contain line breaks (item_ids.txt has one id per line)")
    root = index_root(workdir)
    fileio.makedirs(root)
    tmp = fileio.join(root, f".tmp-{uuid.uuid4().hex}")
    fileio.makedirs(tmp)
    try:
        with fileio.open_file(fileio.join(tmp, ITEM_IDS_FILE), "w") as f:
            f.write("".join(f"{i}\n" for i in item_ids))
        buffer = io.BytesIO()
        np.save(buffer, vectors)
        with fileio.open_file(fileio.join(tmp, VECTORS_FILE), "wb") as f:
            f.write(buffer.getvalue())
        with fileio.open_file(fileio.join(tmp, INDEX_JSON), "w") as f:
            f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
        return _publish(tmp, root)
    finally:
        if fileio.exists(tmp):
            _remove_tree(tmp)


def read_version(version_dir: str) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """(item ids [n], vectors [n, d] float32, index.json) of one version directory."""
    with fileio.open_file(fileio.join(version_dir, ITEM_IDS_FILE)) as f:
        item_ids = [line.rstrip("\n") for line in f]
    with fileio.open_file(fileio.join(version_dir, VECTORS_FILE), "rb") as f:
        vectors = np.load(io.BytesIO(f.read()), allow_pickle=False)
    with fileio.open_file(fileio.join(version_dir, INDEX_JSON)) as f:
        info = json.load(f)
    if len(item_ids) != len(vectors):
        raise ValueError(f"{version_dir}: {len(item_ids)} ids but {len(vectors)} vectors")
    return item_ids, vectors, info


def _publish(tmp: str, root: str) -> tuple[int, str]:
    """Renames `tmp` to the next free version; another writer taking a number moves us on."""
    for _ in range(100):
        names = [n for n in _listdir(root) if n.isdigit()]
        version = max((int(n) for n in names), default=0) + 1
        final = fileio.join(root, str(version))
        if fileio.exists(final):
            continue
        try:
            _rename(tmp, final)
        except OSError:
            if fileio.exists(final):
                continue
            raise
        return version, final
    raise RuntimeError(f"could not claim a new index version under {root}")


def _listdir(path: str) -> list[str]:
    if fileio.is_uri(path):
        import tensorflow as tf

        return [n.rstrip("/") for n in tf.io.gfile.listdir(path)]
    return os.listdir(path)


def _rename(source: str, target: str) -> None:
    if fileio.is_uri(source):
        import tensorflow as tf

        tf.io.gfile.rename(source, target, overwrite=False)
    else:
        # os.rename would replace an empty directory someone just created: mkdir claims the name first.
        os.mkdir(target)
        try:
            os.rename(source, target)
        except OSError:
            os.rmdir(target)
            raise


def _remove_tree(path: str) -> None:
    if fileio.is_uri(path):
        import tensorflow as tf

        tf.io.gfile.rmtree(path)
    else:
        shutil.rmtree(path, ignore_errors=True)
