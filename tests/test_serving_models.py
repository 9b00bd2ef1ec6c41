"""models.config, version policies, polling with availability-preserving swaps, the op audit and a real
socket (TF_SERVING_REST.md §2.2, §2.3, §3.1)."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from tfrs_mm.serving import create_app, running_server
from tfrs_mm.serving.errors import ServingError
from tfrs_mm.serving.model_config import ModelConfig, VersionPolicy, parse_model_config
from tfrs_mm.serving.models import ModelManager
from tfrs_mm.serving.ops_audit import audit_meta_graph, graph_ops, refused_ops, unregistered_ops
from tfrs_mm.serving.probe import raw_exchange
from tfrs_mm.serving.servable import read_meta_graph
from tfrs_mm.serving.testing import write_half_plus_two, write_models_config

UPSTREAM_CONFIG = """
model_config_list {
  config {
    name: "retrieval"
    base_path: "/models/retrieval"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 1 } }
  }
  config: {
    name: "ranking",
    base_path: "/models/ranking",
    model_platform: "tensorflow",
    model_version_policy: { specific { versions: 3 versions: 4 } }
    version_labels { key: "stable" value: 3 }
    version_labels { key: "canary" value: 4 }
  }
  config { name: "all" base_path: "/models/all" model_platform: "tensorflow" model_version_policy { all {} } }
  # no policy: latest 1
  config { name: "plain" base_path: "/models/plain" model_type: TENSORFLOW }
}
"""


def test_parses_upstream_models_config_syntax():
    configs = {config.name: config for config in parse_model_config(UPSTREAM_CONFIG)}
    assert configs["retrieval"] == ModelConfig(
        "retrieval", "/models/retrieval", policy=VersionPolicy("latest", 1)
    )
    assert configs["ranking"].policy == VersionPolicy("specific", versions=(3, 4))
    assert dict(configs["ranking"].version_labels) == {"stable": 3, "canary": 4}
    assert configs["all"].policy.kind == "all"
    assert configs["plain"].policy == VersionPolicy("latest", 1) and configs["plain"].platform == "tensorflow"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            'model_config_list { config { name: "a" base_pat: "/x" model_platform: "tensorflow" } }',
            "base_pat",
        ),
        ('model_config_list { config { name: "a" base_path: "/x" } }', "model_platform"),
        (
            'model_config_list { config { name: "a" base_path: "/x" model_platform: "onnx" } }',
            "model_platform",
        ),
        ('model_config_list { config { base_path: "/x" model_platform: "tensorflow" } }', "needs a name"),
        (
            'model_config_list { config { name: "a" base_path: "/x" model_platform: "tensorflow" } '
            'config { name: "a" base_path: "/y" model_platform: "tensorflow" } }',
            "unique",
        ),
    ],
)
def test_rejects_bad_models_config(text, message):
    with pytest.raises(ValueError, match=message):
        parse_model_config(text)


@pytest.mark.parametrize(
    "policy, on_disk, aspired",
    [
        (VersionPolicy("latest", 1), {1, 2, 10}, {10}),
        (VersionPolicy("latest", 2), {1, 2, 10}, {2, 10}),
        (VersionPolicy("all"), {1, 2}, {1, 2}),
        (VersionPolicy("specific", versions=(2, 7)), {1, 2, 3}, {2}),
        (VersionPolicy("latest", 1), set(), set()),
    ],
)
def test_version_policies(policy, on_disk, aspired):
    assert policy.select(on_disk) == aspired


class FakeLoader:
    """Loads a version unless its directory holds a file named BROKEN; records what was served meanwhile."""

    def __init__(self):
        self.manager = None
        self.calls = []

    def __call__(self, name, version, path):
        serving = None
        with contextlib.suppress(ServingError):
            serving = self.manager.servable(name).version
        self.calls.append((version, serving))
        if (Path(path) / "BROKEN").exists():
            raise ServingError("DATA_LOSS", f"Can't parse {path}/saved_model.pb as binary proto")
        return type("Servable", (), {"version": version})()


def states(manager, name="m"):
    return [(s.version, s.state, s.error_code) for s in manager.version_statuses(name)]


def test_availability_preserving_swaps_and_failed_versions(tmp_path):
    base = tmp_path / "m"
    (base / "1").mkdir(parents=True)
    (base / "not_a_version").mkdir()
    loader = FakeLoader()
    manager = loader.manager = ModelManager([ModelConfig("m", str(base))], loader)
    manager.poll_once()
    assert states(manager) == [(1, "AVAILABLE", "OK")]

    (base / "2").mkdir()
    manager.poll_once()
    assert loader.calls[-1] == (2, 1)  # version 1 kept serving while 2 loaded
    assert states(manager) == [(2, "AVAILABLE", "OK"), (1, "END", "OK")]

    (base / "3").mkdir()
    (base / "3" / "BROKEN").touch()
    manager.poll_once()
    assert states(manager) == [(3, "END", "DATA_LOSS"), (2, "AVAILABLE", "OK"), (1, "END", "OK")]
    assert manager.version_statuses("m", 3)[0].error_message.startswith("Can't parse")
    assert manager.servable("m").version == 2  # the failed version is never served
    with pytest.raises(ServingError, match=r"Specific\(m, 3\)"):
        manager.servable("m", version=3)
    calls = len(loader.calls)
    manager.poll_once()
    assert len(loader.calls) == calls  # not retried while it stays on disk

    shutil.rmtree(base / "3")
    manager.poll_once()
    (base / "3").mkdir()  # comes back, fixed: loaded again
    manager.poll_once()
    assert states(manager)[:2] == [(3, "AVAILABLE", "OK"), (2, "END", "OK")]

    shutil.rmtree(base)  # a missing base path changes nothing
    manager.poll_once()
    assert manager.servable("m").version == 3
    base.mkdir()  # an empty one unloads everything
    manager.poll_once()
    assert [state for _, state, _ in states(manager)] == ["END", "END", "END"]
    with pytest.raises(ServingError, match=r"Latest\(m\)"):
        manager.servable("m")


def test_all_and_specific_policies_and_labels(tmp_path):
    for version in (1, 2, 3):
        (tmp_path / "m" / str(version)).mkdir(parents=True)
    configs = [
        ModelConfig("m", str(tmp_path / "m"), policy=VersionPolicy("all"), version_labels={"stable": 1}),
        ModelConfig("s", str(tmp_path / "m"), policy=VersionPolicy("specific", versions=(2, 9))),
    ]
    manager = ModelManager(configs, FakeLoader())
    manager._loader.manager = manager
    manager.poll_once()
    assert [v for v, _, _ in states(manager, "m")] == [3, 2, 1]
    assert states(manager, "s") == [(2, "AVAILABLE", "OK")]
    assert manager.servable("m", label="stable").version == 1
    with pytest.raises(ServingError, match="Unrecognized servable version label: canary"):
        manager.servable("m", label="canary")
    with pytest.raises(ServingError, match="Could not find version 9 of model s"):
        manager.version_statuses("s", 9)


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving_templates")
    return write_half_plus_two(root / "plus_two"), write_half_plus_two(root / "plus_three", offset=3.0)


def publish(template: Path, base: Path, version: int) -> None:
    """The export rule of §2.2: write to a non-numeric sibling, then rename into place."""
    staging = base / f".tmp-{version}"
    shutil.copytree(template, staging)
    staging.rename(base / str(version))


def wait_for(predicate, timeout_seconds=60.0):
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_polling_picks_up_new_versions_and_never_serves_a_corrupt_one(tmp_path, templates):
    plus_two, plus_three = templates
    base = tmp_path / "hp"
    base.mkdir()
    publish(plus_two, base, 1)
    config = write_models_config(tmp_path / "models.config", {"hp": base})
    with TestClient(create_app(str(config), poll_seconds=0.2)) as client:  # lifespan starts the polling
        assert client.post("/v1/models/hp:predict", json={"instances": [2.0]}).json() == {
            "predictions": [3.0]
        }

        publish(plus_three, base, 2)
        wait_for(
            lambda: (
                client.get("/v1/models/hp/versions/2").status_code == 200
                and client.get("/v1/models/hp/versions/2").json()["model_version_status"][0]["state"]
                == "AVAILABLE"
            )
        )
        assert client.post("/v1/models/hp:predict", json={"instances": [2.0]}).json() == {
            "predictions": [4.0]
        }
        wait_for(
            lambda: client.get("/v1/models/hp/versions/1").json()["model_version_status"][0]["state"] == "END"
        )

        (base / ".tmp-3").mkdir()
        (base / ".tmp-3" / "saved_model.pb").write_bytes(b"\x00 not a SavedModel \xff")
        (base / ".tmp-3").rename(base / "3")
        wait_for(
            lambda: (
                client.get("/v1/models/hp/versions/3").status_code == 200
                and client.get("/v1/models/hp/versions/3").json()["model_version_status"][0]["state"] == "END"
            )
        )
        status = client.get("/v1/models/hp").json()["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [
            ("3", "END"),
            ("2", "AVAILABLE"),
            ("1", "END"),
        ]
        assert status[0]["status"]["error_code"] == "DATA_LOSS"
        assert "saved_model.pb" in status[0]["status"]["error_message"]
        assert status[1]["status"] == {"error_code": "OK", "error_message": ""}
        assert client.post("/v1/models/hp:predict", json={"instances": [2.0]}).json() == {
            "predictions": [4.0]
        }
        response = client.post("/v1/models/hp/versions/3:predict", json={"instances": [2.0]})
        assert response.status_code == 404 and "Specific(hp, 3)" in response.json()["error"]


def write_with_op(template: Path, version_dir: Path, op: str) -> Path:
    """A copy of `template` whose graph also holds a node of type `op` (e.g. a ScaNN op)."""
    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(template, version_dir)
    saved_model = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
    saved_model.meta_graphs[0].graph_def.node.add(name="non_stock", op=op)
    (version_dir / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    return version_dir


def test_op_audit_refuses_non_stock_ops_at_load(tmp_path, templates):
    version_dir = write_with_op(templates[0], tmp_path / "scann" / "1", "Scann>ScannSearchBatched")
    config = write_models_config(tmp_path / "models.config", {"scann": tmp_path / "scann"})
    client = TestClient(create_app(str(config), poll_seconds=0))
    (status,) = client.get("/v1/models/scann").json()["model_version_status"]
    assert status["state"] == "END" and status["status"]["error_code"] == "NOT_FOUND"
    message = status["status"]["error_message"]
    assert "Op type not registered 'Scann>ScannSearchBatched'" in message and "--custom_ops scann" in message
    response = client.post("/v1/models/scann:predict", json={"instances": [1.0]})
    assert response.status_code == 404 and "Latest(scann)" in response.json()["error"]

    meta_graph = read_meta_graph(str(version_dir))
    with pytest.raises(ServingError, match="Scann>ScannSearchBatched"):
        audit_meta_graph(meta_graph)
    pytest.importorskip("scann")
    from tfrs_mm.serving.ops_audit import enable_custom_ops

    audit_meta_graph(meta_graph, enable_custom_ops(["scann"]))  # explicitly enabled: accepted


def test_op_audit_rules_on_graph_defs():
    from tensorflow.core.protobuf import meta_graph_pb2

    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.graph_def.node.add(name="a", op="MatMul")
    meta_graph.graph_def.node.add(name="b", op="my_function")
    function = meta_graph.graph_def.library.function.add()
    function.signature.name = "my_function"
    function.node_def.add(name="c", op="EagerPyFunc")
    function.node_def.add(name="d", op="Addons>GatherTree")
    assert graph_ops(meta_graph) == {"MatMul", "EagerPyFunc", "Addons>GatherTree"}  # calls are not ops
    assert refused_ops(graph_ops(meta_graph)) == ["Addons>GatherTree", "EagerPyFunc"]
    assert refused_ops({"Scann>ScannSearch", "TopKV2"}) == ["Scann>ScannSearch"]
    assert refused_ops({"Scann>ScannSearch"}, custom_ops=["scann"]) == []
    assert refused_ops({"IO>AudioDecodeWAV"}, custom_ops=["scann"]) == ["IO>AudioDecodeWAV"]
    # TF Text ops are stock in TF Serving (§3.3); unknown ops are reported.
    assert unregistered_ops({"RegexSplitWithOffsets", "LookupTableFindV2"}) == []
    assert unregistered_ops({"NoSuchOpAnywhere"}) == ["NoSuchOpAnywhere"]


def test_real_socket_on_loopback(tmp_path, templates):
    publish(templates[0], tmp_path / "hp", 7)
    config = write_models_config(tmp_path / "models.config", {"hp": tmp_path / "hp"})
    with running_server(str(config), poll_seconds=0) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert url.startswith("http://127.0.0.1:")
        assert http.get("/v1/models/hp").json()["model_version_status"][0]["version"] == "7"
        response = http.post("/v1/models/hp:predict", json={"inputs": [2.0, 4.0]})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.json() == {"outputs": [3.0, 4.0]}
        response = http.post("/v1/models/hp:predict?x=1", content=b'{"instances": [1.0]}')
        assert response.status_code == 400 and "Malformed request" in response.json()["error"]
        response = http.get("/nothing")
        assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")


def test_stalled_requests_get_408_and_malformed_http_a_json_error(tmp_path, templates):
    """Found by the fault suite: stalled requests held their connection for ever; bad HTTP got plain text."""
    publish(templates[0], tmp_path / "hp", 1)
    config = write_models_config(tmp_path / "models.config", {"hp": tmp_path / "hp"})
    head = b"POST /v1/models/hp:predict HTTP/1.1\r\nHost: x\r\n"
    with running_server(str(config), poll_seconds=0, read_timeout_seconds=0.5) as url:
        port = int(url.rsplit(":", 1)[1])
        for stalled in (b"", head, head + b"Content-Length: 20\r\n\r\n{"):  # nothing, headers, body
            reply = raw_exchange(port, stalled)
            assert reply.status == 408, reply
            assert "not received within 0.5 seconds" in json.loads(reply.body)["error"]
        reply = raw_exchange(port, head + b"Content-Length: 20\r\n\r\n" + b'{"instances": [1.0]}')
        assert reply.status == 200 and json.loads(reply.body) == {"predictions": [2.5]}
        reply = raw_exchange(port, head + b"Content-Length: 300000\r\n\r\n" + b" " * 300_000)  # no 431
        assert reply.status == 400 and "document is empty" in json.loads(reply.body)["error"]
        for garbage, status in ((b"GARBAGE\r\n\r\n", 400), (head + b"X: " + b"a" * 2**17 + b"\r\n\r\n", 431)):
            reply = raw_exchange(port, garbage)
            assert (reply.status, reply.content_type) == (status, "application/json"), reply
            assert set(json.loads(reply.body)) == {"error"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_returns_after_a_clean_shutdown_on_signals(tmp_path, templates, signum):
    publish(templates[0], tmp_path / "hp", 1)
    config = write_models_config(tmp_path / "models.config", {"hp": tmp_path / "hp"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = "import sys; from tfrs_mm.serving import serve; serve(sys.argv[1], port=int(sys.argv[2]))"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(config), str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/models/hp", timeout=5).status_code == 200
            except httpx.HTTPError:
                assert process.poll() is None, process.stdout.read().decode()
                return False

        wait_for(ready, timeout_seconds=120)
        process.send_signal(signum)
        assert process.wait(timeout=60) == 0  # serve() returned: no signal death, no KeyboardInterrupt
        log = process.stdout.read().decode()
        assert '"GET /v1/models/hp" 200' in log  # one line per request
        assert "Traceback" not in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
