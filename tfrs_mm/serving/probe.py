"""HTTP probes for a running server: exact, raw, slow, concurrent and fuzzed requests, and what counts
as a documented answer.

Tests and the fault suite (`tfrs_mm/faults/serving.py`) use these instead of
a full HTTP client library because they must send exactly the bytes given:
percent-encodings left alone, malformed HTTP, bodies dribbled a byte at a
time. Every call has a client-side timeout, so a server that hangs shows up
as a missing answer (`None`) instead of hanging the caller. `fuzz_openapi`
runs schemathesis (a dev dependency) against the server's `/openapi.json`.

    reply = exchange(port, "POST", "/v1/models/hp:predict", b'{"instances": [1.0]}')
    problem(reply, expect=(200,))   # None, or why the answer is not a documented one
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import itertools
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tfrs_mm.serving.openapi import openapi_document

CLIENT_TIMEOUT_SECONDS = 120.0  # an answer slower than this counts as a hang
_UNIQUE = itertools.count()


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, Content-Type and body."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Probe:
    """One request and the HTTP statuses that are the right answer to it.

    `{unique}` in `path` becomes a fresh name on every send (so no cache can
    absorb repeats). `raw`, if given, is sent on a bare socket instead of
    `method`/`path`/`body`, for HTTP that no client library would write.
    """

    category: str
    method: str = "GET"
    path: str = ""
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expect: tuple[int, ...] = (200,)
    raw: bytes | None = None

    def send(self, port: int) -> Reply | None:
        if self.raw is not None:
            return raw_exchange(port, self.raw)
        return exchange(port, self.method, self.target(), self.body, self.headers)

    def target(self) -> str:
        return self.path.replace("{unique}", f"m{next(_UNIQUE)}")

    def label(self) -> str:
        text = (self.raw or f"{self.method} {self.path}".encode()).decode("latin-1")
        return f"{self.category}: {text[:80]!r}"


def _reply(response: http.client.HTTPResponse) -> Reply:
    return Reply(response.status, response.getheader("content-type", ""), response.read())


def exchange(
    port: int, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> Reply | None:
    """One request on a fresh connection to 127.0.0.1; None if no answer came (refused, reset, timeout)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_SECONDS)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        return _reply(connection.getresponse())
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def request_on(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[Reply | None, http.client.HTTPConnection]:
    """A request on a kept-alive connection; after a failure the caller gets a fresh connection."""
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        return _reply(connection.getresponse()), connection
    except (OSError, http.client.HTTPException):
        connection.close()
        return None, http.client.HTTPConnection(connection.host, connection.port, timeout=connection.timeout)


def raw_exchange(port: int, data: bytes, byte_delay_seconds: float = 0.0) -> Reply | None:
    """Sends `data` on a bare socket (a byte at a time if `byte_delay_seconds`) and reads the answer.

    A request left incomplete stalls; the answer is then whatever the server
    sends when it gives up on it (None if it closes without one).
    """
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_SECONDS)
    except OSError:
        return None
    with sock:
        try:
            if byte_delay_seconds:
                for index in range(len(data)):
                    sock.sendall(data[index : index + 1])
                    time.sleep(byte_delay_seconds)
            else:
                sock.sendall(data)
        except OSError:
            pass  # the server gave up on us mid-send; its answer may still be readable
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            return _reply(response)
        except (OSError, http.client.HTTPException):
            return None


@functools.cache
def documented_statuses() -> frozenset[int]:
    """Every status the OpenAPI document names for a `/v1` operation (`default` aside)."""
    paths = openapi_document("/metrics")["paths"]
    return frozenset(
        int(code)
        for path, item in paths.items()
        if path.startswith("/v1/")
        for operation in item.values()
        for code in operation["responses"]
        if code.isdigit()
    )


def problem(reply: Reply | None, expect: Sequence[int]) -> str | None:
    """None if `reply` is a documented answer with one of the `expect` statuses, else what is wrong.

    Documented: a status the OpenAPI document lists, `Content-Type:
    application/json`, a JSON body, and `{"error": "<message>"}` for errors.
    """
    if reply is None:
        return "no answer (connection refused, reset or timed out)"
    if reply.status not in expect or reply.status not in documented_statuses():
        return f"HTTP {reply.status}, expected {'/'.join(map(str, expect))}: {reply.body[:160]!r}"
    if reply.content_type != "application/json":
        return f"HTTP {reply.status} with Content-Type {reply.content_type!r}: {reply.body[:160]!r}"
    try:
        value = json.loads(reply.body)  # Python's json reads NaN/Infinity, as TF Serving writes them
    except ValueError:
        return f"HTTP {reply.status} with a body that is not JSON: {reply.body[:160]!r}"
    if reply.status >= 400 and not (
        isinstance(value, dict) and list(value) == ["error"] and isinstance(value["error"], str)
    ):
        return f'HTTP {reply.status} whose body is not {{"error": message}}: {reply.body[:160]!r}'
    return None


@dataclass
class ProbeRun:
    """What `run_probes` saw: requests sent, problems found, and every request's latency (ms, sorted)."""

    sent: int
    problems: list[str]
    latencies_ms: list[float]


def run_probes(
    port: int,
    probes: Sequence[Probe],
    total: int,
    concurrency: int,
    *,
    until: Callable[[], bool] | None = None,
    on_reply: Callable[[Probe, Reply], str | None] | None = None,
) -> ProbeRun:
    """Sends `total` requests cycling through `probes` from `concurrency` kept-alive clients.

    Args:
      until: if given, the clients carry on past `total` until it returns True.
      on_reply: called with every documented answer; may return a further problem.
    """
    counter = itertools.count()
    run = ProbeRun(0, [], [])
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_SECONDS)
        while (index := next(counter)) < total or (until is not None and not until()):
            probe = probes[index % len(probes)]
            started = time.perf_counter()
            reply, connection = request_on(
                connection, probe.method, probe.target(), probe.body, probe.headers
            )
            latency = 1e3 * (time.perf_counter() - started)
            found = problem(reply, probe.expect)
            if found is None and on_reply is not None:
                found = on_reply(probe, reply)
            with lock:
                run.sent += 1
                run.latencies_ms.append(latency)
                if found:
                    run.problems.append(f"{probe.label()}: {found}")
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.latencies_ms.sort()
    return run


def fuzz_openapi(
    url: str, examples: int, path_parameters: Sequence[dict | None] = (None,), storage_dir: Path | None = None
) -> ProbeRun:
    """schemathesis on every operation of the server's `/openapi.json`; every answer must be documented.

    Each operation is fuzzed with schema-valid and schema-violating data, once
    per `path_parameters` entry (None: generated; a dict pins some, e.g. a real
    model name, where the operation has them). `/v1` answers must also pass
    `problem` (stricter than the document's `default` response). Hypothesis
    keeps its caches in `storage_dir` (for the process) instead of `./.hypothesis`.
    """
    try:
        import schemathesis
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis.configuration import set_hypothesis_home_dir
        from hypothesis.errors import Unsatisfiable
    except ImportError as exc:
        raise ImportError("fuzz_openapi needs schemathesis: pip install -r requirements/dev.txt") from exc
    import requests

    if storage_dir is not None:
        set_hypothesis_home_dir(storage_dir)

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=60)
    session, run = requests.Session(), ProbeRun(0, [], [])
    # Reproducible, no example database in the working directory, no shrinking (problems are
    # collected, not raised) and no time limits on a shared machine.
    config = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    for operation in (result.ok() for result in schema.get_all_operations()):
        for mode, fixed in itertools.product(schemathesis.GenerationMode, path_parameters):
            if fixed and not all(f"{{{name}}}" in operation.path for name in fixed):
                continue
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

            @config
            @given(case=strategy)
            def send(case) -> None:
                run.sent += 1
                found = _fuzz_problem(case, session, url)
                if found:
                    run.problems.append(found)

            with contextlib.suppress(Unsatisfiable):  # nothing to violate: an operation without inputs
                send()
    return run


def _fuzz_problem(case, session, url: str) -> str | None:
    import requests
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    try:
        response = case.call(base_url=url, session=session, timeout=CLIENT_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return f"{case.operation.label}: no answer: {exc}"
    where = f"{case.operation.label} {response.request.url[:120]}"
    if case.operation.path.startswith("/v1/"):
        content_type = ",".join(response.headers.get("content-type", []))
        found = problem(Reply(response.status_code, content_type, response.content), documented_statuses())
        if found:
            return f"{where}: {found}"
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    try:
        case.validate_response(response, checks=checks)
    except Exception as exc:  # schemathesis raises one FailureGroup naming every failed check
        return f"{where}: {str(exc).strip().splitlines()[0]}"
    return None


def quantile(ordered: Sequence[float], q: float) -> float:
    """The `q` quantile of sorted values (nearest rank); NaN if there are none."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
