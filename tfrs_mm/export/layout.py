"""TF Serving's on-disk layout: integer version directories written atomically, and `models.config`.

A version is written into a non-numeric sibling (`<base>/.tmp-<uuid>`, which the
server ignores) and renamed to `<base>/<N>`, N one more than the highest
existing version, so a polling server never sees a half-written model. On
failure the temporary directory is removed and no version appears.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping

from tfrs_mm import fileio

MODELS_CONFIG_FILE = "models.config"
TMP_PREFIX = ".tmp-"
# Ops stock TF Serving does not link: custom-op namespaces (`Scann>...`) and Python callbacks.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _listdir(path: str) -> list[str]:
    if not fileio.exists(path):
        return []
    names = _gfile().listdir(path) if fileio.is_uri(path) else os.listdir(path)
    return [name.rstrip("/") for name in names]


def versions(base_path: str) -> list[int]:
    """Integer versions under a model's base path, ascending (other names are ignored, as TF Serving does)."""
    found = []
    for name in _listdir(base_path):
        try:
            found.append(int(name))
        except ValueError:
            continue
    return sorted(found)


def next_version(base_path: str) -> int:
    """One more than the highest existing version; 1 for the first."""
    existing = versions(base_path)
    return existing[-1] + 1 if existing else 1


def _rename(source: str, target: str) -> None:
    if fileio.is_uri(source):
        _gfile().rename(source, target, overwrite=False)
    elif os.path.exists(target):
        raise FileExistsError(target)
    else:
        os.rename(source, target)


def _remove_tree(path: str) -> None:
    if fileio.exists(path):
        _gfile().rmtree(path)


def write_version(base_path: str, write: Callable[[str], None]) -> tuple[int, str]:
    """Runs `write(tmp_dir)`, then renames `tmp_dir` to the next version; returns (version, path).

    Raises:
        Whatever `write` raises, after removing the temporary directory; FileExistsError if
        another exporter took the version number in the meantime.
    """
    fileio.makedirs(base_path)
    tmp = fileio.join(base_path, f"{TMP_PREFIX}{uuid.uuid4().hex}")
    try:
        write(tmp)
        version = next_version(base_path)
        target = fileio.join(base_path, str(version))
        _rename(tmp, target)
    except BaseException:
        _remove_tree(tmp)
        raise
    return version, target


def base_path_of(path: str) -> str:
    """An absolute local path (TF Serving resolves relative ones against its own working dir) or the URI."""
    return path if fileio.is_uri(path) else os.path.abspath(path)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def models_config_text(models: Mapping[str, str]) -> str:
    """A text `ModelServerConfig` serving the latest version of each {name: base_path}."""
    lines = ["model_config_list {"]
    for name, base in models.items():
        lines += [
            "  config {",
            f"    name: {_quote(name)}",
            f"    base_path: {_quote(base_path_of(base))}",
            '    model_platform: "tensorflow"',
            "  }",
        ]
    return "\n".join([*lines, "}", ""])


def write_models_config(out_dir: str, models: Mapping[str, str], file_name: str = MODELS_CONFIG_FILE) -> str:
    """Writes `out_dir/<file_name>` for `tensorflow_model_server --model_config_file`; returns its path."""
    fileio.makedirs(out_dir)
    path = fileio.join(out_dir, file_name)
    with fileio.open_file(path, "w") as f:
        f.write(models_config_text(models))
    return path


def graph_ops(export_dir: str) -> set[str]:
    """Every op type in a SavedModel: its graphs and their function libraries."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with fileio.open_file(fileio.join(export_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    ops: set[str] = set()
    for meta_graph in saved.meta_graphs:
        graph = meta_graph.graph_def
        ops.update(node.op for node in graph.node)
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def custom_ops(ops: Iterable[str]) -> list[str]:
    """The ops stock TF Serving cannot run: namespaced custom ops and Python callbacks."""
    return sorted(op for op in ops if ">" in op or op in PYTHON_OPS)
