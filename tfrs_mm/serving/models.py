"""Which versions are served: discovery on disk, version policies, labels, polling and status.

Mirrors TF Serving's FileSystemStoragePathSource + AspiredVersionsManager with
the AvailabilityPreservingPolicy (TF_SERVING_REST.md §2.2):

* every child of `base_path` whose name is an int64 is a version; the policy
  picks the aspired ones;
* a new version is loaded fully before any version it replaces is unloaded,
  and the newest serving version is kept while no aspired version is up;
* a version that fails to load shows as `END` with its error in status, is
  never served and is not retried while it stays on disk (it is retried if
  it disappears and comes back);
* unloaded versions stay in status as `END`; a missing base path changes
  nothing, an empty one unloads everything.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tfrs_mm.serving.errors import ServingError, from_exception, invalid_argument, not_found
from tfrs_mm.serving.model_config import ModelConfig
from tfrs_mm.serving.servable import LoadedVersion

logger = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
_VERSION_DIR = re.compile(r"[0-9]+", re.ASCII)
_INT64_MAX = 2**63 - 1

Loader = Callable[[str, int, str], LoadedVersion]  # (model name, version, path) → servable


@dataclass(frozen=True)
class VersionStatus:
    """One entry of `model_version_status`."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    def to_json(self) -> dict:
        return {
            "version": str(self.version),  # int64: a JSON string in protobuf JSON
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


class _Model:
    def __init__(self, config: ModelConfig):
        self.config = config
        self.statuses: dict[int, VersionStatus] = {}
        self.servables: dict[int, LoadedVersion] = {}
        self.failed: set[int] = set()  # failed while aspired: not retried until they leave the aspired set
        self.base_path_missing = False


class ModelManager:
    """Loads the configured models' versions and answers status and servable lookups (thread-safe).

    Args:
      configs: the parsed models.config entries.
      loader: loads one version directory; raises `ServingError` (or any
        exception) on failure. `servable.load_version` in production.
    """

    def __init__(self, configs: Iterable[ModelConfig], loader: Loader):
        self._models = {config.name: _Model(config) for config in configs}
        self._loader = loader
        self._lock = threading.Lock()  # guards statuses/servables; never held while loading
        self._poll_lock = threading.Lock()  # one poll at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    # ---- lookups (request path) ----

    def version_statuses(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """GetModelStatus: all known versions (descending) or one; NOT_FOUND as upstream words it."""
        model = self._models.get(name)
        with self._lock:
            statuses = dict(model.statuses) if model else {}
        if version is None:
            if not statuses:
                raise not_found(f"Could not find any versions of model {name}")
            return [statuses[v] for v in sorted(statuses, reverse=True)]
        if version not in statuses:
            raise not_found(f"Could not find version {version} of model {name}")
        return [statuses[version]]

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The servable for Latest(name), Specific(name, version) or a version label."""
        model = self._models.get(name)
        if label is not None:
            if model is None or label not in model.config.version_labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = model.config.version_labels[label]
        with self._lock:
            servables = dict(model.servables) if model else {}
        if version is None:
            if servables:
                return servables[max(servables)]
            raise not_found(f"Servable not found for request: Latest({name})")
        if version in servables:
            return servables[version]
        raise not_found(f"Servable not found for request: Specific({name}, {version})")

    # ---- polling ----

    def poll_once(self) -> None:
        """Looks at every base path once and loads/unloads versions to match the policies."""
        with self._poll_lock:
            for model in self._models.values():
                self._poll_model(model)

    def start_polling(self, interval_seconds: float) -> None:
        """Polls every `interval_seconds` in a daemon thread; ≤ 0 means no periodic polling (as upstream)."""
        if interval_seconds <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._poll_loop, args=(interval_seconds,), name="tfrs-mm-serving-poll", daemon=True
        )
        self._thread.start()

    def stop_polling(self, timeout_seconds: float = 30.0) -> None:
        """Stops the polling thread, waiting for a load in progress up to `timeout_seconds`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
            if self._thread.is_alive():
                logger.warning("model polling thread still busy after %.0f s; leaving it", timeout_seconds)
            self._thread = None

    def warn_unavailable_labels(self) -> None:
        """Upstream refuses labels on versions that are not loaded; we log them instead."""
        for model in self._models.values():
            for label, version in sorted(model.config.version_labels.items()):
                if version not in model.servables:
                    logger.warning(
                        "label %r of model %r points at version %d, which is not available",
                        label,
                        model.config.name,
                        version,
                    )

    def _poll_loop(self, interval_seconds: float) -> None:
        while not self._stop.wait(interval_seconds):
            try:
                self.poll_once()
            except Exception:
                logger.exception("polling the model base paths failed")

    def _poll_model(self, model: _Model) -> None:
        on_disk = self._versions_on_disk(model)
        if on_disk is None:
            return
        aspired = model.config.policy.select(set(on_disk))
        model.failed &= aspired
        for version in sorted(aspired - set(model.servables) - model.failed, reverse=True):
            if self._stop.is_set() and self._thread is not None:
                return
            self._load(model, version, on_disk[version])
        self._unload_unaspired(model, aspired)

    def _versions_on_disk(self, model: _Model) -> dict[int, str] | None:
        import tensorflow as tf

        base, name = model.config.base_path, model.config.name
        if not tf.io.gfile.isdir(base):
            if not model.base_path_missing:
                logger.error("Could not find base path %s for servable %s", base, name)
            model.base_path_missing = True
            return None
        model.base_path_missing = False
        versions: dict[int, str] = {}
        for child in sorted(entry.rstrip("/") for entry in tf.io.gfile.listdir(base)):
            if not _VERSION_DIR.fullmatch(child) or int(child) > _INT64_MAX:
                continue  # not a version: ignored silently, as upstream
            if int(child) in versions:
                logger.warning(
                    "%s: %s and %s are both version %d; using the first",
                    base,
                    versions[int(child)],
                    child,
                    int(child),
                )
                continue
            versions[int(child)] = tf.io.gfile.join(base, child)
        if not versions:
            logger.warning("No versions of servable %s found under base path %s", name, base)
        return versions

    def _load(self, model: _Model, version: int, path: str) -> None:
        name = model.config.name
        with self._lock:
            model.statuses[version] = VersionStatus(version, LOADING)
        logger.info("Loading servable version {name: %s version: %d} from %s", name, version, path)
        try:
            servable = self._loader(name, version, path)
        except Exception as exc:  # a failed load is the version's status, never the server's problem
            error = exc if isinstance(exc, ServingError) else from_exception(exc)
            logger.error(
                "Loading servable version {name: %s version: %d} failed: %s: %s",
                name,
                version,
                error.code,
                error.message,
            )
            with self._lock:
                model.statuses[version] = VersionStatus(version, END, error.code, error.message)
                model.failed.add(version)
            return
        with self._lock:
            model.servables[version] = servable
            model.statuses[version] = VersionStatus(version, AVAILABLE)
        logger.info("Successfully loaded servable version {name: %s version: %d}", name, version)

    def _unload_unaspired(self, model: _Model, aspired: set[int]) -> None:
        serving = sorted(v for v in model.servables if v not in aspired)
        if not serving:
            return
        keep = set()
        if aspired and not any(v in model.servables for v in aspired):
            keep = {serving[-1]}  # availability first: keep the newest until an aspired version is up
        for version in serving:
            if version in keep:
                continue
            with self._lock:
                model.statuses[version] = VersionStatus(version, UNLOADING)
                del model.servables[version]
                model.statuses[version] = VersionStatus(version, END)
            logger.info("Unloaded servable version {name: %s version: %d}", model.config.name, version)
