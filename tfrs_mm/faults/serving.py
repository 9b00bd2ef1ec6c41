"""Serving faults: fuzzed, hostile and slow clients, a hot swap under load, and memory over many requests.

`run_serving_faults(work_dir)` starts the local server in a child process (so
a crash or a hang is seen, not hidden in a thread) on a half-plus-two model
and runs four scenarios against it:

a. schemathesis fuzzes every operation of the server's own OpenAPI document
   (`/openapi.json`), with data that fits the schema and data that does not;
b. hand-written hostile requests (bad JSON, deep nesting, huge bodies, wrong
   dtypes, unknown models and versions, model names with `..` and encoded
   slashes, malformed HTTP) and slow clients that stall or dribble bytes;
c. concurrent clients predict while version 2 is published (a hot swap) and
   then a corrupt version 3: no request may fail and version 3 may never serve;
d. the server's resident memory over `requests` more requests.

A request "survives" when the server answers with the status TF Serving's
contract gives it, as a documented JSON body (`{"error": str}` for errors),
and stays up. The tools (exact and raw requests, the fuzzer) are in
`tfrs_mm.serving.probe`.
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
from pathlib import Path

from tfrs_mm.serving import probe, testing
from tfrs_mm.serving.probe import Probe

MODEL = "hp"
# The suite's server: a short read timeout so stalled clients are cut quickly, a small body limit so
# "huge" requests cross it without sending 64 MiB, and fast polling so swaps happen within the load.
SERVER_OPTIONS = {"read_timeout_seconds": 2.0, "max_request_bytes": 4 * 2**20, "poll_seconds": 0.2}
FUZZ_EXAMPLES = 12  # per operation, mode and model name: ~400 requests, well under a minute on 2 cores
_SWAP_TIMEOUT_SECONDS = 300.0  # a version may take this long to load (or fail) on a busy machine
_P = f"/v1/models/{MODEL}:predict"
_ONE = b'{"instances": [1.0]}'
_GZIP = {"Content-Encoding": "gzip"}
_HEAD = f"POST {_P} HTTP/1.1\r\nHost: x\r\n".encode()


def run_serving_faults(work_dir: str | Path, requests: int = 10_000, concurrency: int = 8) -> dict:
    """Runs the serving fault scenarios against a child-process server; returns their figures.

    Args:
      work_dir: scratch directory for the models, config and server log.
      requests: requests sent under load (c), and again for the memory run (d).
      concurrency: concurrent clients in (c) and (d).
    Returns:
      `{"faults": [{"name", "tried", "survived", "records_lost", "detail"}, ...],
      "load": {"requests", "concurrency", "errors", "p50_ms", "p99_ms", "hot_swaps",
      "corrupt_versions_served", "rss_start_mb", "rss_end_mb"}}`; latencies in
      milliseconds, memory in MiB.
    """
    work_dir = Path(work_dir)
    templates = {v: work_dir / "templates" / str(v) for v in (1, 2)}
    for version, path in templates.items():
        if not (path / "saved_model.pb").exists():
            testing.write_half_plus_two(path, offset=1.0 + version)  # version v answers y = x/2 + v + 1
    base = work_dir / "models" / MODEL
    if base.exists():
        raise FileExistsError(f"{base} exists: run_serving_faults needs a fresh work_dir")
    base.mkdir(parents=True)
    testing.publish_version(templates[1], base, 1)
    config = testing.write_models_config(work_dir / "models.config", {MODEL: base})
    log = work_dir / "server.log"
    with testing.serving_subprocess(config, log, ready_model=MODEL, **SERVER_OPTIONS) as server:
        fuzz = probe.fuzz_openapi(server.url, FUZZ_EXAMPLES, [None, {"model_name": MODEL}], work_dir / "hyp")
        faults = [_fault("schemathesis_fuzz", fuzz.sent, fuzz.problems, "every answer documented")]
        for category, probes in _hostile_probes().items():
            faults.append(_fault(category, len(probes), _send_all(server.port, probes), "as expected"))
        faults.append(_slow_clients(server.port))
        load, swap_faults = _hot_swap_under_load(server, templates[2], base, requests, concurrency)
        memory, memory_fault = _memory(server, requests, concurrency)
        alive = server.alive()
    faults += [*swap_faults, memory_fault, _server_process_fault(server, alive)]
    return {"faults": faults, "load": {**load, **memory}}


def _fault(name: str, tried: int, problems: list[str], detail: str, records_lost: int = 0) -> dict:
    """One `faults` entry; its detail shows the first problems, if there are any."""
    shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
    return {
        "name": name,
        "tried": tried,
        "survived": tried - len(problems),
        "records_lost": records_lost,
        "detail": shown or detail,
    }


def _send_all(port: int, probes: list[Probe]) -> list[str]:
    found = ((item, probe.problem(item.send(port), item.expect)) for item in probes)
    return [f"{item.label()}: {problem}" for item, problem in found if problem]


# ---- (b) hostile requests and slow clients ----


def _nested(depth: int, leaf: bytes = b"1.0", key: bytes = b"instances") -> bytes:
    return b'{"' + key + b'": ' + b"[" * depth + leaf + b"]" * depth + b"}"


_NAMES = ["..", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e", "hp%2Fversions%2F1", "%2Fetc%2Fpasswd", "hp%00"]
_NAMES += ["hp%ff%fe", "a%0Ab", "hp%252F..", "hp%", "a" * 8000]  # undecodable, newline, double-encoded, long
_MIB_CHUNK = b"100000\r\n" + b" " * 0x100000 + b"\r\n"


def _posts(expect: int | tuple[int, ...], *bodies: bytes, path: str = _P, headers=None) -> list[tuple]:
    return [("POST", path, body, expect, headers or {}) for body in bodies]


def _gets(expect: int, *paths: str) -> list[tuple]:
    return [("GET", path, None, expect, {}) for path in paths]


def _raws(expect: int, *data: bytes) -> list[tuple]:
    return [("RAW", "", item, expect, {}) for item in data]


def _invalid_json() -> list[tuple]:
    """Bad JSON gets rapidjson's errors; trailing bytes, NaN/Infinity and huge numbers are fine."""
    return [
        *_posts(400, b"", b"  ", b'{"instances": [1.0', b'{"instances": [1.0,]}', b"{'instances': [1]}"),
        *_posts(400, b"instances = [1, 2]", b"\xef\xbb\xbf" + _ONE, b"\xff\xfe" + _ONE, b"[1.0]", b"null"),
        *_posts(400, b'{"instances": ["a\x00"]}', b'{"x": "' + b"a" * 2**20),
        *_posts(200, _ONE + b"\x00trailing", b'{"instances": [NaN, Infinity, -Inf, 1e999]}'),
        *_posts(200, b'{"instances": [1' + b"0" * 100_000 + b"]}"),
    ]


def _deep_nesting() -> list[tuple]:
    """Too deep for the parser, or for a tensor (64 dimensions at most)."""
    return [
        *_posts(400, _nested(100_000), _nested(900), _nested(65), _nested(2000, key=b"inputs")),
        *_posts(400, b'{"instances": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001),
        *_posts((200, 400), _nested(30)),  # TF Serving leaves ranks to the kernels
    ]


def _huge_bodies() -> list[tuple]:
    """Big bodies under the limit are served; over it (declared, chunked or gunzipped): 413."""
    return [
        *_posts(200, json.dumps({"instances": [[1.0]] * 100_000}).encode()),
        *_posts(200, json.dumps({"inputs": [[0.5]] * 200_000}).encode()),
        *_posts(400, b'{"instances": ["' + b"x" * 3_000_000 + b'"]}'),
        *_posts(413, b" " * (SERVER_OPTIONS["max_request_bytes"] + 1)),
        *_posts(413, _ONE, headers={"Content-Length": "99999999999"}),
        *_posts(413, gzip.compress(_nested(1, b"0," * 5_000_000 + b"0"), 1), headers=_GZIP),
        *_raws(413, _HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _MIB_CHUNK * 5 + b"0\r\n\r\n"),
    ]


def _wrong_dtypes() -> list[tuple]:
    """Values the signature's dtypes refuse, and misshapen bodies."""
    mixed, strings = '"signature_name": "mixed", ', '"signature_name": "strings", '
    return [
        *_posts(400, b'{"instances": ["x"]}', b'{"instances": [true]}', b'{"instances": [null]}'),
        *_posts(400, b'{"instances": 1.0}', b'{"instances": []}', b'{"instances": [[1], ["a"]]}'),
        *_posts(400, b'{"instances": [{"b64": "AAAA"}]}', b'{"inputs": {"x": "1"}}'),
        *_posts(400, b'{"instances": [1.0], "inputs": [1.0]}', b'{"signature_name": 5, "instances": [1]}'),
        *_posts(400, ("{" + mixed + '"instances": [{"a": 1.0, "b": 1.5}]}').encode()),
        *_posts(400, ("{" + mixed + '"inputs": {"a": [1.0], "b": [18446744073709551616]}}').encode()),
        *_posts(400, ("{" + mixed + '"inputs": {"a": [1.0, 2.0], "b": [1, 2, 3]}}').encode()),
        *_posts(400, ("{" + mixed + '"instances": [1.0]}').encode()),
        *_posts(400, ("{" + strings + '"instances": [1]}').encode()),
        *_posts(400, ("{" + strings + '"instances": [{"b64": "!!"}]}').encode()),
        *_posts(400, ("{" + strings + '"instances": ["\\ud800"]}').encode()),
        *_posts(400, b'{"signature_name": "nope", "instances": [1.0]}'),
        *_posts(400, b'{"signature_name": "__saved_model_init_op", "instances": [1.0]}'),
        *_posts(501, b'{"signature_name": "halves", "inputs": {"h": [1.0]}}'),
    ]


def _unknown_models_versions() -> list[tuple]:
    """Unknown models and versions 404, labels 400; non-int64 versions 400."""
    m = f"/v1/models/{MODEL}"
    return [
        *_posts(404, _ONE, path="/v1/models/nope:predict"),
        *_posts(404, _ONE, path=f"{m}/versions/0:predict"),
        *_posts(404, _ONE, path=f"{m}/versions/99:predict"),
        *_posts(400, _ONE, path=f"{m}/versions/18446744073709551615:predict"),
        *_posts(400, _ONE, path=f"{m}/labels/nope:predict"),
        *_posts(400, _ONE, path=f"{m}/versions/-1:predict"),
        *_gets(404, "/v1/models/nope", "/v1/models/nope/metadata"),
        *_gets(404, f"{m}/versions/99", f"{m}/versions/99/metadata"),
        *_gets(400, f"{m}/versions/{'9' * 5000}", f"{m}/versions/1.5", "/v1/models"),
    ]


def _hostile_model_names() -> list[tuple]:
    """Model names are looked up, never joined to a path: `..` and `%2F` are just unknown models."""
    return [
        *[row for name in _NAMES for row in _posts(404, _ONE, path=f"/v1/models/{name}:predict")],
        *_gets(404, *[f"/v1/models/{name}{suffix}" for name in _NAMES for suffix in ("", "/metadata")]),
        *_gets(400, "/v1/models/../../etc/passwd"),
        *_posts(400, _ONE, path="/v1/models/../hp:predict"),
    ]


def _malformed_http() -> list[tuple]:
    """Wrong methods and verbs, query strings, and HTTP that no client library would send."""
    m = f"/v1/models/{MODEL}"
    return [
        *[(method, m, None, 400, {}) for method in ("DELETE", "PUT", "OPTIONS")],
        *[row for path in (_P + "?x=1", _P.upper(), _P + "x") for row in _posts(400, _ONE, path=path)],
        *_raws(400, b"GARBAGE\r\n\r\n", b"G@T / HTTP/1.1\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"),
        *_raws(400, b"GET /\x00 HTTP/1.1\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        *_raws(400, _HEAD + b"Content-Length: x\r\n\r\n"),
        *_raws(400, _HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n12345"),
        *_raws(400, _HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
        *_raws(431, _HEAD + b"X: " + b"a" * 2**20 + b"\r\n\r\n"),  # httptools buffers headers whole
        *_raws(200, b"GET /v1/models/hp HTTP/1.0\r\n\r\n"),
        *_raws(200, _HEAD + b"Expect: 100-continue\r\nContent-Length: 20\r\n\r\n" + _ONE),
    ]


def _hostile_probes() -> dict[str, list[Probe]]:
    """Category → probes, each with the status TF Serving's contract (TF_SERVING_REST.md §1.8) gives it."""
    categories = [_invalid_json, _deep_nesting, _huge_bodies, _wrong_dtypes, _unknown_models_versions]
    categories += [_hostile_model_names, _malformed_http]
    probes = {}
    for rows in categories:
        category = rows.__name__.lstrip("_")
        probes[category] = [  # rows are (method, path, body, expected statuses, headers)
            Probe(category, method, path, body, headers, expect if isinstance(expect, tuple) else (expect,))
            if method != "RAW"
            else Probe(category, raw=body, expect=(expect,))
            for method, path, body, expect, headers in rows()
        ]
    return probes


def _slow_clients(port: int) -> dict:
    """Stalled and dribbling clients, while others are served; each slow one must be timed out or served."""
    request = _HEAD + f"Content-Length: {len(_ONE)}\r\n\r\n".encode() + _ONE
    byte_delay = SERVER_OPTIONS["read_timeout_seconds"] / len(request)
    kinds = [  # (what, bytes, seconds between bytes, statuses that count as handled)
        ("silent", b"", 0.0, (408,)),
        ("half the headers", _HEAD, 0.0, (408,)),
        ("half the body", _HEAD + b"Content-Length: 100\r\n\r\n" + _ONE[:10], 0.0, (408,)),
        ("whole request, slower than the timeout", request, 2 * byte_delay, (408,)),
        ("whole request, well within the timeout", request, byte_delay / 20, (200, 408)),
    ]
    slow, others = kinds * 2, [Probe("slow_clients", "POST", _P, _ONE) for _ in range(20)]
    replies: list[probe.Reply | None] = [None] * len(slow)

    def run(index: int) -> None:
        replies[index] = probe.raw_exchange(port, slow[index][1], slow[index][2])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(slow))]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # every slow client is connected and stalling before the others come
    problems = _send_all(port, others)
    for thread in threads:
        thread.join()
    found = ((what, probe.problem(reply, expect)) for (what, *_, expect), reply in zip(slow, replies))
    problems += [f"slow client ({what}): {problem}" for what, problem in found if problem]
    detail = f"{len(slow)} slow clients timed out (408) or served while {len(others)} others were served"
    return _fault("slow_clients", len(slow) + len(others), problems, detail)


# ---- (c) hot swap and a corrupt version under load ----


def _hot_swap_under_load(
    server: testing.ServerProcess, template: Path, base: Path, requests: int, concurrency: int
) -> tuple[dict, list[dict]]:
    """Clients predict y(2) while version 2 is published, then a corrupt version 3."""
    offsets: list[float] = []  # the model offsets that answered, in order of first answer
    answered, progress = [0], itertools.count(1)
    done = threading.Event()
    swap: dict = {}

    def on_reply(_, reply: probe.Reply) -> str | None:
        answered[0] = next(progress)  # itertools.count is atomic under the GIL; `+= 1` is not
        offset = json.loads(reply.body)["predictions"][0] - 1.0  # y = x/2 + offset at x = 2
        if offset not in offsets:
            offsets.append(offset)
        return None if offset in (2.0, 3.0) else f"answered by no published version (offset {offset})"

    def swapper() -> None:
        try:
            swap["status"] = _swap_versions(server, template, base, offsets, lambda: answered[0] / requests)
        except BaseException as exc:  # re-raised below, once the clients have stopped
            swap["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=swapper)
    thread.start()
    items = [Probe("load", "POST", _P, b'{"instances": [2.0]}', expect=(200,))]
    run = probe.run_probes(server.port, items, requests, concurrency, until=done.is_set, on_reply=on_reply)
    thread.join()
    if "error" in swap:
        raise swap["error"]
    return _swap_report(server, run, offsets, swap["status"], concurrency)


def _swap_report(
    server: testing.ServerProcess,
    run: probe.ProbeRun,
    offsets: list[float],
    version_3: tuple,
    concurrency: int,
) -> tuple[dict, list[dict]]:
    """The load figures and the two faults entries of (c); version 3 is checked once more by hand."""
    state, status = version_3
    offsets = list(dict.fromkeys(offsets))  # two clients may have recorded the same new offset at once
    never = probe.exchange(server.port, "POST", f"/v1/models/{MODEL}/versions/3:predict", _ONE)
    served = int(never is None or never.status != 404) + sum(offset not in (2.0, 3.0) for offset in offsets)
    served += state == "AVAILABLE"
    load = {
        "requests": run.sent,
        "concurrency": concurrency,
        "errors": len(run.problems),
        "p50_ms": round(probe.quantile(run.latencies_ms, 0.50), 2),
        "p99_ms": round(probe.quantile(run.latencies_ms, 0.99), 2),
        "hot_swaps": max(len(offsets) - 1, 0),
        "corrupt_versions_served": served,
    }
    order = " -> ".join(f"v{offset - 1:g}" for offset in offsets)
    lost = len(run.problems)
    swap_fault = _fault("hot_swap_under_load", run.sent, run.problems, f"answers from {order}", lost)
    shown = state == "END" and status["error_code"] != "OK" and bool(status["error_message"])
    detail = f"version 3 {state}, {status['error_code']}: {status['error_message'][:100]}"
    detail += f"; predict on it: HTTP {never.status if never else None}"
    corrupt_fault = _fault("corrupt_version", 1, [] if shown and not served else [detail], detail)
    return load, [swap_fault, corrupt_fault]


def _swap_versions(
    server: testing.ServerProcess, template: Path, base: Path, offsets: list[float], progress
) -> tuple[str, dict]:
    """Version 2 a fifth into the load, a corrupt version 3 halfway; returns v3's (state, status)."""
    _wait_for(server, lambda: progress() >= 0.2, "a fifth of the load")
    testing.publish_version(template, base, 2)
    _wait_for(server, lambda: 3.0 in offsets, "version 2 to answer")
    _wait_for(server, lambda: progress() >= 0.5, "half the load")
    testing.publish_version(template, base, 3, corrupt=True)
    _wait_for(server, lambda: _version_status(server, 3)[0] in ("AVAILABLE", "END"), "version 3 to settle")
    return _version_status(server, 3)


def _wait_for(server: testing.ServerProcess, condition, what: str) -> None:
    deadline = time.monotonic() + _SWAP_TIMEOUT_SECONDS
    while not condition():
        if not server.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} (server alive: {server.alive()})")
        time.sleep(0.05)


def _version_status(server: testing.ServerProcess, version: int) -> tuple[str, dict]:
    """(state, status) of one version, ("", {}) if the server does not know it yet."""
    reply = probe.exchange(server.port, "GET", f"/v1/models/{MODEL}/versions/{version}")
    if reply is None or reply.status != 200:
        return "", {}
    (entry,) = json.loads(reply.body)["model_version_status"]
    return entry["state"], entry["status"]


# ---- (d) memory ----


def _memory(server: testing.ServerProcess, requests: int, concurrency: int) -> tuple[dict, dict]:
    """RSS after a warm-up of every request kind, and after `requests` more of them."""
    big = json.dumps({"instances": [[float(i)] for i in range(1000)]}).encode()  # ~10 KB
    mix = [  # successes and errors; unique names would show any per-name cache or metric label
        Probe("memory", "POST", _P, big),
        Probe("memory", "POST", _P, gzip.compress(big), {"Content-Encoding": "gzip"}),
        Probe("memory", "POST", _P, big[:-3], expect=(400,)),
        Probe("memory", "POST", _P, b'{"instances": ["x"]}', expect=(400,)),
        Probe("memory", "POST", "/v1/models/{unique}:predict", big, expect=(404,)),
        Probe("memory", "GET", "/v1/models/{unique}/versions/7", expect=(404,)),
        Probe("memory", "GET", f"/v1/models/{MODEL}/metadata"),
        Probe("memory", "GET", f"/v1/models/{MODEL}"),
    ]
    warm_up = probe.run_probes(server.port, mix, 100 * len(mix), concurrency)  # arenas, caches, threads
    start = server.rss_mb()
    run = probe.run_probes(server.port, mix, requests, concurrency)
    end = server.rss_mb()
    detail = f"RSS {start:.1f} -> {end:.1f} MiB over {run.sent} requests after {warm_up.sent} to warm up"
    fault = _fault("memory_run", warm_up.sent + run.sent, warm_up.problems + run.problems, detail)
    return {"rss_start_mb": round(start, 1), "rss_end_mb": round(end, 1)}, fault


def _server_process_fault(server: testing.ServerProcess, alive: bool) -> dict:
    """Alive after every scenario, a clean exit on SIGTERM, and no traceback in its log."""
    tracebacks = server.log_path.read_text(errors="replace").count("Traceback")
    detail = (
        f"alive after every scenario: {alive}; exit status after SIGTERM: {server.process.returncode}; "
        f"tracebacks in the server log: {tracebacks}"
    )
    clean = alive and server.process.returncode == 0 and tracebacks == 0
    return _fault("server_process", 1, [] if clean else [detail], detail)
