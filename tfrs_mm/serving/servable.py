"""One loaded model version: its MetaGraphDef (for metadata and the op audit) and its TF signatures."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tfrs_mm.serving.errors import ServingError, from_exception, invalid_argument
from tfrs_mm.serving.ops_audit import audit_meta_graph

SERVING_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"


class LoadedVersion:
    """A servable: one version directory loaded with `tf.saved_model.load`.

    Args:
      name: the model name from models.config.
      version: the integer version directory name.
      path: the version directory.
      meta_graph: the `serve` MetaGraphDef proto, whose `signature_def` map is
        what TF Serving reports and looks signatures up in (it includes
        `__saved_model_init_op`).
      loaded: the object `tf.saved_model.load` returned; its `signatures` run.
    """

    def __init__(self, name: str, version: int, path: str, meta_graph, loaded: Any):
        self.name, self.version, self.path = name, version, path
        self.meta_graph = meta_graph
        self._loaded = loaded

    def _signature_def(self, signature_name: str):
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.meta_graph.signature_def:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
        return self.meta_graph.signature_def[name]

    def input_dtypes(self, signature_name: str) -> dict[str, str]:
        """The signature's inputs as alias → DT name; INVALID_ARGUMENT if there is no such signature."""
        return _dtype_names(self._signature_def(signature_name).inputs)

    def predict(
        self, signature_name: str, arrays: Mapping[str, np.ndarray]
    ) -> dict[str, tuple[str, np.ndarray]]:
        """Runs a signature on decoded inputs; returns every output as alias → (DT name, array)."""
        import tensorflow as tf

        signature_def = self._signature_def(signature_name)
        name = signature_name or DEFAULT_SIGNATURE
        function = self._loaded.signatures.get(name)
        if function is None:  # in the MetaGraphDef but not a callable signature (e.g. the init op)
            raise invalid_argument(f'Serving signature name: "{name}" cannot be run')
        dtypes = _dtype_enums(signature_def.inputs)
        try:
            tensors = {
                alias: tf.constant(array, dtype=tf.as_dtype(dtypes[alias])) for alias, array in arrays.items()
            }
            outputs = function(**tensors)
            return {alias: _to_numpy(tensor) for alias, tensor in outputs.items()}
        except Exception as exc:  # TF errors keep their canonical code; see errors.from_exception
            raise from_exception(exc) from None

    @functools.cached_property
    def _metadata(self) -> dict:
        from google.protobuf import json_format

        signature_defs = {
            name: json_format.MessageToDict(
                signature_def, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            for name, signature_def in self.meta_graph.signature_def.items()
        }
        return {"signature_def": {"signature_def": signature_defs}}

    def metadata(self) -> dict:
        """The `metadata` member of a GetModelMetadata response: `{"signature_def": SignatureDefMap JSON}`."""
        return self._metadata


def _to_numpy(tensor) -> tuple[str, np.ndarray]:
    """(DT name, array); strings become object arrays of bytes, also when rank 0."""
    value = tensor.numpy()
    array = np.array(value, dtype=object) if tensor.dtype.name == "string" else np.asarray(value)
    return _dtype_name(tensor.dtype.as_datatype_enum), array


def _dtype_name(enum: int) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum)


def _dtype_enums(tensor_infos) -> dict[str, int]:
    return {alias: info.dtype for alias, info in tensor_infos.items()}


def _dtype_names(tensor_infos) -> dict[str, str]:
    return {alias: _dtype_name(info.dtype) for alias, info in tensor_infos.items()}


def read_meta_graph(path: str, tags: Iterable[str] = (SERVING_TAG,)):
    """The MetaGraphDef tagged `tags` in the SavedModel at `path`, with TF's loader errors."""
    import tensorflow as tf
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    binary, text = tf.io.gfile.join(path, "saved_model.pb"), tf.io.gfile.join(path, "saved_model.pbtxt")
    if tf.io.gfile.exists(binary):
        try:
            with tf.io.gfile.GFile(binary, "rb") as handle:
                saved_model.ParseFromString(handle.read())
        except message.DecodeError:
            raise ServingError("DATA_LOSS", f"Can't parse {binary} as binary proto") from None
    elif tf.io.gfile.exists(text):
        try:
            with tf.io.gfile.GFile(text, "r") as handle:
                text_format.Parse(handle.read(), saved_model)
        except text_format.ParseError as exc:
            raise ServingError("DATA_LOSS", f"Can't parse {text} as text proto: {exc}") from None
    else:
        raise ServingError(
            "NOT_FOUND",
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}. "
            "Check that the directory exists and that you have the right permissions for accessing it.",
        )
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    raise ServingError(
        "NOT_FOUND",
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(wanted))} }}. "
        "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli`",
    )


def load_version(name: str, version: int, path: str, custom_ops: Iterable[str] = ()) -> LoadedVersion:
    """Reads, audits (§3.1) and loads one version directory; raises `ServingError` on failure."""
    import tensorflow as tf

    meta_graph = read_meta_graph(path)
    audit_meta_graph(meta_graph, custom_ops)
    try:
        loaded = tf.saved_model.load(path, tags=[SERVING_TAG])
    except Exception as exc:  # any load failure becomes the version's status
        error = from_exception(exc)
        code = "UNKNOWN" if error.code == "INTERNAL" else error.code
        raise ServingError(code, error.message) from None
    return LoadedVersion(name, version, path, meta_graph, loaded)
