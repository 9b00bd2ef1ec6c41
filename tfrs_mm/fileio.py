"""Text file I/O that works on local paths and on `scheme://` URIs (gs://, s3://, ...).

Local paths use the standard library so the data tools start without
TensorFlow; URIs go through `tf.io.gfile`, which Dataflow/Flink/Spark workers
already have.
"""

from __future__ import annotations

import os
from typing import IO


def is_uri(path: str) -> bool:
    """True for `scheme://...` paths (not for local paths)."""
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def join(base: str, *parts: str) -> str:
    """Joins path parts with `/` for URIs and `os.path.join` for local paths."""
    if is_uri(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(_local(base), *parts)


def open_file(path: str, mode: str = "r") -> IO:
    """Opens a local file or URI; text modes use UTF-8."""
    if is_uri(path):
        import tensorflow as tf

        return tf.io.gfile.GFile(path, mode)
    if "b" in mode:
        return open(_local(path), mode)
    return open(_local(path), mode, encoding="utf-8", newline="" if "w" in mode else None)


def exists(path: str) -> bool:
    if is_uri(path):
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.exists(_local(path))


def makedirs(path: str) -> None:
    if is_uri(path):
        import tensorflow as tf

        tf.io.gfile.makedirs(path)
    else:
        os.makedirs(_local(path), exist_ok=True)
