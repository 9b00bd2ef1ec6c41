"""Tiny SavedModels in TF Serving's layout, for tests and notebooks that exercise a server.

`write_half_plus_two(path)` is the analogue of TF Serving's `half_plus_two`
test model, with extra signatures that cover string/bytes outputs, several
named outputs and a rank-0 output:

* `serving_default`: `x` float [-1, 1] → `y` = 0.5·x + offset (offset 2 by default);
* `strings`: `text` string [-1] → `upper` string, `length` int32, `text_bytes`
  string (the `_bytes` suffix makes TF Serving write base64);
* `mixed`: `a` float [-1], `b` int64 [-1] → `sum` float [-1] = a + b,
  `total` float [] = Σa (rank 0: row format cannot split it by instance);
* `halves`: `h` half [-1] → `doubled` half (a dtype the REST codec does not convert).

`publish_version(template, base, version)` adds a version as an export
should (or, with `corrupt=True`, a broken one), and `serving_subprocess(config,
log_path)` runs `serve()` in a child Python, so a test can see the server
crash or hang and measure its memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


def write_half_plus_two(path: str | Path, offset: float = 2.0) -> Path:
    """Saves the test model to `path` (a version directory, e.g. `<base>/123`); returns it."""
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 0.5 * x + offset}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def strings(self, text):
            return {"upper": tf.strings.upper(text), "length": tf.strings.length(text), "text_bytes": text}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.float32, name="a"),
                tf.TensorSpec([None], tf.int64, name="b"),
            ]
        )
        def mixed(self, a, b):
            return {"sum": a + tf.cast(b, tf.float32), "total": tf.reduce_sum(a)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float16, name="h")])
        def halves(self, h):
            return {"doubled": 2 * h}

    module = HalfPlusTwo()
    signatures = {name: getattr(module, name) for name in ("strings", "mixed", "halves")}
    signatures["serving_default"] = module.serve
    tf.saved_model.save(module, str(path), signatures=signatures)
    return Path(path)


def publish_version(template: str | Path, base: str | Path, version: int, *, corrupt: bool = False) -> Path:
    """Copies a version directory into `base` the safe way (TF_SERVING_REST.md §2.2); returns it.

    The copy goes to a hidden sibling and is renamed into place, so a polling
    server never sees it half-written. `corrupt=True` cuts its saved_model.pb
    in half first, as an interrupted copy would leave it.
    """
    staging, target = Path(base) / f".staging-{version}", Path(base) / str(version)
    shutil.copytree(template, staging)
    if corrupt:
        proto = (staging / "saved_model.pb").read_bytes()
        (staging / "saved_model.pb").write_bytes(proto[: len(proto) // 2])
    staging.rename(target)
    return target


def models_config_text(
    models: Mapping[str, str | Path],
    policies: Mapping[str, str] | None = None,
    labels: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """A models.config for `{name: base_path}`; `policies` maps a name to a policy body such as
    `"specific { versions: 1 }"`, `labels` a name to `{label: version}`."""
    entries = []
    for name, base_path in models.items():
        lines = [f'    name: "{name}"', f'    base_path: "{base_path}"', '    model_platform: "tensorflow"']
        if policies and name in policies:
            lines.append(f"    model_version_policy {{ {policies[name]} }}")
        for label, version in sorted((labels or {}).get(name, {}).items()):
            lines.append(f'    version_labels {{ key: "{label}" value: {version} }}')
        entries.append("  config {\n" + "\n".join(lines) + "\n  }")
    return "model_config_list {\n" + "\n".join(entries) + "\n}\n"


def write_models_config(path: str | Path, models: Mapping[str, str | Path], **options) -> Path:
    """Writes `models_config_text(models, **options)` to `path`; returns it."""
    Path(path).write_text(models_config_text(models, **options))
    return Path(path)


@dataclass(frozen=True)
class ServerProcess:
    """A `serve()` running in a child process: its `Popen`, port and log file."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> float:
        """Resident set size in MiB, from /proc (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for process {self.process.pid}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(server: ServerProcess, model: str, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not server.alive():
            tail = server.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{tail}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{server.url}/v1/models/{model}", timeout=10) as response,
        ):
            if b'"AVAILABLE"' in response.read():
                return
        time.sleep(0.2)
    raise RuntimeError(f"model {model!r} was not AVAILABLE within {timeout_seconds:.0f} s")


@contextlib.contextmanager
def serving_subprocess(
    model_config_file: str | Path,
    log_path: str | Path,
    *,
    ready_model: str,
    startup_timeout_seconds: float = 300.0,
    **serve_options,
) -> Iterator[ServerProcess]:
    """Runs `serve(model_config_file, port=<free port>, **serve_options)` in a child Python.

    Yields once `ready_model` has a version AVAILABLE. The child's output goes
    to `log_path` (a pipe nobody reads would fill and block it). On exit the
    child gets SIGTERM, then SIGKILL if it has not stopped within 60 s; read
    `.process.returncode` afterwards to see whether it shut down cleanly.
    """
    port = _free_port()
    code = (
        "import json, sys; from tfrs_mm.serving import serve; serve(sys.argv[1], **json.loads(sys.argv[2]))"
    )
    options = json.dumps({"port": port, **serve_options})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(model_config_file), options], stdout=log, stderr=log, env=env
        )
    server = ServerProcess(process, port, Path(log_path))
    try:
        _wait_until_serving(server, ready_model, startup_timeout_seconds)
        yield server
    finally:
        if server.alive():
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
