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
"""

from __future__ import annotations

from collections.abc import Mapping
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
