"""What every exported encoder module shares.

An encoder is exported as a plain `tf.Module` that tracks only `tf.Variable`s
and `tf.function`s, never the Keras model that built them. The SavedModel then
holds no Keras metadata, so it loads with `tf.saved_model.load`,
`hub.load`/`hub.KerasLayer` and tf-keras' `load_model` (which Beam's
`TFModelHandlerTensor` uses) alike, whichever Keras built it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

OUTPUT_KEY = "embedding"


class Untracked:
    """Holds an object out of sight of TensorFlow's checkpoint dependency tracking."""

    def __init__(self, obj: Any):
        self.obj = obj


class EncoderModule(tf.Module):
    """Base class: raw input → `[B, dim]` float32 embedding.

    Subclasses define `__call__` as a `tf.function` over the default raw input
    (Beam's `TFModelHandlerTensor` calls `model(batch)`), and
    `serving_signatures()` returning named-input, named-output signatures whose
    `serving_default` feeds the same input.
    """

    def __init__(self, network: Callable, variables: list[tf.Variable], name: str):
        super().__init__(name=name)
        self._network = Untracked(network)
        # The checkpoint holds exactly these; the traced functions capture them.
        self.encoder_variables = list(variables)

    def network(self, inputs: Any) -> Any:
        """Runs the wrapped (untracked) network in inference mode."""
        return self._network.obj(inputs, training=False)

    def serving_signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        raise NotImplementedError


def describe_signatures(signatures: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Names, dtypes and shapes of each signature's inputs and outputs, for `encoder.json`."""

    def spec(s: tf.TensorSpec) -> dict[str, Any]:
        return {"dtype": s.dtype.name, "shape": s.shape.as_list()}

    described = {}
    for name, fn in sorted(signatures.items()):
        # Before saving, inputs are positional specs named by `TensorSpec.name`;
        # after reloading they are keyword arguments.
        args, kwargs = fn.structured_input_signature
        inputs = {s.name: s for s in tf.nest.flatten(args)} | dict(kwargs)
        described[name] = {
            "inputs": {k: spec(v) for k, v in sorted(inputs.items())},
            "outputs": {k: spec(v) for k, v in sorted(fn.structured_outputs.items())},
        }
    return described
