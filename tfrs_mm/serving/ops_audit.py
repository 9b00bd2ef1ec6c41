"""Refuse SavedModels that stock `tensorflow_model_server` cannot run (TF_SERVING_REST.md §3.1).

The local server runs on Python TensorFlow, where importing `scann` (or any
library) registers extra ops. Serving such a model locally would hide that
production cannot load it, so every op in the graph and its function library
is audited at load:

* namespaced custom ops (`Scann>ScannSearchBatched`, `Addons>...`, `IO>...`)
  are refused unless their set is enabled explicitly (`custom_ops=("scann",)`);
* Python-callback ops (`PyFunc`, `EagerPyFunc`) are refused: the model server
  has no Python;
* anything else must be a registered op. TF Text ops count as stock: the model
  server links `tensorflow_text:ops_lib` (§3.3), so `tensorflow_text` is
  imported on demand to register them.
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from tfrs_mm.serving.errors import ServingError


@dataclass(frozen=True)
class CustomOpSet:
    """Ops outside stock TF Serving that a local server may be told to accept."""

    namespace: str  # the op-name prefix before ">"
    module: str  # importing it registers the ops
    production_note: str


CUSTOM_OP_SETS = {
    "scann": CustomOpSet(
        namespace="Scann",
        module="scann",
        production_note="production then needs a TF Serving build with the ScaNN ops "
        "(google/tf-serving-scann)",
    ),
}
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


def enable_custom_ops(names: Iterable[str]) -> tuple[str, ...]:
    """Validates custom op set names and imports their modules so the ops register."""
    enabled = []
    for name in names:
        if name not in CUSTOM_OP_SETS:
            known = ", ".join(sorted(CUSTOM_OP_SETS))
            raise ValueError(f"unknown custom op set {name!r}; known: {known}")
        op_set = CUSTOM_OP_SETS[name]
        try:
            importlib.import_module(op_set.module)
        except ImportError as exc:
            raise ImportError(
                f"--custom_ops {name} needs the {op_set.module!r} package: pip install {op_set.module}"
            ) from exc
        enabled.append(name)
    return tuple(enabled)


def graph_ops(meta_graph) -> set[str]:
    """Op types used by a MetaGraphDef's graph and function library, calls to library functions excluded."""
    graph = meta_graph.graph_def
    functions = {function.signature.name for function in graph.library.function}
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return ops - functions


def refused_ops(ops: Iterable[str], custom_ops: Iterable[str] = ()) -> list[str]:
    """The ops that stock TF Serving lacks and that are not enabled by `custom_ops`, sorted."""
    allowed = {CUSTOM_OP_SETS[name].namespace for name in custom_ops}
    refused = []
    for op in ops:
        namespace = op.split(">", 1)[0] if ">" in op else None
        if (namespace is not None and namespace not in allowed) or op in PYTHON_OPS:
            refused.append(op)
    return sorted(refused)


def unregistered_ops(ops: Iterable[str]) -> list[str]:
    """Ops this process does not know, after letting `tensorflow_text` register its (stock) ops."""
    from tensorflow.python.framework import op_def_registry

    missing = sorted(op for op in ops if op_def_registry.get(op) is None)
    if missing:
        try:
            import tensorflow_text  # noqa: F401  (registers the TF Text ops TF Serving links)
        except ImportError:
            return missing
        missing = [op for op in missing if op_def_registry.get(op) is None]
    return missing


def audit_meta_graph(meta_graph, custom_ops: Iterable[str] = ()) -> None:
    """Raises NOT_FOUND, worded like TF's "Op type not registered", if the model needs a non-stock op."""
    custom_ops = tuple(custom_ops)
    ops = graph_ops(meta_graph)
    refused = refused_ops(ops, custom_ops)
    if refused:
        raise ServingError("NOT_FOUND", _refusal_message(refused))
    missing = unregistered_ops(ops)
    if missing:
        raise ServingError(
            "NOT_FOUND",
            f"Op type not registered '{missing[0]}' in binary running on {socket.gethostname()}. "
            f"Unregistered ops: {', '.join(missing)}.",
        )


def _refusal_message(refused: list[str]) -> str:
    lines = [
        f"Op type not registered '{refused[0]}' in binary running on {socket.gethostname()}. "
        f"Stock tensorflow_model_server lacks {', '.join(refused)}, so the local server refuses this model."
    ]
    for name, op_set in CUSTOM_OP_SETS.items():
        if any(op.startswith(op_set.namespace + ">") for op in refused):
            lines.append(f"Start it with --custom_ops {name} to serve it anyway; {op_set.production_note}.")
    if any(op in PYTHON_OPS for op in refused):
        lines.append("Python callback ops (tf.py_function, tf.numpy_function) need a Python runtime.")
    return " ".join(lines)
