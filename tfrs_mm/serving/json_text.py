"""JSON text as TF Serving reads and writes it (rapidjson with NaN/Inf, absl float printing).

Requests are parsed like rapidjson's `kParseNanAndInfFlag | kParseStopWhenDoneFlag`:
`NaN`, `Inf`, `Infinity` and their negatives are accepted, bytes after the top-level value
are ignored, and integers that do not fit 64 bits become doubles. Parse errors
carry rapidjson's wording and offset (TF_SERVING_REST.md §1.8 step 2).
Floats are written like `WriteDecimal` in json_tensor.cc (§1.6).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from tfrs_mm.serving.errors import invalid_argument

# rapidjson's error texts for what Python's decoder reports.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}
_DEBUG_STRING_LIMIT = 256  # JsonValueToDebugString cuts echoed JSON at 256 bytes
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1


def _parse_int(text: str) -> int | float:
    # rapidjson keeps integers that fit int64/uint64; larger ones are stored as doubles.
    if len(text) <= 21:
        value = int(text)
        if _INT_MIN <= value <= _UINT_MAX:
            return value
    return float(text)


_DECODER = json.JSONDecoder(parse_int=_parse_int)
# A whole JSON string (possessive, so an unclosed one ends the scan: linear time) or an infinity token.
_STRING_OR_INF = re.compile(r'"(?:[^"\\]|\\.)*+"?|Inf(?:inity)?')


def _spell_out_inf(text: str) -> str:
    """rapidjson also reads `Inf`; Python's json only `Infinity`. Strings are left alone."""
    if "Inf" not in text.replace("Infinity", ""):
        return text
    return _STRING_OR_INF.sub(lambda match: "Infinity" if match.group() == "Inf" else match.group(), text)


def parse_request(body: bytes) -> Any:
    """Parses a request body; raises INVALID_ARGUMENT with rapidjson's message on bad JSON."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    # rapidjson does not validate UTF-8; keep undecodable bytes so strings round-trip as bytes.
    text = _spell_out_inf(body.decode("utf-8", errors="surrogateescape"))
    start = len(text) - len(text.lstrip(" \t\n\r"))
    if start == len(text):
        raise invalid_argument(f"JSON Parse error: The document is empty. at offset: {start}")
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise invalid_argument(f"JSON Parse error: {_rapidjson_message(exc)} at offset: {exc.pos}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: Nesting too deep.") from None
    return value


def _rapidjson_message(exc: json.JSONDecodeError) -> str:
    if exc.msg == "Expecting ',' delimiter":
        inside = _innermost_container(exc.doc, exc.pos)
        if inside == "{":
            return "Missing a comma or '}' after an object member."
        return "Missing a comma or ']' after an array element."
    return _PARSE_ERRORS.get(exc.msg, exc.msg + ".")


def _innermost_container(text: str, end: int) -> str:
    """The innermost unclosed `[` or `{` before `end`, skipping string contents."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:end]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def type_name(value: Any) -> str:
    """rapidjson's type name of a parsed JSON value (`JsonTypeString`)."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def debug_string(value: Any) -> str:
    """A JSON value echoed inside an error message, cut like `JsonValueToDebugString`."""
    try:
        text = json.dumps(value, indent=4, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = repr(value)
    if len(text) > _DEBUG_STRING_LIMIT:
        text = text[:_DEBUG_STRING_LIMIT] + "..."
    return text


def format_float(value: float, *, single: bool) -> str:
    """`WriteDecimal`: `%g`, then `%.9g`/`%.17g` if that does not round-trip, then `.0` for whole numbers.

    `single` selects float32 semantics (DT_FLOAT); otherwise double. Returns
    the bare tokens `NaN`, `Infinity` and `-Infinity` for non-finite values.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    if single:
        if np.float32(float(text)) != np.float32(value):
            text = f"{value:.9g}"
    elif float(text) != value:
        text = f"{value:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def format_floats(values: np.ndarray, *, single: bool) -> list[str]:
    """`format_float` for every element of a 1-D array, with the round-trip check done in numpy."""
    values = values.astype(np.float32 if single else np.float64)
    floats = values.tolist()
    texts = [f"{value:g}" for value in floats]
    with np.errstate(all="ignore"):
        parsed = np.array(texts, dtype=np.float64).astype(values.dtype)
    finite = np.isfinite(values)
    precise = "{:.9g}" if single else "{:.17g}"
    for index in np.flatnonzero(finite & (parsed != values)).tolist():
        texts[index] = precise.format(floats[index])
    for index in np.flatnonzero(~finite).tolist():
        texts[index] = format_float(floats[index], single=single)  # NaN, Infinity, -Infinity
    return [text if "." in text or "e" in text or text[-1] in "Ny" else text + ".0" for text in texts]


def dumps_text(value: str) -> str:
    """A JSON string literal for text that may carry undecodable bytes (kept raw, as rapidjson does)."""
    return json.dumps(value, ensure_ascii=False)


def encode_body(text: str) -> bytes:
    """UTF-8 bytes of a JSON body; surrogate-escaped bytes from requests or models go out unchanged."""
    return text.encode("utf-8", errors="surrogateescape")


def ensure_object(document: Any) -> dict:
    """The top level of a request must be a JSON object (`ParseJson`)."""
    if not isinstance(document, dict):
        raise invalid_argument(f"JSON Value: {debug_string(document)} Is not object")
    return document
