"""`models.config`: TF Serving's text-format `ModelServerConfig` (TF_SERVING_REST.md §2.3).

The file is parsed by protobuf's own text-format parser against a copy of the
upstream message definitions (model_server_config.proto,
file_system_storage_path_source.proto, logging_config.proto), so `config {`
and `config: {`, commas, comments and field names behave exactly as in
`tensorflow_model_server`. The `tensorflow-serving-api` wheel that ships these
protos requires TF 2.21, hence the copy.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "tensorflow.serving"


@dataclass(frozen=True)
class VersionPolicy:
    """`model_version_policy`: which of the version directories on disk to serve.

    `kind` is `"latest"` (the `num_versions` highest; upstream's default, N = 1),
    `"all"` or `"specific"` (exactly `versions`, when present on disk).
    """

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: set[int]) -> set[int]:
        """The aspired versions among those found on disk."""
        if self.kind == "all":
            return set(on_disk)
        if self.kind == "specific":
            return on_disk & set(self.versions)
        return set(sorted(on_disk, reverse=True)[: self.num_versions])


@dataclass(frozen=True)
class ModelConfig:
    """One `config { ... }` entry. `base_path` holds the integer version directories."""

    name: str
    base_path: str
    platform: str = "tensorflow"
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: Mapping[str, int] = field(default_factory=dict)


# The upstream messages, flattened into one private file (only field names matter to the text format).
# A field is (name, number, type): a scalar, "repeated <type>", "enum <Enum>", "map<string,int64>", a message.
_MESSAGES = {
    "Latest": [("num_versions", 1, "uint32")],
    "All": [],
    "Specific": [("versions", 1, "repeated int64")],
    "ServableVersionPolicy": [("latest", 100, "Latest"), ("all", 101, "All"), ("specific", 102, "Specific")],
    "LogCollectorConfig": [("type", 1, "string"), ("filename_prefix", 2, "string")],
    "SamplingConfig": [("sampling_rate", 1, "double"), ("attributes", 2, "int32")],
    "LoggingConfig": [
        ("log_collector_config", 1, "LogCollectorConfig"),
        ("sampling_config", 2, "SamplingConfig"),
    ],
    "ModelConfig": [
        ("name", 1, "string"),
        ("base_path", 2, "string"),
        ("model_type", 3, "enum ModelType"),
        ("model_platform", 4, "string"),
        ("logging_config", 6, "LoggingConfig"),
        ("model_version_policy", 7, "ServableVersionPolicy"),
        ("version_labels", 8, "map<string,int64>"),
    ],
    "ModelConfigList": [("config", 1, "repeated ModelConfig")],
    "ModelServerConfig": [
        ("model_config_list", 1, "ModelConfigList")
    ],  # upstream's Any alternative is omitted
}
_ONEOFS = {"ServableVersionPolicy": "policy_choice", "ModelServerConfig": "config"}  # all fields in the oneof
_SCALARS = {
    "string": _F.TYPE_STRING,
    "int64": _F.TYPE_INT64,
    "uint32": _F.TYPE_UINT32,
    "int32": _F.TYPE_INT32,
    "double": _F.TYPE_DOUBLE,
}


def _field(name: str, number: int, kind: str) -> _F:
    proto = _F(name=name, number=number)
    proto.label = _F.LABEL_REPEATED if kind.startswith("repeated ") else _F.LABEL_OPTIONAL
    kind = kind.removeprefix("repeated ")
    if kind in _SCALARS:
        proto.type = _SCALARS[kind]
    else:
        proto.type = _F.TYPE_ENUM if kind.startswith("enum ") else _F.TYPE_MESSAGE
        proto.type_name = f".{_PACKAGE}.{kind.removeprefix('enum ')}"
    return proto


def _message(name: str, fields) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    if name in _ONEOFS:
        message.oneof_decl.add(name=_ONEOFS[name])
    for field_name, number, kind in fields:
        if kind == "map<string,int64>":
            entry = message.nested_type.add(
                name="".join(part.title() for part in field_name.split("_")) + "Entry"
            )
            entry.options.map_entry = True
            entry.field.extend([_field("key", 1, "string"), _field("value", 2, "int64")])
            kind = f"repeated {name}.{entry.name}"
        proto = message.field.add()
        proto.CopyFrom(_field(field_name, number, kind))
        if name in _ONEOFS:
            proto.oneof_index = 0
    return message


@functools.cache
def _server_config_class():
    """The `ModelServerConfig` message class, built once in a private descriptor pool."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tfrs_mm/serving/model_server_config.proto", package=_PACKAGE, syntax="proto3"
    )
    file_proto.message_type.extend(_message(name, fields) for name, fields in _MESSAGES.items())
    model_type = file_proto.enum_type.add(name="ModelType")
    for number, name in enumerate(("MODEL_TYPE_UNSPECIFIED", "TENSORFLOW", "OTHER")):
        model_type.value.add(name=name, number=number)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ModelServerConfig"))


def parse_model_config(text: str, source: str = "<models.config>") -> list[ModelConfig]:
    """Parses the text of a models.config; raises ValueError naming `source` on any problem."""
    message = _server_config_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ValueError(f"{source}: not a text-format ModelServerConfig: {exc}") from None
    configs = [_model_config(entry, source) for entry in message.model_config_list.config]
    names = [config.name for config in configs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{source}: model names must be unique; repeated: {', '.join(duplicates)}")
    return configs


def read_model_config(path: str) -> list[ModelConfig]:
    """Reads and parses a models.config file (any filesystem TensorFlow's gfile supports)."""
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "r") as handle:
        return parse_model_config(handle.read(), source=path)


def _model_config(entry, source: str) -> ModelConfig:
    if not entry.name:
        raise ValueError(f"{source}: every config needs a name")
    if not entry.base_path:
        raise ValueError(f"{source}: model {entry.name!r} has no base_path")
    platform = entry.model_platform or ("tensorflow" if entry.model_type == 1 else "")
    if platform != "tensorflow":
        raise ValueError(
            f'{source}: model {entry.name!r}: model_platform must be "tensorflow", got {platform!r}'
        )
    return ModelConfig(
        name=entry.name,
        base_path=entry.base_path,
        platform=platform,
        policy=_policy(entry.model_version_policy),
        version_labels=dict(entry.version_labels),
    )


def _policy(proto) -> VersionPolicy:
    choice = proto.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy(kind="all")
    if choice == "specific":
        return VersionPolicy(kind="specific", versions=tuple(proto.specific.versions))
    # Upstream serves max(num_versions, 1) latest versions.
    return VersionPolicy(kind="latest", num_versions=max(proto.latest.num_versions, 1))
