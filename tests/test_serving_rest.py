"""The REST surface against TF Serving's contract (TF_SERVING_REST.md §1; conformance groups A, B and D).

Runs the ASGI app in-process with Starlette's TestClient (httpx underneath).
`M` is the upstream handler test's model: versions 123 and 124 on disk, only
123 served (specific policy), label `Version_Label` → 123.
"""

import gzip
import json
import math
import shutil

import pytest
from starlette.testclient import TestClient

from tfrs_mm.serving import create_app
from tfrs_mm.serving.testing import write_half_plus_two, write_models_config

NAME = "saved_model_half_plus_two_2_versions"
M = f"/v1/models/{NAME}"


@pytest.fixture(scope="module")
def models_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving_rest")
    plus_two = write_half_plus_two(root / "templates" / "plus_two")
    plus_three = write_half_plus_two(root / "templates" / "plus_three", offset=3.0)
    layout = {
        NAME: {123: plus_two, 124: plus_three},
        "default": {123: plus_two},
        "routed": {1: plus_two, 2: plus_three},
    }
    for name, versions in layout.items():
        for version, template in versions.items():
            shutil.copytree(template, root / name / str(version))
    return write_models_config(
        root / "models.config",
        {name: root / name for name in layout},
        policies={NAME: "specific { versions: 123 }", "routed": "all {}"},
        labels={NAME: {"Version_Label": 123}, "routed": {"stable": 1, "canary": 2}},
    )


@pytest.fixture(scope="module")
def client(models_config):
    return TestClient(create_app(str(models_config), poll_seconds=0))


STATUS_123 = {
    "model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}


@pytest.mark.parametrize(
    "case, method, path, body, status, expected",
    [
        (
            "A1",
            "POST",
            f"{M}:predict",
            '{"instances": [[1.0, 2.0], [3.0, 4.0]]}',
            200,
            {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
        ),
        (
            "A2",
            "POST",
            f"{M}/versions/123:predict",
            '{"instances": [1.0, 2.0]}',
            200,
            {"predictions": [2.5, 3.0]},
        ),
        (
            "A3",
            "POST",
            f"{M}/labels/Version_Label:predict",
            '{"instances": [1.0, 2.0]}',
            200,
            {"predictions": [2.5, 3.0]},
        ),
        (
            "A4",
            "POST",
            f"{M}/versions/123:predict",
            '{"signature_name": "serving_default", "instances": [3.0, 4.0]}',
            200,
            {"predictions": [3.5, 4.0]},
        ),
        (
            "A5",
            "POST",
            f"{M}/versions/123:predict",
            '{"signature_name": "serving_default", "inputs": [3.0, 4.0]}',
            200,
            {"outputs": [3.5, 4.0]},
        ),
        ("A9", "GET", M, None, 200, STATUS_123),
        ("A9 version", "GET", f"{M}/versions/123", None, 200, STATUS_123),
        ("A9 label", "GET", f"{M}/labels/Version_Label", None, 200, STATUS_123),
        (
            "B1",
            "POST",
            "/v1/models/default:predict",
            '{"instances": [2.0, 3.0, 4.0]}',
            200,
            {"predictions": [3.0, 3.5, 4.0]},
        ),
        (
            "B2",
            "POST",
            "/v1/models/default:predict",
            '{"inputs": [2.0, 3.0, 4.0]}',
            200,
            {"outputs": [3.0, 3.5, 4.0]},
        ),
        ("B5", "GET", "/v1/models/default", None, 200, STATUS_123),
    ],
)
def test_upstream_success_cases(client, case, method, path, body, status, expected):
    response = client.request(method, path, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected


@pytest.mark.parametrize(
    "case, method, path, body, status, substring",
    [
        (
            "A11",
            "POST",
            "/v1/models/foo:predict",
            '{ "instances": [1] }',
            404,
            "Servable not found for request: Latest(foo)",
        ),
        (
            "A12",
            "POST",
            "/v1/models/foo/versions/50:predict",
            '{ "instances": [1] }',
            404,
            "Specific(foo, 50)",
        ),
        ("A13", "POST", f"{M}99:predict", '{ "instances": [1] }', 404, f"Latest({NAME}99)"),
        ("A14", "POST", f"{M}:predict", "", 400, "JSON Parse error: The document is empty"),
        ("A15", "POST", f"{M}:predict", "instances = [1, 2]", 400, "JSON Parse error: Invalid value"),
        ("A16", "POST", f"{M}:predict", '{ "instances": ["x", "y"] }', 400, "not of expected type: float"),
        (
            "A17",
            "POST",
            f"{M}/labels/Version_Nonexistent:predict",
            '{ "instances": ["x", "y"] }',
            400,
            "Unrecognized servable version label: Version_Nonexistent",
        ),
        (
            "A18",
            "POST",
            f"{M}:predict",
            '{ "signature_name": 100 }',
            400,
            "'signature_name' key must be a string value.",
        ),
        ("A19", "GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
        ("A19", "POST", "/v1/foo", None, 400, "Malformed request: POST /v1/foo"),
        ("A19", "POST", "/v1/models", None, 400, "Malformed request"),
        ("A19", "GET", "/v1/models/debug/model_name", None, 400, "Malformed request"),
        ("A19", "GET", "/v1/models/foo:predict", None, 400, "Malformed request"),
        ("A19", "GET", "/v1/models/foo/version/50:predict", None, 400, "Malformed request"),
        ("A19", "POST", "/v1/models/foo/version/50:regress", None, 400, "Malformed request"),
        ("A19", "POST", "/v1/models/foo/versions/HELLO:regress", None, 400, "Malformed request"),
        ("A19", "POST", "/v1/models/foo/metadata", None, 400, "Malformed request"),
        ("A19", "POST", "/v1/models/foo/label/some_label:regress", None, 400, "Malformed request"),
        (
            "A19",
            "POST",
            "/v1/models/foo/versions/50/labels/some_label:regress",
            None,
            400,
            "Malformed request",
        ),
        ("A19", "POST", "/v1/models/foo/versions/some_label:regress", None, 400, "Malformed request"),
        ("A20", "GET", "/v1/models", None, 400, "Missing model name in request."),
        (
            "A21",
            "POST",
            "/v1/models/foo/versions/18446744073709551615:regress",
            None,
            400,
            "Failed to convert version: 18446744073709551615 to numeric.",
        ),
        ("D1", "GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("D2", "GET", f"{M}/versions/99", None, 404, f"Could not find version 99 of model {NAME}"),
        ("D3", "GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
        ("D4", "POST", f"{M}:predict", '{"foo": 1}', 400, "Missing 'inputs' or 'instances' key"),
        ("D5", "POST", f"{M}:predict", '{"instances": []}', 400, "No values in 'instances' array"),
        (
            "D6",
            "POST",
            f"{M}:predict",
            '{"instances": [{"x": "NaN"}]}',
            400,
            "Failed to process element: 0 key: x of 'instances' list. Error: INVALID_ARGUMENT: "
            'JSON Value: "NaN" Type: String is not of expected type: float',
        ),
        (
            "D8",
            "POST",
            "/v1/models/half:predict",
            '{"instances": [1.0]}',
            404,
            "Servable not found for request: Latest(half)",
        ),
    ],
)
def test_upstream_error_cases(client, case, method, path, body, status, substring):
    response = client.request(method, path, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"]
    assert substring in response.json()["error"]


def test_a10_b6_metadata(client):
    response = client.get(f"{M}/metadata")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model_spec"] == {"name": NAME, "signature_name": "", "version": "123"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "strings", "mixed", "halves", "__saved_model_init_op"} <= set(signatures)
    dims = [{"size": "-1", "name": ""}, {"size": "1", "name": ""}]
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict" and default["defaults"] == {}
    assert default["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert default["inputs"]["x"]["tensor_shape"] == {"dim": dims, "unknown_rank": False}
    assert default["outputs"]["y"]["tensor_shape"] == {"dim": dims, "unknown_rank": False}
    assert default["inputs"]["x"]["name"].endswith(":0")
    assert signatures["__saved_model_init_op"] == {
        "inputs": {},
        "outputs": {
            "__saved_model_init_op": {
                "dtype": "DT_INVALID",
                "tensor_shape": {"dim": [], "unknown_rank": True},
                "name": "NoOp",
            }
        },
        "method_name": "",
        "defaults": {},
    }
    assert signatures["mixed"]["outputs"]["total"]["tensor_shape"] == {"dim": [], "unknown_rank": False}
    assert client.get(f"{M}/labels/Version_Label/metadata").json() == body
    assert client.get(f"{M}/versions/123/metadata").json() == body
    assert "Specific" in client.get(f"{M}/versions/124/metadata").json()["error"]


def test_d7_other_paths_get_a_plain_html_404(client):
    for path in ("/index.html", "/", "/v2/models/default", "/models/default"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "Not Found" in response.text


def test_b7_prometheus_metrics_count_requests(models_config):
    client = TestClient(create_app(str(models_config), poll_seconds=0))
    for _ in range(3):
        assert client.post("/v1/models/default:predict", json={"instances": [1.0]}).status_code == 200
    assert client.post("/v1/models/default:predict", json={"instances": ["x"]}).status_code == 400
    assert client.get("/v1/models/default").status_code == 200
    response = client.get("/monitoring/prometheus/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE" in text
    assert ':tensorflow:serving:request_count_total{model_name="default",status="OK"} 4.0' in text
    assert (
        ':tensorflow:serving:request_count_total{model_name="default",status="INVALID_ARGUMENT"} 1.0' in text
    )
    assert (
        ':tensorflow:serving:request_latency_count{API="predict",entrypoint="REST",model_name="default"} 4.0'
        in text
    )


def test_version_and_label_routing_with_two_served_versions(client):
    def predict(path):
        response = client.post(f"/v1/models/routed{path}:predict", json={"instances": [2.0]})
        assert response.status_code == 200, response.text
        return response.json()["predictions"]

    assert predict("") == [4.0]  # latest: version 2 adds 3
    assert predict("/versions/1") == [3.0]
    assert predict("/versions/2") == [4.0]
    assert predict("/labels/stable") == [3.0]
    assert predict("/labels/canary") == [4.0]
    versions = [s["version"] for s in client.get("/v1/models/routed").json()["model_version_status"]]
    assert versions == ["2", "1"]  # descending
    # D9: the status endpoint ignores labels, even unknown ones, and lists every version.
    for label in ("stable", "anything"):
        response = client.get(f"/v1/models/routed/labels/{label}")
        assert response.status_code == 200
        assert [s["version"] for s in response.json()["model_version_status"]] == ["2", "1"]
    assert client.get("/v1/models/routed/versions/1").json()["model_version_status"][0]["version"] == "1"
    assert client.get("/v1/models/routed/labels/canary/metadata").json()["model_spec"]["version"] == "2"


@pytest.mark.parametrize(
    "method, path, status, substring",
    [
        # A query string is part of the path TF Serving matches (§1.1).
        ("POST", f"{M}:predict?debug=1", 400, "Malformed request"),
        ("GET", "/v1/models/default?x=1", 404, "Could not find any versions of model default?x=1"),
        ("GET", "/v1/models/default/metadata?x=1", 400, "Malformed request"),
        # Case-insensitive regexes, case-sensitive verb after the match.
        ("POST", f"/V1/MODELS/{NAME}/VERSIONS/123:PREDICT", 400, "Malformed request"),
        ("PUT", f"{M}:predict", 400, f"Malformed request: PUT {M}:predict"),
        ("DELETE", M, 400, "Malformed request"),
        ("POST", f"{M}/versions/123/labels/Version_Label:predict", 400, "Malformed request"),
        ("GET", "/v1/models/default/", 400, "Malformed request"),
        ("POST", "/v1/models/default:classify", 501, ":predict only"),
        # Found by the fault suite: an encoded newline got Starlette's plain-text 404, a version over
        # 4300 digits Python's int() error.
        ("GET", "/v1/models/a%0Ab", 404, "Could not find any versions of model a\nb"),
        ("POST", "/v1/models/a%0Ab:predict", 404, "Servable not found for request: Latest(a\nb)"),
        ("GET", f"/v1/models/default/versions/{'9' * 5000}", 400, "Failed to convert version"),
        ("GET", "/v1/models/default/versions/000123", 200, ""),  # leading zeros are fine, as in absl
    ],
)
def test_path_edge_cases(client, method, path, status, substring):
    response = client.request(method, path, content=b'{"instances": [1.0]}')
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert substring in response.json().get("error", "")


def test_case_insensitive_paths_and_percent_decoding(client):
    body = {"instances": [1.0]}
    assert client.post(f"/V1/Models/{NAME}/Versions/123:predict", json=body).json() == {"predictions": [2.5]}
    assert client.post("/v1/models/%64efault:predict", json=body).json() == {"predictions": [2.5]}
    assert client.get("/v1/models/default/METADATA").json() == STATUS_123  # only exact "metadata" is metadata
    assert (
        client.get("/v1/models/metadata").json()["error"] == "Could not find any versions of model metadata"
    )


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            {"signature_name": "strings", "instances": ["ab", {"b64": "Q2Q="}]},
            {
                "predictions": [
                    {"upper": "AB", "length": 2, "text_bytes": {"b64": "YWI="}},
                    {"upper": "CD", "length": 2, "text_bytes": {"b64": "Q2Q="}},
                ]
            },
        ),
        (
            {"signature_name": "strings", "inputs": {"text": ["ab"]}},
            {"outputs": {"upper": ["AB"], "length": [2], "text_bytes": [{"b64": "YWI="}]}},
        ),
        (
            {"signature_name": "strings", "inputs": {"text": []}},
            {"outputs": {"upper": [], "length": [], "text_bytes": []}},
        ),
        (
            {"signature_name": "mixed", "inputs": {"a": [1.5, 2.5], "b": [1, 2], "ignored": "x"}},
            {"outputs": {"sum": [2.5, 4.5], "total": 4.0}},
        ),
        (
            {"signature_name": "strings", "inputs": "ab"},
            {"outputs": {"upper": "AB", "length": 2, "text_bytes": {"b64": "YWI="}}},
        ),
    ],
)
def test_named_outputs_bytes_and_columnar_rules(client, body, expected):
    response = client.post("/v1/models/default:predict", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == expected


@pytest.mark.parametrize(
    "body, status, substring",
    [
        (
            {"signature_name": "nope", "instances": [1.0]},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        (
            {"signature_name": "mixed", "instances": [{"a": 1.0, "b": 1}]},
            400,
            "Tensor name: total has no shape information ",
        ),
        (
            {"signature_name": "mixed", "instances": [{"a": 1.0, "b": 1.0}]},
            400,
            "not of expected type: int64",
        ),
        (
            {"signature_name": "mixed", "instances": [{"a": 1.0, "b": 1, "c": 1}]},
            400,
            "does not have named input: c",
        ),
        ({"signature_name": "mixed", "instances": [{"a": 1.0}]}, 400, "keys must be equal to: a,b"),
        ({"signature_name": "mixed", "instances": [1.0]}, 400, "instances is a plain list"),
        ({"signature_name": "mixed", "inputs": [1.0]}, 400, "inputs is a plain value/list"),
        (
            {"signature_name": "mixed", "inputs": {"a": [1.0]}},
            400,
            "Missing named input: b in 'inputs' object.",
        ),
        (
            {"signature_name": "mixed", "inputs": {"a": [1.0, 2.0], "b": [1, 2, 3]}},
            400,
            "Incompatible shapes",
        ),  # TF kernel
        ({"signature_name": "strings", "instances": [1]}, 400, "not of expected type: string"),
        ({"instances": [{"b64": "AAAA"}]}, 400, "Type: Object is not of expected type: float"),
        ({"signature_name": "halves", "inputs": [1.0]}, 501, "Conversion of JSON Value: 1.0 to type: half"),
        (
            {"signature_name": "halves", "instances": [1.0]},
            400,
            "Conversion of JSON Value: 1.0 to type: half",
        ),
        ({"signature_name": "halves", "inputs": []}, 400, "Failed to write JSON value for tensor type: half"),
        (
            {"signature_name": "__saved_model_init_op", "inputs": []},
            400,
            "Failed to get input map for signature",
        ),
    ],
)
def test_predict_errors(client, body, status, substring):
    response = client.post("/v1/models/default:predict", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert substring in response.json()["error"]


@pytest.mark.parametrize(
    "path, body, status, substring",
    [
        # Bad JSON is reported before an unknown model; a bad signature_name type before either.
        ("/v1/models/nope:predict", "{", 400, "JSON Parse error"),
        ("/v1/models/nope:predict", '{"signature_name": 1, "instances": [1]}', 400, "must be a string value"),
        # The model is looked up before the body's shape is checked.
        ("/v1/models/nope:predict", '{"foo": 1}', 404, "Latest(nope)"),
        (
            "/v1/models/default/labels/nope:predict",
            '{"instances": []}',
            400,
            "Unrecognized servable version label",
        ),
        (
            "/v1/models/default:predict",
            '{"signature_name": "nope", "foo": 1}',
            400,
            "not found in signature def",
        ),
    ],
)
def test_processing_order_decides_which_error_wins(client, path, body, status, substring):
    response = client.post(path, content=body)
    assert response.status_code == status and substring in response.json()["error"]


def test_nan_infinity_round_trip_and_trailing_bytes(client):
    response = client.post(
        "/v1/models/default:predict", content=b'{"instances": [NaN, Infinity, -Infinity]} junk'
    )
    assert response.status_code == 200
    assert "[NaN, Infinity, -Infinity]" in response.text  # bare tokens on the wire
    assert math.isnan(response.json()["predictions"][0])


def test_gzip_request_body(client):
    body = gzip.compress(json.dumps({"instances": [2.0]}).encode())
    response = client.post("/v1/models/default:predict", content=body, headers={"Content-Encoding": "gzip"})
    assert response.json() == {"predictions": [3.0]}


def test_a_lone_surrogate_escape_is_a_json_error(client):
    body = b'{"signature_name": "strings", "instances": ["\\ud800"]}'  # found by the fault suite
    response = client.post("/v1/models/default:predict", content=body)
    assert response.status_code == 400 and "surrogate pair in string is invalid" in response.json()["error"]


def test_request_size_limit_gives_413(models_config):
    client = TestClient(create_app(str(models_config), poll_seconds=0, max_request_bytes=100))
    assert client.post("/v1/models/default:predict", json={"instances": [1.0]}).status_code == 200
    response = client.post("/v1/models/default:predict", json={"instances": [1.0] * 100})
    assert response.status_code == 413
    assert (
        response.headers["content-type"] == "application/json"
        and "exceeds the limit" in response.json()["error"]
    )
    bomb = gzip.compress(json.dumps({"instances": [1.0] * 1000}).encode())
    assert len(bomb) < 100
    response = client.post("/v1/models/default:predict", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413


def test_openapi_document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in (
        "/v1/models/{model_name}",
        "/v1/models/{model_name}/versions/{version}/metadata",
        "/v1/models/{model_name}/labels/{label}:predict",
        "/monitoring/prometheus/metrics",
    ):
        assert path in paths
    refs = set()

    def collect(node):
        if isinstance(node, dict):
            refs.update(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    schemas = document["components"]["schemas"]
    assert refs and all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)
