"""Canonical error codes, their HTTP statuses and TF Serving's `{"error": msg}` body.

TF Serving turns every handler failure into an absl status, answers with
`ToHTTPStatusCode(status)` and the body `{"error": status.message()}`
(TF_SERVING_REST.md §1.8). We do the same with `ServingError`; TensorFlow's
Python `OpError`s carry the same canonical code numbers in `error_code`.
"""

from __future__ import annotations

import json

# tensorflow/core/protobuf/error_codes.proto, by number.
CODE_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

# ToHTTPStatusCode (http_server.cc); anything not listed is 500.
_HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "UNAUTHENTICATED": 401,
}


def http_status(code: str) -> int:
    """The HTTP status TF Serving answers for a canonical code name."""
    return _HTTP_STATUS.get(code, 500)


class ServingError(Exception):
    """A failed request or load: a canonical code name (`"NOT_FOUND"`) and TF Serving's message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status(self.code)

    def status_string(self) -> str:
        """absl `Status::ToString()`, as nested statuses are rendered inside other messages."""
        return f"{self.code}: {self.message}"


def invalid_argument(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def unimplemented(message: str) -> ServingError:
    return ServingError("UNIMPLEMENTED", message)


def from_exception(exc: BaseException) -> ServingError:
    """Maps an exception raised while running a model to a `ServingError`.

    TensorFlow's `OpError` keeps its canonical code (an unregistered op is
    NOT_FOUND, a kernel shape mismatch INVALID_ARGUMENT). Python-level call
    errors (`TypeError`, `ValueError`) come from bad inputs; anything else is
    INTERNAL.
    """
    if isinstance(exc, ServingError):
        return exc
    code = getattr(exc, "error_code", None)
    if isinstance(code, int) and 0 < code < len(CODE_NAMES):
        return ServingError(CODE_NAMES[code], getattr(exc, "message", None) or str(exc))
    if isinstance(exc, TypeError | ValueError):
        return invalid_argument(str(exc))
    return ServingError("INTERNAL", f"{type(exc).__name__}: {exc}")


def error_body(message: str) -> bytes:
    """TF Serving's error body, `{"error": "<message>"}` (rapidjson's 4-space pretty layout)."""
    return json.dumps({"error": message}, indent=4).encode("ascii")
