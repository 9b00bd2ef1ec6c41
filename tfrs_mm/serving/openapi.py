"""An OpenAPI 3 description of the local server's endpoints, served at `/openapi.json`.

It documents TF Serving's REST surface as this server implements it
(TF_SERVING_REST.md §1): status, metadata and `:predict`, each addressed by
latest version, `/versions/{version}` or `/labels/{label}`. It lives outside
`/v1/`, where every path belongs to the TF Serving handler. JSON Schema cannot
say that `NaN`/`Infinity` tokens are accepted and returned; the descriptions do.
"""

from __future__ import annotations

from tfrs_mm import __version__

_JSON = "application/json"
_ADDRESSINGS = {
    "": ("latest available version", []),
    "/versions/{version}": ("a specific version", ["version"]),
    "/labels/{label}": ("the version a label points at", ["label"]),
}
_PARAMETERS = {
    "model_name": {
        "name": "model_name",
        "in": "path",
        "required": True,
        "description": "Model name from models.config (percent-decoded; may not contain '/' or ':').",
        "schema": {"type": "string", "pattern": "^[^/:]+$"},
    },
    "version": {
        "name": "version",
        "in": "path",
        "required": True,
        "description": "Integer version directory name (int64).",
        "schema": {"type": "integer", "format": "int64", "minimum": 0},
    },
    "label": {
        "name": "label",
        "in": "path",
        "required": True,
        "description": "A version label from models.config (version_labels).",
        "schema": {"type": "string", "pattern": "^[^/:]+$"},
    },
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_response(description: str, schema: str) -> dict:
    return {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}


_ERRORS = {
    "400": _json_response(
        "Malformed request, bad JSON, bad tensor values, unknown label or signature.", "Error"
    ),
    "404": _json_response("Unknown model or version (or a model needing an unregistered op).", "Error"),
    "408": _json_response("Request not received whole within the server's read timeout.", "Error"),
    "413": _json_response("Request body larger than max_request_bytes (after gzip).", "Error"),
    "431": _json_response("Request line and headers larger than 64 KiB.", "Error"),
    "default": _json_response("Any other failure, as TF Serving maps canonical codes to HTTP.", "Error"),
}


def _operation(summary: str, operation_id: str, parameters: list[str], ok: dict, **extra) -> dict:
    return {
        "summary": summary,
        "operationId": operation_id,
        "parameters": [_PARAMETERS[name] for name in ["model_name", *parameters]],
        "responses": {"200": ok, **_ERRORS},
        **extra,
    }


def _model_paths() -> dict:
    paths = {}
    for suffix, (meaning, parameters) in _ADDRESSINGS.items():
        key = suffix.strip("/{}").split("/")[0] or "latest"
        base = "/v1/models/{model_name}" + suffix
        paths[base] = {
            "get": _operation(
                f"Status of every version of a model ({meaning} in the path; labels are ignored)",
                f"get_model_status_{key}",
                parameters,
                _json_response("Model version status", "GetModelStatusResponse"),
            )
        }
        paths[base + "/metadata"] = {
            "get": _operation(
                f"Signature metadata of the {meaning}",
                f"get_model_metadata_{key}",
                parameters,
                _json_response("Model metadata", "GetModelMetadataResponse"),
            )
        }
        predict = _operation(
            f"Run a signature on the {meaning}",
            f"predict_{key}",
            parameters,
            _json_response("Outputs, in the request's format", "PredictResponse"),
            requestBody={"required": True, "content": {_JSON: {"schema": _ref("PredictRequest")}}},
        )
        predict["responses"]["501"] = _json_response(
            "An input dtype JSON cannot be converted to (half, bfloat16, ...), as in TF Serving.", "Error"
        )
        paths[base + ":predict"] = {"post": predict}
    return paths


_TENSOR_INFO = {
    "type": "object",
    "properties": {
        "dtype": {"type": "string", "example": "DT_FLOAT"},
        "tensor_shape": {
            "type": "object",
            "properties": {
                "dim": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"size": {"type": "string"}, "name": {"type": "string"}},
                    },
                },
                "unknown_rank": {"type": "boolean"},
            },
        },
        "name": {"type": "string"},
    },
}
_TENSOR_MAP = {"type": "object", "additionalProperties": _ref("TensorInfo")}
_SIGNATURE_DEF = {
    "type": "object",
    "properties": {
        "inputs": _TENSOR_MAP,
        "outputs": _TENSOR_MAP,
        "method_name": {"type": "string"},
        "defaults": {"type": "object"},
    },
}
_VERSION_STATUS = {
    "type": "object",
    "required": ["version", "state", "status"],
    "properties": {
        "version": {"type": "string", "description": "int64 as a JSON string"},
        "state": {
            "type": "string",
            "enum": ["UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END"],
        },
        "status": {
            "type": "object",
            "properties": {"error_code": {"type": "string"}, "error_message": {"type": "string"}},
        },
    },
}
_SIGNATURE_NAME = {"type": "string", "description": "Defaults to serving_default."}
_ROW_REQUEST = {
    "type": "object",
    "required": ["instances"],
    "properties": {"signature_name": _SIGNATURE_NAME, "instances": {"type": "array", "minItems": 1}},
    "description": "Row format: one element per example, batched on dim 0.",
}
_COLUMNAR_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {"signature_name": _SIGNATURE_NAME, "inputs": {}},
    "description": "Columnar format: whole tensors, one per input name (or a bare tensor for one input).",
}
_SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "TensorInfo": _TENSOR_INFO,
    "SignatureDef": _SIGNATURE_DEF,
    "ModelVersionStatus": _VERSION_STATUS,
    "GetModelStatusResponse": {
        "type": "object",
        "required": ["model_version_status"],
        "properties": {"model_version_status": {"type": "array", "items": _ref("ModelVersionStatus")}},
    },
    "GetModelMetadataResponse": {
        "type": "object",
        "required": ["model_spec", "metadata"],
        "properties": {
            "model_spec": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "signature_name": {"type": "string"},
                    "version": {"type": "string"},
                },
            },
            "metadata": {
                "type": "object",
                "properties": {
                    "signature_def": {
                        "type": "object",
                        "properties": {
                            "signature_def": {
                                "type": "object",
                                "additionalProperties": _ref("SignatureDef"),
                            }
                        },
                    }
                },
            },
        },
    },
    "PredictRequest": {
        "description": "Values may use the JSON extensions NaN, Infinity and -Infinity; "
        'bytes as {"b64": ...}.',
        "oneOf": [_ROW_REQUEST, _COLUMNAR_REQUEST],
    },
    "PredictResponse": {
        "oneOf": [
            {
                "type": "object",
                "required": ["predictions"],
                "properties": {"predictions": {"type": "array"}},
            },
            {"type": "object", "required": ["outputs"], "properties": {"outputs": {}}},
        ]
    },
}


def openapi_document(metrics_path: str) -> dict:
    """The OpenAPI 3.0 document; `metrics_path` is where the Prometheus endpoint is mounted."""
    paths = _model_paths()
    paths[metrics_path] = {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "operationId": "get_prometheus_metrics",
            "responses": {
                "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
            },
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "get_openapi",
            "responses": {
                "200": {"description": "OpenAPI document", "content": {_JSON: {"schema": {"type": "object"}}}}
            },
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "tfrs_mm local TF Serving REST API",
            "version": __version__,
            "description": "TensorFlow Serving's REST wire format (status, metadata, :predict), "
            'served locally. Error bodies are {"error": message} with TF Serving\'s HTTP codes; '
            "paths outside /v1/, the metrics path and /openapi.json get a plain 404.",
        },
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
