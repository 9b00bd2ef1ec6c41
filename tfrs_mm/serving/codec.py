"""`:predict` bodies ⇄ numpy arrays, following TF Serving's json_tensor.cc.

Requests decode against the signature's input dtypes (DT names such as
`"DT_FLOAT"`): row format (`instances`) batches one element per row, columnar
format (`inputs`) gives whole tensors. Shapes come from the JSON nesting and
are never checked against the signature (TF_SERVING_REST.md §1.5). Responses
follow the request's format (§1.6). No TensorFlow here: strings are object
arrays of `bytes`, everything else plain numpy.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import numpy as np

from tfrs_mm.serving.errors import ServingError, invalid_argument, unimplemented
from tfrs_mm.serving.json_text import debug_string, dumps_text, encode_body, format_floats, type_name

ROW = "row"  # request had "instances": answer {"predictions": [...]}
COLUMNAR = "columnar"  # request had "inputs": answer {"outputs": ...}
_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class _Kind:
    """How one signature dtype accepts JSON values (`AddValueToTensor`)."""

    numpy: Any
    accepts: Callable[[Any], bool]


def _number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and low <= value <= high


_KINDS = {
    "DT_FLOAT": _Kind(np.float32, _number),
    "DT_DOUBLE": _Kind(np.float64, _number),
    "DT_INT32": _Kind(np.int32, _int_in(*_INT32)),
    "DT_INT16": _Kind(np.int16, _int_in(*_INT32)),  # rapidjson IsInt(); the proto's int_val then narrows
    "DT_INT8": _Kind(np.int8, _int_in(*_INT32)),
    "DT_UINT8": _Kind(np.uint8, _int_in(*_INT32)),
    "DT_INT64": _Kind(np.int64, _int_in(-(2**63), 2**63 - 1)),
    "DT_UINT32": _Kind(np.uint32, _int_in(0, 2**32 - 1)),
    "DT_UINT64": _Kind(np.uint64, _int_in(0, 2**64 - 1)),
    "DT_BOOL": _Kind(np.bool_, lambda value: type(value) is bool),
    "DT_STRING": _Kind(object, lambda value: type(value) is str),
}
_INT_OUTPUTS = frozenset(
    {"DT_INT32", "DT_INT16", "DT_INT8", "DT_UINT8", "DT_INT64", "DT_UINT32", "DT_UINT64"}
)


def dtype_string(dtype: str) -> str:
    """TensorFlow's `DataTypeString`: `"DT_FLOAT"` → `"float"`, `"DT_HALF"` → `"half"`."""
    return dtype.removeprefix("DT_").lower()


def signature_name(document: Mapping[str, Any]) -> str:
    """The optional `signature_name` (`""` when absent); it must be a JSON string."""
    if "signature_name" not in document:
        return ""
    name = document["signature_name"]
    if not isinstance(name, str):
        raise invalid_argument(
            f"JSON Value: {debug_string(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def decode_predict_request(
    document: Mapping[str, Any], input_dtypes: Mapping[str, str], signature: str = ""
) -> tuple[str, dict[str, np.ndarray]]:
    """Decodes a parsed `:predict` body into `(format, {input_alias: array})`.

    Args:
      document: the parsed top-level JSON object.
      input_dtypes: the signature's inputs, alias → DT name (e.g. `{"x": "DT_FLOAT"}`).
      signature: the requested signature name, only for the error text.
    Returns:
      `ROW` or `COLUMNAR`, and one array per input; row format arrays are
      `[num_instances, *element_shape]`.
    """
    if not input_dtypes:
        raise invalid_argument(f"Failed to get input map for signature: {signature or 'DEFAULT'}")
    if "instances" in document:
        if "inputs" in document:
            raise invalid_argument(
                f"JSON Value: {debug_string(document)} Not formatted correctly expecting only one of "
                "'inputs' or 'instances' keys to exist "
            )
        instances = document["instances"]
        if not isinstance(instances, list):
            raise invalid_argument(
                f"JSON Value: {debug_string(document)} Expecting 'instances' to be an list/array"
            )
        if not instances:
            raise invalid_argument(f"JSON Value: {debug_string(document)} No values in 'instances' array")
        return ROW, _decode_instances(instances, input_dtypes)
    if "inputs" in document:
        return COLUMNAR, _decode_inputs(document["inputs"], input_dtypes)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named_element(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


class _RowTensor:
    """One named input accumulated over the rows of `instances`; every row must match the first."""

    def __init__(self, dtype: str, shape: list[int], values: list):
        self.dtype, self.shape, self.size, self.values = dtype, shape, len(values), values

    def add(self, shape: list[int], values: list) -> None:
        if len(values) != self.size:
            raise invalid_argument(f"Expecting tensor size: {self.size} but got: {len(values)}")
        if shape != self.shape:
            raise invalid_argument(f"Expecting shape {_shape_text(self.shape)} but got: {_shape_text(shape)}")
        self.values.extend(values)


def _decode_instances(instances: list, input_dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    names = sorted(input_dtypes)
    if not isinstance(instances[0], dict) and len(names) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    named = _is_named_element(instances[0])
    rows: dict[str, _RowTensor] = {}
    for index, element in enumerate(instances):
        if named:
            _add_named_row(index, element, input_dtypes, names, rows)
            continue
        if _is_named_element(element):
            raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
        try:
            _add_instance_item(element, names[0], input_dtypes, rows)
        except ServingError as exc:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. Error: {exc.status_string()}"
            ) from None
    count = len(instances)
    return {name: _to_array(row.values, row.dtype, [count, *row.shape]) for name, row in rows.items()}


def _add_named_row(index: int, element: Any, input_dtypes, names: list[str], rows) -> None:
    if not _is_named_element(element):
        raise invalid_argument(f"Expecting object but got list at item {index} of input list")
    for key, value in element.items():
        try:
            _add_instance_item(value, key, input_dtypes, rows)
        except ServingError as exc:
            raise invalid_argument(
                f"Failed to process element: {index} key: {key} of 'instances' list. "
                f"Error: {exc.status_string()}"
            ) from None
    if set(element) != set(names):
        raise invalid_argument(
            f"Failed to process element: {index} of 'instances' list. JSON object: "
            f"{debug_string(element)} keys must be equal to: {','.join(names)}"
        )


def _add_instance_item(item: Any, name: str, input_dtypes: Mapping[str, str], rows: dict) -> None:
    if name not in input_dtypes:
        raise invalid_argument(f"JSON object: does not have named input: {name}")
    dtype = input_dtypes[name]
    shape = _dense_shape(item)
    values: list = []
    _fill(item, 0, shape, dtype, values)
    if name in rows:
        rows[name].add(shape, values)
    else:
        rows[name] = _RowTensor(dtype, shape, values)


def _decode_inputs(value: Any, input_dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or _is_b64(value):
        if len(input_dtypes) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        (name,) = input_dtypes
        return {name: _column(value, input_dtypes[name])}
    arrays = {}
    for name in sorted(input_dtypes):
        if name not in value:  # extra keys are ignored, as upstream does
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _column(value[name], input_dtypes[name])
    return arrays


def _column(value: Any, dtype: str) -> np.ndarray:
    shape = _dense_shape(value)
    values: list = []
    _fill(value, 0, shape, dtype, values)
    return _to_array(values, dtype, shape)


def _dense_shape(value: Any) -> list[int]:
    """The shape implied by the first element at every nesting level (`GetDenseTensorShape`)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dtype: str, out: list) -> None:
    """Appends the leaves of `value` to `out`, checking it is dense with `shape` (`FillTensorProto`)."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {debug_string(value)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        out.append(_leaf(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    kind = _KINDS.get(dtype)
    if level == rank - 1 and kind is not None and all(map(kind.accepts, value)):
        out.extend(
            _encode_utf8(value) if dtype == "DT_STRING" else value
        )  # fast path: a clean innermost list
        return
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _leaf(value: Any, dtype: str) -> Any:
    if isinstance(value, dict):
        if dtype != "DT_STRING":
            raise _type_error(value, dtype)
        return _decode_b64(value)
    kind = _KINDS.get(dtype)
    if kind is None:
        raise unimplemented(f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_string(dtype)}")
    if not kind.accepts(value):
        raise _type_error(value, dtype)
    return _utf8(value) if dtype == "DT_STRING" else value


def _utf8(value: str) -> bytes:
    try:
        return value.encode("utf-8", errors="surrogateescape")  # raw undecodable request bytes round-trip
    except UnicodeEncodeError:  # a lone surrogate escape (\ud800), which rapidjson refuses while parsing
        raise invalid_argument("JSON Parse error: The surrogate pair in string is invalid.") from None


def _encode_utf8(values: list[str]) -> list[bytes]:
    return [_utf8(value) for value in values]


def _type_error(value: Any, dtype: str) -> ServingError:
    return invalid_argument(
        f"JSON Value: {debug_string(value)} Type: {type_name(value)} "
        f"is not of expected type: {dtype_string(dtype)}"
    )


def _decode_b64(value: Any) -> bytes:
    if not _is_b64(value):
        raise invalid_argument(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    text = value["b64"]
    try:
        # absl::Base64Unescape also takes unpadded input.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _to_array(values: list, dtype: str, shape: list[int]) -> np.ndarray:
    kind = _KINDS[dtype] if dtype in _KINDS else _Kind(object, bool)  # unsupported dtypes only get here empty
    if kind.numpy is object:
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif kind.numpy in (np.int8, np.int16, np.uint8):
        array = np.array(values, dtype=np.int64).astype(kind.numpy)
    else:
        with np.errstate(over="ignore"):  # doubles beyond float32's range become ±inf, as upstream
            array = np.array(values, dtype=kind.numpy)
    return array.reshape(shape)


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(size) for size in shape) + "]"


def encode_predict_response(outputs: Mapping[str, tuple[str, np.ndarray]], request_format: str) -> bytes:
    """Writes a `:predict` response (`MakeJsonFromTensors`).

    Args:
      outputs: output alias → (DT name, array). String arrays hold `bytes`.
      request_format: `ROW` → `{"predictions": [...]}`, `COLUMNAR` → `{"outputs": ...}`.
    """
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    outputs = {name: (dtype, np.asarray(array)) for name, (dtype, array) in outputs.items()}
    names = sorted(outputs)
    if request_format == ROW:
        return encode_body('{\n    "predictions": ' + _rows_text(outputs, names) + "\n}")
    texts = {name: _tensor_text(name, *outputs[name]) for name in names}
    if len(names) == 1:
        return encode_body('{\n    "outputs": ' + texts[names[0]] + "\n}")
    members = ",\n        ".join(f"{dumps_text(name)}: {texts[name]}" for name in names)
    return encode_body('{\n    "outputs": {\n        ' + members + "\n    }\n}")


def _rows_text(outputs: Mapping[str, tuple[str, np.ndarray]], names: list[str]) -> str:
    """`[row0, row1, ...]`: every output sliced along dim 0; named objects when there are several."""
    batch = None
    for name in names:
        array = outputs[name][1]
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch is not None and array.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} expecting: {batch}"
            )
        batch = array.shape[0]
    columns = {}
    for name in names:
        dtype, array = outputs[name]
        columns[name] = [_nested_text(row, array.ndim - 1) for row in _element_texts(name, dtype, array)]
    if len(names) == 1:
        rows = columns[names[0]]
    else:
        rows = [
            "{" + ", ".join(f"{dumps_text(name)}: {columns[name][i]}" for name in names) + "}"
            for i in range(batch or 0)
        ]
    return "[" + ", ".join(rows) + "]"


def _element_texts(name: str, dtype: str, array: np.ndarray) -> Any:
    """Each element's JSON text, nested like `array` (`AddSingleValueAndAdvance`).

    Floats follow `WriteDecimal`; an alias ending in `_bytes` means base64 strings.
    """
    flat = array.ravel()
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        texts = format_floats(flat, single=dtype == "DT_FLOAT")
    elif dtype in _INT_OUTPUTS:
        texts = [str(value) for value in flat.tolist()]
    elif dtype == "DT_BOOL":
        texts = ["true" if value else "false" for value in flat.tolist()]
    elif dtype == "DT_STRING" and name.endswith("_bytes"):
        texts = ['{"b64": "' + base64.b64encode(value).decode("ascii") + '"}' for value in flat.tolist()]
    elif dtype == "DT_STRING":
        texts = [encode_basestring(text.decode("utf-8", errors="surrogateescape")) for text in flat.tolist()]
    else:
        raise invalid_argument(f"Failed to write JSON value for tensor type: {dtype_string(dtype)}")
    nested = np.empty(len(texts), dtype=object)
    nested[:] = texts
    return nested.reshape(array.shape).tolist()


def _tensor_text(name: str, dtype: str, array: np.ndarray) -> str:
    return _nested_text(_element_texts(name, dtype, array), array.ndim)


def _nested_text(texts: Any, depth: int) -> str:
    if depth == 0:
        return texts
    if depth == 1:
        return "[" + ", ".join(texts) + "]"
    return "[" + ", ".join(_nested_text(value, depth - 1) for value in texts) + "]"
