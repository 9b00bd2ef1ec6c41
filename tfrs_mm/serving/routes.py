"""TF Serving's REST handler (`HttpRestApiHandler::ProcessRequest`), free of any HTTP framework.

`RestApiHandler.handle(method, path, body)` takes the request target exactly as
sent (query string included, TF_SERVING_REST.md §1.1) and returns the HTTP
status and JSON body TF Serving would. The processing order, and so which
error wins when a request has several faults, follows §1.8.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from tfrs_mm.serving import codec
from tfrs_mm.serving.errors import error_body, from_exception, invalid_argument, unimplemented
from tfrs_mm.serving.json_text import ensure_object, parse_request
from tfrs_mm.serving.models import ModelManager

REST_PATH = re.compile(r"(?i)/v1/.*", re.ASCII)
# http_rest_api_util.cc, verbatim.
PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.ASCII,
)
STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?", re.ASCII
)
_INT64_MAX = 2**63 - 1
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestResponse:
    """What the handler answers; `model_name` and `api` label the request's metrics."""

    status: int
    body: bytes
    code: str = "OK"
    model_name: str = ""
    api: str = ""


@dataclass(frozen=True)
class _Target:
    model_name: str
    version: int | None
    label: str | None
    verb: str  # "predict", "classify", "regress", "metadata" or "status"


class RestApiHandler:
    """Answers `/v1/...` requests from a `ModelManager`'s servables."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def handle(self, method: str, path: str, body: bytes) -> RestResponse:
        """Processes one request; `path` is the raw request target (percent-encoded, with any query)."""
        target = None
        try:
            target = _parse_target(method, path)
            if target is None:
                raise invalid_argument(f"Malformed request: {method} {path}")
            return RestResponse(200, self._dispatch(target, body), "OK", target.model_name, target.verb)
        except RecursionError:
            error = invalid_argument("JSON value nested too deeply")
        except Exception as exc:  # every failure becomes TF Serving's {"error": ...} body
            error = from_exception(exc)
            if error.code == "INTERNAL":
                logger.exception("%s %s failed", method, path)
        return RestResponse(
            error.http_status,
            error_body(error.message),
            error.code,
            target.model_name if target else "",
            target.verb if target else "",
        )

    def _dispatch(self, target: _Target, body: bytes) -> bytes:
        if target.verb == "predict":
            return self._predict(target, body)
        if target.verb in ("classify", "regress"):
            raise unimplemented(
                f"The local tfrs_mm server implements :predict only, not :{target.verb} "
                "(tensorflow_model_server has both)."
            )
        if not target.model_name:
            raise invalid_argument("Missing model name in request.")
        if target.verb == "metadata":
            return self._metadata(target)
        statuses = self.manager.version_statuses(target.model_name, target.version)  # labels are ignored here
        return _protobuf_json({"model_version_status": [status.to_json() for status in statuses]})

    def _metadata(self, target: _Target) -> bytes:
        servable = self.manager.servable(target.model_name, target.version, target.label)
        model_spec = {"name": target.model_name, "signature_name": "", "version": str(servable.version)}
        return _protobuf_json({"model_spec": model_spec, "metadata": servable.metadata()})

    def _predict(self, target: _Target, body: bytes) -> bytes:
        document = ensure_object(parse_request(body))
        signature = codec.signature_name(document)
        servable = self.manager.servable(target.model_name, target.version, target.label)
        input_dtypes = servable.input_dtypes(signature)
        request_format, arrays = codec.decode_predict_request(document, input_dtypes, signature)
        outputs = servable.predict(signature, arrays)
        return codec.encode_predict_response(outputs, request_format)


def _parse_target(method: str, path: str) -> _Target | None:
    """`ParseModelInfo`: None when the path does not parse for this method ("Malformed request")."""
    if method == "POST":
        match = PREDICTION_PATH.fullmatch(path)
        if match is None or match.group(4) not in ("predict", "classify", "regress"):
            return None  # the verb is compared case-sensitively after the (?i) match
        verb = match.group(4)
    elif method == "GET":
        match = STATUS_PATH.fullmatch(path)
        if match is None:
            return None
        verb = "metadata" if match.group(4) == "metadata" else "status"
    else:
        return None
    name, version_text, label = match.group(1, 2, 3)
    model_name = _unescape(name) if name else ""
    version = None
    if version_text:
        # Length first: int() refuses texts over 4300 digits with its own ValueError.
        digits = version_text.lstrip("0") or "0"
        if len(digits) > len(str(_INT64_MAX)) or int(digits) > _INT64_MAX:
            raise invalid_argument(f"Failed to convert version: {version_text} to numeric.")
        version = int(digits)
    return _Target(model_name, version, _unescape(label) if label else None, verb)


def _unescape(text: str) -> str:
    """`curl_easy_unescape`: %XX decoding only ('+' stays '+')."""
    return unquote_to_bytes(text).decode("utf-8", errors="surrogateescape")


def _protobuf_json(value: dict) -> bytes:
    """Status and metadata bodies: protobuf's JSON printer layout (1-space indent)."""
    return json.dumps(value, indent=1, ensure_ascii=False).encode("utf-8", errors="surrogateescape")
