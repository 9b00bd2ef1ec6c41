"""Serving latency and throughput over the REST API vs the in-process SavedModel call (issue #6, item 7).

Sub-benchmarks (select with `--only a,b,...`; default: all, in this order), one per export:

  retrieval    the `retrieval` export (query tower + exact top-50 over the catalog).
  recommender  the `recommender` export (retrieval + ranker + explanations, top-10).

For each: the in-process baseline (`tf.saved_model.load(path).signatures["serving_default"]`,
single-user calls from 1, 8 and 32 threads, plus one batched call of 32 users) and the server
(`tfrs-mm serve` in a separate process, so client and server do not share a GIL) driven by
`ServingClient` (`http.client`, one keep-alive connection per client thread) at concurrency 1, 8 and
32, closed loop, with client and server CPU time per request. Every request is one user with
their real history from the test split (columnar `inputs`).

Target: server p50 minus in-process p50 at concurrency 1 <= 2 ms. It is measured with the paths
interleaved request by request, so that all see the same load on busy cores, and split into
the REST handler (JSON parse, decode, encode: `RestApiHandler.handle` called here without
HTTP), the server's endpoint (threadpool hop, ASGI, request log: from the server's own request
log lines) and HTTP + client (the rest); the same requests through the standard library's
`http.client` show how much of it is the client.

The sample-catalog workdir of bench_ranking.py (`runs/ranking-sample`) is exported under
--cache (`serving/export`, reused unless --fresh-export). Writes bench/results/serving.json and
bench/results/serving.md (results of sub-benchmarks not run this time are kept).

    .venv/bin/python bench/bench_serving.py --only retrieval,recommender
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

import _results  # noqa: E402  (bench/, the script's own directory)

import tfrs_mm  # noqa: E402,F401  (selects tf-keras before anything touches tf.keras)

logger = logging.getLogger("bench_serving")

MODELS = ("retrieval", "recommender")
CONCURRENCY = (1, 8, 32)
TARGET_OVERHEAD_MS = 2.0  # issue #6: server p50 - in-process p50 at concurrency 1
BATCH = 32  # users in the batched in-process call
# The server's own request line (tfrs_mm.serving.server._RestEndpoint): '... "POST /v1/... 200 ... 3.2ms'.
_LOG_LINE = re.compile(r'"POST /v1/models/(\w+):predict" (\d+) in=\d+B out=\d+B ([\d.]+)ms')


# ---------------------------------------------------------------------------- requests and export


def test_requests(data_dir: str) -> list[tuple[str, list[str]]]:
    """(user_id, history [H]) of every test-split record, in file order: one user per request."""
    from tfrs_mm import schema
    from tfrs_mm.schema import features as F
    from tfrs_mm.training import data as data_lib

    manifest = schema.read_manifest(data_dir)
    out = []
    for batch in data_lib.interaction_dataset(data_dir, manifest, "test", batch_size=4096):
        for user, history in zip(batch[F.USER_ID].numpy(), batch[F.HISTORY].numpy()):
            out.append((user.decode(), [h.decode() for h in history]))
    return out


def ensure_export(args) -> tuple[str, dict]:
    """models.config of the sample workdir's exports under --cache (exported once, then reused)."""
    from tfrs_mm.export import export_all

    out_dir = os.path.join(args.cache, "serving", "export")
    config = os.path.join(out_dir, "models.config")
    if args.fresh_export:
        shutil.rmtree(out_dir, ignore_errors=True)
    if not os.path.exists(config):
        if not os.path.exists(os.path.join(args.workdir, "ranking")):
            raise SystemExit(f"{args.workdir} has no ranker: run bench/bench_ranking.py --only sample first")
        start = time.perf_counter()
        export_all(args.data, args.workdir, out_dir)
        logger.info("exported %s in %.0fs", args.workdir, time.perf_counter() - start)
    paths = {}
    for name in MODELS:
        versions = sorted(int(v) for v in os.listdir(os.path.join(out_dir, name)) if v.isdigit())
        paths[name] = os.path.join(out_dir, name, str(versions[-1]))
    return config, paths


# ---------------------------------------------------------------------------- load generator


def run_cell(make_call, requests: list, total: int, concurrency: int, warmup: int, server_pid=None) -> dict:
    """Closed loop: `concurrency` threads, each with its own `make_call()`, share `total` requests.

    Each thread first sends `warmup` unmeasured requests; all then start together. Latency is
    the wall time of one call; throughput is `total` over the time from start to the last answer.
    CPU per request is this process's (all threads, TF's included) and the server's, if given.
    """
    counter = itertools.count()
    latencies, errors = [], []
    lock = threading.Lock()
    start_line = threading.Barrier(concurrency + 1)

    def worker(seed: int) -> None:
        call, close = make_call()
        try:
            for j in range(warmup):
                call(requests[(seed * 7919 + j) % len(requests)])
        except Exception as exc:  # counted below as an error of the cell
            errors.append(f"warmup: {exc!r}")
        start_line.wait()
        mine = []
        while (i := next(counter)) < total:
            started = time.perf_counter()
            try:
                call(requests[i % len(requests)])
                mine.append(time.perf_counter() - started)
            except Exception as exc:
                with lock:
                    errors.append(repr(exc))
        with lock:
            latencies.extend(mine)
        close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for t in threads:
        t.start()
    start_line.wait()
    started, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu(server_pid)
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    out = {
        **summarize(latencies),
        "requests": total,
        "errors": len(errors),
        "first_error": errors[:1],
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 1),
        "client_cpu_ms_per_request": round(1e3 * (time.process_time() - cpu) / total, 3),
    }
    if server_pid:
        out["server_cpu_ms_per_request"] = round(1e3 * (process_cpu(server_pid) - server_cpu) / total, 3)
    return out


def process_cpu(pid) -> float:
    """User + system CPU seconds of process `pid` so far (0 without one)."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarize(seconds: list[float]) -> dict:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    ms = 1e3 * np.asarray(seconds)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def inprocess_call(function):
    """A call like the server's: Python lists → tensors → signature → numpy outputs."""
    import tensorflow as tf

    def call(request):
        user, history = request
        out = function(user_id=tf.constant([user]), history=tf.constant([history]))
        return {k: v.numpy() for k, v in out.items()}

    return lambda: (call, lambda: None)


def server_call(url: str, model: str):
    from tfrs_mm.serving.client import ServingClient

    def make():
        client = ServingClient(url)

        def call(request):
            return client.predict(model, inputs={"user_id": [request[0]], "history": [request[1]]})

        return call, client.close

    return make


def stdlib_call(url: str, model: str):
    """The same request over the standard library's keep-alive `http.client`: a lean client, for scale."""
    import http.client

    host, port = url.removeprefix("http://").rsplit(":", 1)

    def make():
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        path, headers = f"/v1/models/{model}:predict", {"Content-Type": "application/json"}

        def call(request):
            body = json.dumps({"inputs": {"user_id": [request[0]], "history": [request[1]]}})
            connection.request("POST", path, body.encode(), headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {answer[:200]!r}")
            return json.loads(answer)

        return call, connection.close

    return make


def handler_call(handler, model: str):
    """The REST handler of the server code, in this process, without HTTP (for the breakdown)."""
    path = f"/v1/models/{model}:predict"

    def call(request):
        body = json.dumps({"inputs": {"user_id": [request[0]], "history": [request[1]]}}).encode()
        result = handler.handle("POST", path, body)
        if result.status != 200:
            raise RuntimeError(result.body[:200])
        return json.loads(result.body)

    return lambda: (call, lambda: None)


def batched_inprocess(function, requests: list, calls: int) -> dict:
    import tensorflow as tf

    def call(batch):
        out = function(user_id=tf.constant([u for u, _ in batch]), history=tf.constant([h for _, h in batch]))
        return {k: v.numpy() for k, v in out.items()}

    batches = [requests[i * BATCH : (i + 1) * BATCH] for i in range(len(requests) // BATCH)]
    for b in batches[:3]:
        call(b)
    seconds = []
    for n in range(calls):
        started = time.perf_counter()
        call(batches[n % len(batches)])
        seconds.append(time.perf_counter() - started)
    out = summarize(seconds)
    return {**out, "batch": BATCH, "calls": calls, "users_per_second": round(BATCH * calls / sum(seconds), 1)}


# ---------------------------------------------------------------------------- the server process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(config: str, log_path: str, timeout: float = 300.0):
    """`tfrs-mm serve` in a subprocess; returns (process, url) once every benchmarked model is AVAILABLE."""
    import httpx

    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "tfrs-mm")
    cmd = [exe, "serve", "--model_config_file", config, "--rest_api_port", str(port)]
    with open(log_path, "w") as log:  # a file, not a pipe: the request log must never block the server
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {log_path}")
        try:
            states = [
                httpx.get(f"{url}/v1/models/{m}", timeout=2).json()["model_version_status"][0]["state"]
                for m in MODELS
            ]
            if all(s == "AVAILABLE" for s in states):
                return proc, url, " ".join(cmd)
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"the server was not AVAILABLE within {timeout:.0f}s; see {log_path}")


def stop_server(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def logged_ms(log_path: str, start: int, model: str) -> tuple[list[float], int]:
    """Endpoint times (ms) the server logged for `model` after byte `start`, and the new offset."""
    with open(log_path, errors="replace") as f:
        f.seek(start)
        text = f.read()
        end = f.tell()
    ms = [float(m.group(3)) for m in _LOG_LINE.finditer(text) if m.group(1) == model]
    return ms, end


# ---------------------------------------------------------------------------- one model


def bench_model(model: str, ctx: dict, args) -> dict:
    import tensorflow as tf

    requests, total, pid = ctx["requests"], args.requests, ctx["server"].pid
    function = tf.saved_model.load(ctx["paths"][model]).signatures["serving_default"]
    out = {"export": ctx["paths"][model], "inprocess": {}, "server": {}}
    out["paired_c1"] = paired_c1(model, function, ctx, args)
    logger.info("%s paired c=1: %s", model, out["paired_c1"]["overhead"])
    for c in CONCURRENCY:
        out["inprocess"][str(c)] = run_cell(inprocess_call(function), requests, total, c, args.warmup)
        logger.info("%s in-process c=%d: %s", model, c, _brief(out["inprocess"][str(c)]))
    for c in CONCURRENCY:
        cell = run_cell(server_call(ctx["url"], model), requests, total, c, args.warmup, pid)
        out["server"][str(c)] = cell
        logger.info("%s server c=%d: %s", model, c, _brief(cell))
    out["inprocess_batched"] = batched_inprocess(function, requests, max(50, total // 8))
    out["outputs_match_in_process"] = outputs_match(function, ctx, model)
    inproc, server = out["inprocess"]["1"], out["server"]["1"]
    out["cells_c1"] = {  # the back-to-back concurrency-1 cells, for comparison with the paired figure
        "overhead_p50_ms": round(server["p50_ms"] - inproc["p50_ms"], 3),
        "server_extra_cpu_ms_per_request": round(
            server["server_cpu_ms_per_request"] - inproc["client_cpu_ms_per_request"], 3
        ),
        "client_cpu_ms_per_request": server["client_cpu_ms_per_request"],
    }
    return out


def paired_c1(model: str, function, ctx: dict, args) -> dict:
    """Concurrency 1, the paths interleaved request by request so that all see the same load.

    Paths: the in-process call, the REST handler without HTTP (this process), the server through
    `ServingClient` and through a bare `http.client` connection. The server's logged endpoint times are
    matched to its requests by order (one request at a time, so the log is in request order).
    """
    makers = {
        "inprocess": inprocess_call(function),
        "handler_no_http": handler_call(ctx["handler"], model),
        "server_client": server_call(ctx["url"], model),
        "server_stdlib": stdlib_call(ctx["url"], model),
    }
    calls = {name: make() for name, make in makers.items()}
    names = list(calls)
    for request in ctx["requests"][: args.warmup * 4]:
        for call, _ in calls.values():
            call(request)
    time.sleep(0.2)
    offset, order = os.path.getsize(ctx["log"]), []
    seconds = {name: [] for name in names}
    for i in range(args.requests):
        request = ctx["requests"][i % len(ctx["requests"])]
        for name in names[i % 4 :] + names[: i % 4]:  # rotate, so no path always goes first
            started = time.perf_counter()
            calls[name][0](request)
            seconds[name].append(time.perf_counter() - started)
            order += [name] if name.startswith("server") else []
    for _, close in calls.values():
        close()
    time.sleep(0.2)  # the last request line is written after its answer was sent
    logged, _ = logged_ms(ctx["log"], offset, model)
    out = {name: summarize(values) for name, values in seconds.items()}
    if len(logged) == len(order):
        for name in ("server_client", "server_stdlib"):
            out[f"{name}_logged"] = summarize([ms / 1e3 for ms, n in zip(logged, order) if n == name])
    out["requests"] = args.requests
    out["overhead"] = overhead(out)
    return out


def outputs_match(function, ctx: dict, model: str, count: int = 20) -> bool:
    """The server's item ids equal the in-process call's, and scores agree, for the first requests."""
    from tfrs_mm.serving.client import ServingClient

    call = inprocess_call(function)()[0]
    with ServingClient(ctx["url"]) as client:
        for user, history in ctx["requests"][:count]:
            got = client.predict(model, inputs={"user_id": [user], "history": [history]})["outputs"]
            want = call((user, history))
            if [x.decode() for x in want["item_ids"][0]] != got["item_ids"][0]:
                return False
            if not np.allclose(want["scores"][0], got["scores"][0], rtol=1e-5, atol=1e-5):
                return False
    return True


def overhead(paired: dict) -> dict:
    """Server p50 - in-process p50 at concurrency 1 (paired), and where it goes."""
    p50 = {name: (value or {}).get("p50_ms") for name, value in paired.items() if isinstance(value, dict)}
    base, server, handler = p50["inprocess"], p50["server_client"], p50["handler_no_http"]
    logged = p50.get("server_client_logged")

    def diff(a, b):
        return None if a is None or b is None else round(a - b, 3)

    total = diff(server, base)
    return {
        "inprocess_p50_ms": base,
        "server_p50_ms": server,
        "overhead_p50_ms": total,
        "target_ms": TARGET_OVERHEAD_MS,
        "met": total is not None and total <= TARGET_OVERHEAD_MS,
        "overhead_with_stdlib_client_p50_ms": diff(p50["server_stdlib"], base),
        "breakdown_p50_ms": {
            "rest_handler_json_and_codec": diff(handler, base),
            "server_endpoint_threadpool_asgi_log": diff(logged, handler),
            "http_and_client": diff(server, logged),
        },
    }


def _brief(cell: dict) -> str:
    return (
        f"p50 {cell['p50_ms']} ms, p99 {cell['p99_ms']} ms, {cell['throughput_rps']} req/s, "
        f"errors {cell['errors']}"
    )


# ---------------------------------------------------------------------------- report


def setting() -> dict:
    import httpx
    import tensorflow as tf
    import uvicorn

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "versions": {
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "httpx": httpx.__version__,
            "uvicorn": uvicorn.__version__,
        },
    }


def _f(x, digits=2):
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(results: dict) -> str:
    models = [m for m in MODELS if m in results]
    lines = [
        "# Serving benchmarks",
        "",
        "Written by `bench/bench_serving.py`: the sample-catalog exports served by `tfrs-mm serve` in its "
        "own process, called by `ServingClient` (`http.client`, one keep-alive connection per client "
        "thread), "
        "one user with their real test-split history per request, closed loop; the baseline is the "
        "in-process `signatures['serving_default']` call on the same requests. CPU columns are CPU "
        "time per request of the client process (for in-process rows: the call itself, TF threads "
        "included) and of the server process.",
        "",
        "| model | path | concurrency | requests | errors | p50 ms | p99 ms | mean ms | req/s | "
        "client CPU ms/req | server CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        r = results[m]
        for path, cells in (("in-process", r["inprocess"]), ("server (REST)", r["server"])):
            for c in sorted(cells, key=int):
                x = cells[c]
                lines.append(
                    f"| {m} | {path} | {c} | {x['requests']} | {x['errors']} | {_f(x['p50_ms'])} | "
                    f"{_f(x['p99_ms'])} | {_f(x['mean_ms'])} | {_f(x['throughput_rps'], 1)} | "
                    f"{_f(x.get('client_cpu_ms_per_request'))} | {_f(x.get('server_cpu_ms_per_request'))} |"
                )
        b = r["inprocess_batched"]
        lines.append(
            f"| {m} | in-process, batches of {b['batch']} users | 1 | {b['calls']} calls | 0 | "
            f"{_f(b['p50_ms'])} | {_f(b['p99_ms'])} | {_f(b['mean_ms'])} | "
            f"{_f(b['users_per_second'], 1)} users/s | | |"
        )
    lines += [
        "",
        f"## Server overhead at concurrency 1 (target <= {TARGET_OVERHEAD_MS:g} ms at p50)",
        "",
        "Measured with the paths interleaved request by request (same load for all): server p50 "
        "through `ServingClient` minus in-process p50, then split by p50 differences (approximate: "
        "medians do not subtract exactly). The last three columns come from the back-to-back "
        "concurrency-1 cells of the table above: server p50 minus in-process p50, the server process's "
        "CPU per request minus the in-process call's, and the client process's CPU per request.",
        "",
        "| model | requests | in-process p50 ms | server p50 ms | overhead ms | met? | overhead with "
        "`http.client` ms | REST handler (JSON + codec) ms | endpoint (threadpool, ASGI, log) ms | "
        "HTTP + client ms | back-to-back cells: overhead ms | server CPU beyond the TF call ms/req | "
        "client CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        o, cells = results[m]["paired_c1"]["overhead"], results[m].get("cells_c1", {})
        d = o["breakdown_p50_ms"]
        lines.append(
            f"| {m} | {results[m]['paired_c1']['requests']} | {_f(o['inprocess_p50_ms'])} | "
            f"{_f(o['server_p50_ms'])} | {_f(o['overhead_p50_ms'])} | {'yes' if o['met'] else 'no'} | "
            f"{_f(o['overhead_with_stdlib_client_p50_ms'])} | {_f(d['rest_handler_json_and_codec'])} | "
            f"{_f(d['server_endpoint_threadpool_asgi_log'])} | {_f(d['http_and_client'])} | "
            f"{_f(cells.get('overhead_p50_ms'))} | {_f(cells.get('server_extra_cpu_ms_per_request'))} | "
            f"{_f(cells.get('client_cpu_ms_per_request'))} |"
        )
    lines += ["", "## Settings and notes", ""]
    for m in models:
        r = results[m]
        s = r.get("setting", {})
        lines.append(
            f"- **{m}**: export `{r['export']}`; server outputs equal the in-process call's: "
            f"{'yes' if r.get('outputs_match_in_process') else 'NO'}; {s.get('cpus_usable')} usable CPUs, "
            f"1-min load average {s.get('load_average_1m_at_start')} at start and "
            f"{s.get('load_average_1m_at_end')} at end; {r.get('test_requests')} test-split requests "
            f"cycled; took {r.get('seconds')} s; `{r.get('command')}`"
        )
    for note in results[models[0]].get("notes", []) if models else []:
        lines.append(f"- {note}")
    lines.append("")
    return "\n".join(lines)


NOTES = [
    "server and client run on the same 2 CPU cores, and other benchmarks ran on them meanwhile (see the "
    "load averages), so client CPU (httpx, JSON) competes with the server: pessimistic for latency "
    "and throughput",
    "the local server is a development stand-in (TF_SERVING_REST.md §4): size production from a load "
    "test of tensorflow_model_server, not from these numbers",
    "breakdown: REST handler = `RestApiHandler.handle()` called in the client process without HTTP, "
    "minus the in-process call; endpoint = the server's own logged request time minus the handler; "
    "HTTP + client = the rest (httpx request building and JSON encoding, loopback, uvicorn's HTTP "
    "parsing, response JSON decoding)",
    "in-process concurrency uses threads calling the same signature; the batched row is one call "
    f"with {BATCH} users, for what server-side batching could gain",
]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--cache", default="/tmp/tfrs_mm_bench", help="run dirs; the export goes under it")
    parser.add_argument("--workdir", help="trained workdir (default: <cache>/runs/ranking-sample)")
    parser.add_argument("--data", help="its dataset (default: <cache>/sample/data)")
    parser.add_argument("--requests", type=int, default=500, help="measured requests per cell")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests per client thread")
    parser.add_argument("--fresh-export", action="store_true", help="export again instead of reusing")
    parser.add_argument("--report-only", action="store_true", help="rewrite serving.md from serving.json")
    args = parser.parse_args(argv)
    args.workdir = args.workdir or os.path.join(args.cache, "runs", "ranking-sample")
    args.data = args.data or os.path.join(args.cache, "sample", "data")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request would load the client
    if args.report_only:
        _results.write_markdown("serving", _results.load("serving"), markdown)
        return
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if set(names) - set(MODELS):
        parser.error(f"unknown benchmarks {sorted(set(names) - set(MODELS))}")
    command = " ".join(
        [os.path.relpath(sys.executable, REPO), "bench/bench_serving.py", *(argv or sys.argv[1:])]
    )
    run(names, args, command)


def run(names: list[str], args, command: str) -> None:
    from tfrs_mm.serving.routes import RestApiHandler
    from tfrs_mm.serving.server import create_app

    config, paths = ensure_export(args)
    ctx = {"requests": test_requests(args.data), "paths": paths}
    ctx["handler"] = RestApiHandler(create_app(config, poll_seconds=0).state.manager)
    ctx["log"] = os.path.join(args.cache, "serving", "server.log")
    proc, ctx["url"], server_cmd = start_server(config, ctx["log"])
    ctx["server"] = proc
    try:
        for name in names:
            start, env = time.perf_counter(), setting()
            result = bench_model(name, ctx, args)
            env["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
            result.update(seconds=round(time.perf_counter() - start, 1), command=command, setting=env)
            result["notes"] = [f"server: `{server_cmd}`", *NOTES]
            result["test_requests"] = len(ctx["requests"])
            _results.record("serving", name, result, markdown)
            logger.info(
                "%s done in %.0fs: overhead %s", name, result["seconds"], result["paired_c1"]["overhead"]
            )
    finally:
        logger.info("server stopped with status %s", stop_server(proc))


if __name__ == "__main__":
    main()
