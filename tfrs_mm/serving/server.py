"""The local TF-Serving-compatible REST server: a Starlette ASGI app run by uvicorn.

    app = create_app("saved_models/models.config")          # any ASGI server, httpx.ASGITransport
    serve("saved_models/models.config", port=8501)          # blocking; SIGINT/SIGTERM shut down cleanly
    with running_server("saved_models/models.config") as url:   # background thread, free port
        httpx.get(f"{url}/v1/models/retrieval")

Routing is done on the raw request target (`scope["raw_path"]` plus the query
string), because TF Serving matches its regexes against the undecoded path
with any query attached (TF_SERVING_REST.md §1.1): `(?i)/v1/.*` goes to the
TF Serving handler, the Prometheus path and `/openapi.json` are served
beside it, anything else gets a plain HTML 404 as from libevent. Requests
must arrive within a read timeout (`protocol.py`): stalled clients get 408.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from urllib.parse import quote

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response

from tfrs_mm.serving.errors import error_body
from tfrs_mm.serving.metrics import DEFAULT_PATH as DEFAULT_METRICS_PATH
from tfrs_mm.serving.metrics import ServingMetrics
from tfrs_mm.serving.model_config import read_model_config
from tfrs_mm.serving.models import ModelManager
from tfrs_mm.serving.openapi import openapi_document
from tfrs_mm.serving.ops_audit import enable_custom_ops
from tfrs_mm.serving.protocol import DEFAULT_READ_TIMEOUT_SECONDS, deadline_protocol
from tfrs_mm.serving.routes import REST_PATH, RestApiHandler
from tfrs_mm.serving.servable import load_version

logger = logging.getLogger("tfrs_mm.serving")

# Large enough for a batch of base64 images, bounded so one client cannot exhaust memory.
DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
DEFAULT_POLL_SECONDS = 1.0  # TF Serving's --file_system_poll_wait_seconds default
OPENAPI_PATH = "/openapi.json"
_NOT_FOUND_HTML = (
    "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
)


class _TooLarge(Exception):
    pass


class _RestEndpoint:
    """The single ASGI endpoint behind every path; dispatches on the raw request target."""

    def __init__(
        self, handler: RestApiHandler, metrics: ServingMetrics, metrics_path: str, max_request_bytes: int
    ):
        self.handler, self.metrics = handler, metrics
        self.metrics_path, self.max_request_bytes = metrics_path, max_request_bytes
        self.openapi = json.dumps(openapi_document(metrics_path), indent=1).encode("utf-8")
        self.model_names = frozenset(handler.manager.model_names)

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        started = time.perf_counter()
        method, target = scope["method"], _request_target(scope)
        try:
            response, size = await self._respond(request, method, target)
        except ClientDisconnect:
            return
        except Exception as exc:  # never Starlette's plain-text 500: every answer is a JSON body
            logger.exception("%s %s failed", method, target)
            response, size = _json_response(500, error_body(f"{type(exc).__name__}: {exc}")), 0
        await response(scope, receive, send)
        self.metrics.observe_http(method, response.status_code)
        client = f"{scope['client'][0]}:{scope['client'][1]}" if scope.get("client") else "-"
        milliseconds = 1e3 * (time.perf_counter() - started)
        logger.info(
            '%s "%s %s" %d in=%dB out=%dB %.1fms',
            client,
            method,
            target,
            response.status_code,
            size,
            len(response.body),
            milliseconds,
        )

    async def _respond(self, request: Request, method: str, target: str) -> tuple[Response, int]:
        if method == "GET" and target == self.metrics_path:
            return Response(self.metrics.render(), media_type=self.metrics.content_type), 0
        if method == "GET" and target == OPENAPI_PATH:
            return Response(self.openapi, media_type="application/json"), 0
        if not REST_PATH.fullmatch(target):
            return HTMLResponse(_NOT_FOUND_HTML, status_code=404), 0
        started = time.perf_counter()
        try:
            body = await _read_body(request, self.max_request_bytes)
        except _TooLarge as exc:
            return _json_response(413, error_body(str(exc))), 0
        except zlib.error as exc:
            return _json_response(400, error_body(f"Failed to decompress gzip request body: {exc}")), 0
        result = await run_in_threadpool(self.handler.handle, method, target, body)
        # Unconfigured names share one label value, so a client cannot grow the metrics without bound.
        model_label = result.model_name if result.model_name in self.model_names else ""
        self.metrics.observe_api(model_label, result.api, result.code, time.perf_counter() - started)
        return _json_response(result.status, result.body), len(body)


def _json_response(status: int, body: bytes) -> Response:
    # TF Serving sends exactly `Content-Type: application/json`, on success and on error.
    return Response(body, status_code=status, media_type="application/json")


def _request_target(scope) -> str:
    """The path as sent (still percent-encoded) plus `?query`, which TF Serving's regexes see too."""
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else quote(scope["path"])
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge(f"Request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if request.headers.get("content-encoding", "").strip().lower() == "gzip":  # as TF Serving, on by default
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        body = decompressor.decompress(body, limit + 1)
        if len(body) > limit or decompressor.unconsumed_tail:
            raise _TooLarge(f"Decompressed request body exceeds the limit of {limit} bytes")
    return body


def create_app(
    model_config_file: str,
    *,
    custom_ops: Iterable[str] = (),
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    metrics_path: str = DEFAULT_METRICS_PATH,
) -> Starlette:
    """Builds the ASGI app and loads every model's initial versions before returning.

    Args:
      model_config_file: a text-format `ModelServerConfig` (models.config).
      custom_ops: non-stock op sets to accept (`"scann"`); their packages are
        imported so the ops register. Without them such models are refused.
      max_request_bytes: larger request bodies (after gzip) get HTTP 413.
      poll_seconds: base paths are polled this often while the app runs
        (from ASGI lifespan startup to shutdown); 0 loads once, a negative
        value loads nothing (upstream's test-only setting).
      metrics_path: where the Prometheus text endpoint answers.
    Returns:
      A Starlette app; `app.state.manager` is its `ModelManager`.
    """
    configs = read_model_config(model_config_file)
    enabled = enable_custom_ops(custom_ops)
    manager = ModelManager(configs, loader=functools.partial(load_version, custom_ops=enabled))
    if poll_seconds >= 0:
        manager.poll_once()
        manager.warn_unavailable_labels()
    metrics = ServingMetrics()
    endpoint = _RestEndpoint(RestApiHandler(manager), metrics, metrics_path, max_request_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        manager.start_polling(poll_seconds)
        try:
            yield
        finally:
            await run_in_threadpool(manager.stop_polling)

    app = Starlette(lifespan=lifespan)
    # Every request goes to the endpoint, which routes on the raw target. Not a `Route("/{path:path}")`:
    # its regex does not match a decoded newline (`%0A`), which then got Starlette's plain-text 404.
    app.router.default = endpoint
    app.state.manager, app.state.metrics = manager, metrics
    return app


class _Server(uvicorn.Server):
    """uvicorn's server, except that `run()` returns after a graceful SIGINT/SIGTERM shutdown.

    uvicorn re-raises the signal once it has shut down, which kills the process
    with status 143 (SIGTERM) or raises KeyboardInterrupt (SIGINT); `serve()`
    callers such as the CLI should simply get control back.
    """

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            try:
                yield
            finally:
                captured = getattr(self, "_captured_signals", None)  # uvicorn 0.54's record of them
                if isinstance(captured, list):
                    captured.clear()


def _uvicorn_server(
    app: Starlette, *, log_config=None, read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS, **config
) -> uvicorn.Server:
    # Our own request line replaces uvicorn's access log; in-flight requests get 10 s at shutdown.
    # TF Serving has no websockets: upgrade requests are answered as plain HTTP.
    return _Server(
        uvicorn.Config(
            app,
            http=deadline_protocol(read_timeout_seconds),
            ws="none",
            access_log=False,
            log_config=log_config,
            timeout_graceful_shutdown=10,
            **config,
        )
    )


def serve(
    model_config_file: str,
    host: str = "127.0.0.1",
    port: int = 8501,
    custom_ops: Iterable[str] = (),
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
    **app_options,
) -> None:
    """Serves until SIGINT/SIGTERM (then shuts down cleanly). `app_options` go to `create_app`.

    Binds 127.0.0.1 by default: the server has no authentication. A request
    not received whole within `read_timeout_seconds` gets 408.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "binding %s: the server has no authentication; anyone who can reach it can use it", host
        )
    app = create_app(model_config_file, custom_ops=custom_ops, **app_options)
    logger.info("Serving TF Serving's REST API on http://%s:%d", host, port)
    _uvicorn_server(
        app,
        host=host,
        port=port,
        log_config=uvicorn.config.LOGGING_CONFIG,
        read_timeout_seconds=read_timeout_seconds,
    ).run()


@contextlib.contextmanager
def running_server(
    model_config_file: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout_seconds: float = 60.0,
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
    **app_options,
) -> Iterator[str]:
    """Runs the server in a background thread; yields its base URL (`http://127.0.0.1:<port>`).

    `port=0` picks a free port. The server stops when the block exits.
    """
    app = create_app(model_config_file, **app_options)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    server = _uvicorn_server(app, read_timeout_seconds=read_timeout_seconds)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="tfrs-mm-serving", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_seconds
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the serving thread did not start")
            time.sleep(0.01)
        bound_port = sock.getsockname()[1]
        yield f"http://[{host}]:{bound_port}" if family == socket.AF_INET6 else f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
