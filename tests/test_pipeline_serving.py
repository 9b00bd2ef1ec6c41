"""End to end through the command line: train, `tfrs-mm index`, `export`, `serve` and `query`.

The exports are served from the `models.config` written for stock
`tensorflow_model_server` and asked over TF Serving's REST API only (the CLI's
`query`, raw `:predict`, status and metadata), as a production client would.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tfrs_mm import cli, explain
from tfrs_mm.serving import running_server
from tfrs_mm.serving.client import ServingClient

# As tests/test_training_ranking.py: small towers, big steps, so both stages train in seconds.
FAST = ["train.batch_size=64", "train.learning_rate=3e-3", "model.embedding_dim=16", "model.ranker_dim=16"]
FAST += ["train.checkpoint_every_steps=5", "train.epochs=2"]
CORE_MODELS = ("retrieval", "ranking", "recommender")
SIGNATURES = {  # DESIGN.md §2
    "retrieval": ({"user_id", "history"}, {"item_ids", "scores"}),
    "ranking": ({"user_id", "history", "candidate_ids"}, {"scores", "history_attention", "modality_weights"}),
    "recommender": ({"user_id", "history"}, {"item_ids", "scores", "history_attention", "modality_weights"}),
}
RANKED = re.compile(r"^\s*\d+\. (\S+)\s+(-?[0-9.]+)", re.MULTILINE)  # `tfrs-mm query`'s result lines


def run(argv: list[str]) -> str:
    """`tfrs-mm <argv>` in this process; returns its stdout after checking it exited 0."""
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = cli.main(argv)
    assert code == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def pipeline(sample_dataset, tmp_path_factory):
    """Trains both stages, then `tfrs-mm index` and `tfrs-mm export`; returns paths and their output."""
    root = tmp_path_factory.mktemp("pipeline")
    data, work, saved = str(sample_dataset / "data"), str(root / "work"), root / "saved_models"
    sets = [x for s in FAST for x in ("--set", s)]
    for model in ("retrieval", "ranking"):
        run(["train", model, "--data", data, "--workdir", work, "--preset", "demo", *sets])
    printed = {"index": run(["index", "--data", data, "--workdir", work])}
    printed["export"] = run(["export", "--data", data, "--workdir", work, "--out", str(saved)])
    catalog = Path(data, "vocab", "item_id.txt").read_text().split()
    users = [u for u in explain.evaluation_users(data, catalog) if len(u.history) >= 2]
    return {"data": data, "work": Path(work), "saved": saved, "printed": printed, "users": users}


@pytest.fixture(scope="module")
def server(pipeline):
    with running_server(str(pipeline["saved"] / "models.config"), poll_seconds=0) as url:
        yield url


def test_index_and_export_write_versions_and_two_configs(pipeline):
    assert "index version 1" in pipeline["printed"]["index"]
    index = pipeline["work"] / "index" / "1"
    assert {"item_ids.txt", "vectors.npy", "index.json"} <= set(os.listdir(index))
    saved, printed = pipeline["saved"], pipeline["printed"]["export"]
    for name in (*CORE_MODELS, "retrieval_scann"):
        assert (saved / name / "1" / "saved_model.pb").exists(), name
        assert re.search(rf"^{name}\s+version 1 ", printed, re.MULTILINE), name
    assert "needs custom ops ['Scann>" in printed
    stock = (saved / "models.config").read_text()
    assert re.findall(r'name: "(\w+)"', stock) == list(CORE_MODELS)  # never retrieval_scann
    for base in re.findall(r'base_path: "([^"]+)"', stock):
        assert os.path.isabs(base) and Path(base).parent == saved
    with_scann = (saved / "models_scann.config").read_text()
    assert set(re.findall(r'name: "(\w+)"', with_scann)) == {*CORE_MODELS, "retrieval_scann"}


@pytest.mark.parametrize("model", CORE_MODELS)
def test_status_and_metadata_list_the_documented_signature(server, model):
    with ServingClient(server) as client:
        (status,) = client.status(model)["model_version_status"]
        assert status == {
            "version": "1",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
        metadata = client.metadata(model)
    assert metadata["model_spec"] == {"name": model, "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert "__saved_model_init_op" in signatures
    serving_default = signatures["serving_default"]
    inputs, outputs = SIGNATURES[model]
    assert set(serving_default["inputs"]) == inputs and set(serving_default["outputs"]) == outputs
    assert serving_default["method_name"] == "tensorflow/serving/predict"
    assert {spec["dtype"] for spec in serving_default["inputs"].values()} == {"DT_STRING"}


def test_query_the_recommender_and_retrieval(server, pipeline, capsys):
    user = pipeline["users"][0]
    history = ",".join(user.history)
    argv = ["query", "--url", server, "--user", user.user_id, "--history", history, "--k", "5"]
    assert cli.main([*argv, "--model", "recommender"]) == 0
    out = capsys.readouterr().out
    ranked = RANKED.findall(out)
    assert "top 5 from recommender" in out and len(ranked) == 5
    assert out.count("because of ") == 5  # the ranker's top history item for each
    scores = [float(score) for _, score in ranked]
    assert scores == sorted(scores, reverse=True)
    assert not {item for item, _ in ranked} & set(user.history)  # history items are never recommended

    assert cli.main([*argv[:-1], "7", "--model", "retrieval"]) == 0
    out = capsys.readouterr().out
    ranked = RANKED.findall(out)
    assert "top 7 from retrieval" in out and len(ranked) == 7
    assert "because of" not in out  # retrieval has no explanation outputs
    catalog = Path(pipeline["data"], "vocab", "item_id.txt").read_text().split()
    assert {item for item, _ in ranked} <= set(catalog) - set(user.history)


def test_raw_row_format_predict_against_ranking(server, pipeline):
    """Two rows in TF Serving's row format; the ranking export scores the recommender's items as it does."""
    users = pipeline["users"][:2]
    length = min(len(u.history) for u in users)
    histories = [list(u.history[-length:]) for u in users]
    with ServingClient(server) as client:
        lists = [client.recommend(u.user_id, h, k=10) for u, h in zip(users, histories)]
        candidates = [[rec.item_id for rec in recs] for recs in lists]
        instances = [
            {"user_id": u.user_id, "history": h, "candidate_ids": c}
            for u, h, c in zip(users, histories, candidates)
        ]
        response = httpx.post(
            f"{server}/v1/models/ranking:predict", json={"instances": instances}, timeout=60
        )
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for row, recs in zip(predictions, lists):
        assert set(row) == SIGNATURES["ranking"][1]
        attention, weights = np.array(row["history_attention"]), np.array(row["modality_weights"])
        assert attention.shape == (len(recs), length) and weights.shape[0] == len(recs)
        np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-4)
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-4)
        np.testing.assert_allclose(row["scores"], [rec.score for rec in recs], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(attention, [rec.history_attention for rec in recs], atol=1e-4)


def test_custom_ops_scann_serves_retrieval_scann(pipeline, capsys):
    """The second way around the ScaNN caveat: the local server with `custom_ops=("scann",)`."""
    pytest.importorskip("scann")
    user = pipeline["users"][0]
    config = str(pipeline["saved"] / "models_scann.config")
    with running_server(config, poll_seconds=0, custom_ops=("scann",)) as url:
        argv = ["query", "--url", url, "--user", user.user_id, "--history", ",".join(user.history)]
        answers = {}
        for model in ("retrieval_scann", "retrieval"):
            assert cli.main([*argv, "--k", "10", "--model", model]) == 0
            answers[model] = [item for item, _ in RANKED.findall(capsys.readouterr().out)]
    # The sample catalog is below index.exact_below, so ScaNN searches by brute force: same top items.
    assert len(answers["retrieval_scann"]) == 10
    assert len(set(answers["retrieval_scann"]) & set(answers["retrieval"])) >= 9


def test_serve_without_scann_ops_refuses_retrieval_scann_and_serves_the_rest(pipeline):
    """`tfrs-mm serve` on models_scann.config without `--custom_ops scann`: the op audit fails that
    version, as stock TF Serving would; the core-ops exports serve; SIGTERM stops it cleanly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = str(pipeline["saved"] / "models_scann.config")
    argv = ["serve", "--model_config_file", config, "--rest_api_port", str(port)]
    code = "import sys; from tfrs_mm.cli import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process)
        with ServingClient(url) as client:
            (refused,) = client.status("retrieval_scann")["model_version_status"]
            statuses = {name: client.status(name)["model_version_status"][0] for name in CORE_MODELS}
            scann_predict = httpx.post(
                f"{url}/v1/models/retrieval_scann:predict",
                json={"inputs": {"user_id": ["u"], "history": [[""]]}},
                timeout=30,
            )
            user = pipeline["users"][0]
            recs = client.recommend(user.user_id, list(user.history), k=3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log = process.stdout.read().decode()
        process.stdout.close()
    assert refused["version"] == "1" and refused["state"] == "END", log
    assert refused["status"]["error_code"] == "NOT_FOUND"
    message = refused["status"]["error_message"]
    assert "Op type not registered 'Scann>" in message and "--custom_ops scann" in message
    assert scann_predict.status_code == 404 and "retrieval_scann" in scann_predict.json()["error"]
    assert all(s["state"] == "AVAILABLE" for s in statuses.values()), statuses
    assert len(recs) == 3
    assert "Traceback" not in log


def _wait_until_serving(url: str, process: subprocess.Popen, timeout_seconds: float = 240.0) -> None:
    """Polls status until the recommender is AVAILABLE (TF Serving has no health endpoint)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()
        try:
            status = httpx.get(f"{url}/v1/models/recommender", timeout=5)
            if status.status_code == 200 and status.json()["model_version_status"][0]["state"] == "AVAILABLE":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"tfrs-mm serve did not serve {url} within {timeout_seconds} s")
