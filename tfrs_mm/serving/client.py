"""A client for TF Serving's REST API: works unchanged against `tensorflow_model_server` and `tfrs-mm serve`.

    client = ServingClient("http://127.0.0.1:8501")
    client.status("recommender")                      # GET /v1/models/recommender
    client.predict("retrieval", inputs={"user_id": ["42"], "history": [["1", "2"]]})
    client.recommend("42", history=["1", "2"], k=10)  # the recommender export, one user

Only the REST wire format is used (no gRPC, no tensorflow-serving-api), so any
Python with `httpx` can call a server. Errors come back as `ServingError`
with TF Serving's HTTP status and `{"error": ...}` message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

PADDING_ID = ""  # the exports' history padding (tfrs_mm.schema.features.PADDING_ID)


class ServingError(RuntimeError):
    """A non-2xx answer from the server: `status` is the HTTP code, `message` TF Serving's error text."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One recommended item, with the ranker's explanation when the model returns one."""

    item_id: str
    score: float
    history_attention: tuple[float, ...] = ()
    modality_weights: tuple[float, ...] = ()


class ServingClient:
    """Calls one TF Serving (or compatible) REST endpoint.

    Args:
        url: Base URL, e.g. `http://127.0.0.1:8501`.
        timeout: Seconds per request.
        transport: Optional httpx transport (tests pass an ASGI transport).
    """

    def __init__(self, url: str, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def model_path(model: str, version: int | None = None, label: str | None = None) -> str:
        """`/v1/models/{model}[/versions/{v}|/labels/{l}]`."""
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        path = f"/v1/models/{model}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += f"/labels/{label}"
        return path

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict:
        response = self._http.request(method, path, json=body)
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text}
        if response.status_code >= 400:
            raise ServingError(response.status_code, str(payload.get("error", payload)))
        return payload

    def status(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        return self._call("GET", self.model_path(model, version, label))

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        return self._call("GET", self.model_path(model, version, label) + "/metadata")

    def predict(
        self,
        model: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        instances: Sequence[Any] | None = None,
        signature_name: str | None = None,
        version: int | None = None,
        label: str | None = None,
    ) -> dict:
        """`:predict` in columnar (`inputs`) or row (`instances`) form; returns the JSON answer."""
        if (inputs is None) == (instances is None):
            raise ValueError("give exactly one of inputs (columnar) or instances (row format)")
        body: dict[str, Any] = {"inputs": inputs} if inputs is not None else {"instances": instances}
        if signature_name:
            body["signature_name"] = signature_name
        return self._call("POST", self.model_path(model, version, label) + ":predict", body)

    def recommend(
        self,
        user: str,
        history: Sequence[str] = (),
        k: int = 10,
        model: str = "recommender",
        version: int | None = None,
    ) -> list[Recommendation]:
        """Top-`k` items for one user from a `recommender` (or `retrieval`) export.

        The exports return a fixed number of items (the export's `final_k` or
        `retrieval_k`); `k` keeps the first `k` of them.
        """
        row = [str(i) for i in history] or [PADDING_ID]
        answer = self.predict(model, inputs={"user_id": [str(user)], "history": [row]}, version=version)
        outputs = answer["outputs"]
        items, scores = outputs["item_ids"][0], outputs["scores"][0]
        attention = outputs.get("history_attention", [[]])[0]
        weights = outputs.get("modality_weights", [[]])[0]
        return [
            Recommendation(
                item_id=items[i],
                score=float(scores[i]),
                history_attention=tuple(attention[i]) if attention else (),
                modality_weights=tuple(weights[i]) if weights else (),
            )
            for i in range(min(k, len(items)))
        ]
