"""The REST client against a mock transport that answers like TF Serving."""

import json

import httpx
import pytest

from tfrs_mm.serving.client import ServingClient, ServingError


def _handler(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if request.method == "GET" and path == "/v1/models/recommender":
        return httpx.Response(200, json={"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})
    if request.method == "POST" and path == "/v1/models/recommender/versions/3:predict":
        body = json.loads(request.content)
        assert body == {"inputs": {"user_id": ["u1"], "history": [["i1", "i2"]]}}
        outputs = {
            "item_ids": [["i9", "i8", "i7"]],
            "scores": [[3.0, 2.0, 1.0]],
            "history_attention": [[[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]]],
            "modality_weights": [[[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]]],
        }
        return httpx.Response(200, json={"outputs": outputs})
    if request.method == "POST" and path == "/v1/models/nope:predict":
        return httpx.Response(404, json={"error": "Servable not found for request: Latest(nope)"})
    return httpx.Response(404, text="Not Found")


@pytest.fixture
def client():
    with ServingClient("http://serving:8501/", transport=httpx.MockTransport(_handler)) as c:
        yield c


def test_status_and_paths(client):
    assert client.status("recommender")["model_version_status"][0]["state"] == "AVAILABLE"
    assert ServingClient.model_path("m", version=2) == "/v1/models/m/versions/2"
    assert ServingClient.model_path("m", label="stable") == "/v1/models/m/labels/stable"
    with pytest.raises(ValueError):
        ServingClient.model_path("m", version=1, label="x")


def test_recommend_parses_items_scores_and_explanations(client):
    recs = client.recommend("u1", history=["i1", "i2"], k=2, version=3)
    assert [r.item_id for r in recs] == ["i9", "i8"]
    assert recs[0].score == 3.0 and recs[0].history_attention == (0.7, 0.3)
    assert recs[1].modality_weights == (0.5, 0.5)


def test_errors_carry_tf_servings_status_and_message(client):
    with pytest.raises(ServingError) as info:
        client.predict("nope", inputs={"x": [1]})
    assert info.value.status == 404 and "Servable not found" in info.value.message
    with pytest.raises(ServingError) as info:
        client.metadata("other")
    assert info.value.status == 404
    with pytest.raises(ValueError, match="exactly one"):
        client.predict("recommender")


def test_client_over_a_real_socket_keeps_its_connection(tmp_path):
    from tfrs_mm.serving.server import running_server
    from tfrs_mm.serving.testing import write_half_plus_two, write_models_config

    write_half_plus_two(tmp_path / "hp2" / "1")
    config = write_models_config(tmp_path / "models.config", {"hp2": tmp_path / "hp2"})
    with running_server(str(config), port=0) as url, ServingClient(url) as client:
        assert client.status("hp2")["model_version_status"][0]["state"] == "AVAILABLE"
        for x in (1.0, 2.0, 5.0):  # several requests over the same keep-alive connection
            answer = client.predict("hp2", instances=[x])
            assert answer["predictions"] == [0.5 * x + 2.0]
        first = client._connection
        client.metadata("hp2")
        assert client._connection is first
        with pytest.raises(ServingError) as info:
            client.predict("missing", instances=[1.0])
        assert info.value.status == 404
