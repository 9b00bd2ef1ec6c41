"""`manifest.json`: the single source of truth of a dataset directory.

The Beam jobs write it and the trainer, index and export read it. It records
the record schemas (items, users when the raw dataset has `users.csv`, and
interactions), the encoder behind each embedding (handle, version, weight
hash), vocabularies, item frequencies (for logQ correction), the split
protocol and its counts, and how many records each stage read, wrote and
dead-lettered.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tfrs_mm import fileio
from tfrs_mm.schema.features import FeatureSpec

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class EncoderRecord:
    """The model behind one modality's embeddings.

    Attributes:
        modality: `text`, `image` or `audio`.
        handle: What was loaded: a `bundled://` name, TF Hub/Kaggle URL or local path.
        name: Model name, e.g. `all-MiniLM-L6-v2`.
        version: Version of the package or model that supplied the weights.
        dim: Embedding size.
        weights_sha256: SHA-256 of the weight file(s), so a change of weights is visible.
        precomputed: True when the embeddings came with the dataset.
    """

    modality: str
    handle: str
    name: str
    version: str
    dim: int
    weights_sha256: str = ""
    precomputed: bool = False


@dataclasses.dataclass(frozen=True)
class VocabularyRecord:
    """A vocabulary file (one token per line, most frequent first) and its lookup setup."""

    name: str
    file: str
    size: int
    num_oov_buckets: int = 1


@dataclasses.dataclass(frozen=True)
class StageCount:
    """Records into and out of one pipeline stage: input = written + dead-lettered + filtered.

    Dead letters are inputs that could not be used (kept with their reason in
    `dead_letter/`); filtered ones were usable but excluded on purpose by a
    configured rule (rating threshold, minimum interactions), counted by reason.
    """

    stage: str
    input: int
    written: int
    dead_lettered: int
    filtered: int = 0

    @property
    def balanced(self) -> bool:
        return self.input == self.written + self.dead_lettered + self.filtered


@dataclasses.dataclass(frozen=True)
class SplitRecord:
    """How interactions were split, and what each split holds."""

    protocol: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Contents of `manifest.json`. Paths are relative to the dataset directory."""

    item_features: tuple[FeatureSpec, ...]
    interaction_features: tuple[FeatureSpec, ...]
    user_features: tuple[FeatureSpec, ...] = ()  # () when the raw dataset has no users.csv
    encoders: tuple[EncoderRecord, ...] = ()
    vocabularies: tuple[VocabularyRecord, ...] = ()
    item_frequencies: str = ""
    split: SplitRecord = SplitRecord(protocol="none")
    stage_counts: tuple[StageCount, ...] = ()
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)
    source: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    created_by: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def embedding_dims(self) -> dict[str, int]:
        """Embedding size per modality."""
        return {e.modality: e.dim for e in self.encoders}

    def encoder(self, modality: str) -> EncoderRecord:
        return _find(self.encoders, "modality", modality, "encoder")

    def vocabulary(self, name: str) -> VocabularyRecord:
        return _find(self.vocabularies, "name", name, "vocabulary")

    def problems(self) -> list[str]:
        """Inconsistencies a reader must not accept; empty when the manifest is sound."""
        problems = [
            f"stage {c.stage!r}: input {c.input} != written {c.written} + dead-lettered {c.dead_lettered}"
            f" + filtered {c.filtered}"
            for c in self.stage_counts
            if not c.balanced
        ]
        names = {s.name for s in self.item_features}
        problems += [
            f"encoder {e.modality!r} has no {e.modality}_embedding item feature"
            for e in self.encoders
            if f"{e.modality}_embedding" not in names
        ]
        return problems

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"manifest schema_version {version!r} unsupported; expected {SCHEMA_VERSION}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"manifest has unknown keys {unknown}")
        return cls(
            item_features=tuple(FeatureSpec.from_dict(d) for d in data["item_features"]),
            interaction_features=tuple(FeatureSpec.from_dict(d) for d in data["interaction_features"]),
            user_features=tuple(FeatureSpec.from_dict(d) for d in data.get("user_features", ())),
            encoders=tuple(EncoderRecord(**d) for d in data.get("encoders", ())),
            vocabularies=tuple(VocabularyRecord(**d) for d in data.get("vocabularies", ())),
            item_frequencies=data.get("item_frequencies", ""),
            split=SplitRecord(**data.get("split", {"protocol": "none"})),
            stage_counts=tuple(StageCount(**d) for d in data.get("stage_counts", ())),
            files=dict(data.get("files", {})),
            source=dict(data.get("source", {})),
            created_by=data.get("created_by", ""),
            schema_version=version,
        )


def _find(records: Sequence[Any], key: str, value: str, what: str) -> Any:
    for record in records:
        if getattr(record, key) == value:
            return record
    known = [getattr(r, key) for r in records]
    raise KeyError(f"manifest has no {what} {value!r}; it has {known}")


def write_manifest(manifest: Manifest, data_dir: str) -> str:
    """Writes `manifest.json` into `data_dir` (local or URI) and returns its path.

    Raises:
        ValueError: if the manifest is inconsistent (see `Manifest.problems`).
    """
    problems = manifest.problems()
    if problems:
        raise ValueError("refusing to write an inconsistent manifest: " + "; ".join(problems))
    fileio.makedirs(data_dir)
    path = fileio.join(data_dir, MANIFEST_FILE)
    with fileio.open_file(path, "w") as f:
        f.write(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(data_dir: str) -> Manifest:
    """Reads and checks `manifest.json` from a dataset directory.

    Raises:
        FileNotFoundError: if there is no manifest (the directory is not a dataset directory).
        ValueError: if it is malformed or inconsistent.
    """
    path = fileio.join(data_dir, MANIFEST_FILE)
    if not fileio.exists(path):
        raise FileNotFoundError(f"{path} not found: is {data_dir} a dataset dir (`tfrs-mm preprocess`)?")
    with fileio.open_file(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
    try:
        manifest = Manifest.from_dict(data)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: malformed manifest: {e!r}") from e
    problems = manifest.problems()
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return manifest
