"""Prometheus metrics on the REST port, named as TF Serving names them (TF_SERVING_REST.md §2.5).

TF Serving exports `/tensorflow/serving/request_count` (labels `model_name`,
`status`) and `/tensorflow/serving/request_latency` (µs histogram; labels
`model_name`, `API`, `entrypoint`) with `/` turned into `:`. prometheus-client
appends `_total` to counter samples, so the count reads
`:tensorflow:serving:request_count_total`. Each app has its own registry, so
several servers in one process (tests, notebooks) do not mix counts.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Histogram, generate_latest

DEFAULT_PATH = "/monitoring/prometheus/metrics"
# TF Serving's request_latency buckets: exponential, 10 µs × 1.8^i, 33 of them.
_LATENCY_BUCKETS_US = tuple(float(f"{10 * 1.8**i:.6g}") for i in range(33))


class ServingMetrics:
    """Request counts and latencies per model, API and canonical status."""

    content_type = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes

    def __init__(self):
        self.registry = CollectorRegistry()
        self._request_count = Counter(
            ":tensorflow:serving:request_count",
            "The total number of requests.",
            ["model_name", "status"],
            registry=self.registry,
        )
        self._request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            buckets=_LATENCY_BUCKETS_US,
            registry=self.registry,
        )
        self._http_requests = Counter(
            "tfrs_mm_serving_http_requests",
            "HTTP requests answered by the local server, by method and HTTP status (all paths).",
            ["method", "code"],
            registry=self.registry,
        )

    def observe_api(self, model_name: str, api: str, status: str, seconds: float) -> None:
        """Records one `/v1` request: `api` is predict/status/metadata/..., `status` a canonical code."""
        self._request_count.labels(model_name=model_name, status=status).inc()
        self._request_latency.labels(model_name=model_name, API=api, entrypoint="REST").observe(seconds * 1e6)

    def observe_http(self, method: str, code: int) -> None:
        self._http_requests.labels(method=method, code=str(code)).inc()

    def render(self) -> bytes:
        """The text exposition format (version 0.0.4)."""
        return generate_latest(self.registry)
