"""Selects tf-keras (Keras 2) behind `tf.keras` before TensorFlow is first used.

TFRS raises ImportError under Keras 3, so every model in tfrs_mm is a tf-keras
model. TensorFlow resolves `tf.keras` lazily, on the first attribute access,
from `TF_USE_LEGACY_KERAS`; setting the variable works even when TensorFlow was
imported before us, as long as nothing has touched `tf.keras` yet.
keras-hub (always Keras 3) is imported as `keras` directly and is unaffected.
"""

from __future__ import annotations

import os
import sys
import warnings

_LEGACY_VALUES = ("1", "true", "True")

KERAS3_ALREADY_LOADED = (
    "tfrs_mm needs tf-keras behind tf.keras (TensorFlow Recommenders does not support Keras 3), "
    "but tf.keras was already resolved to Keras 3 in this process. Set TF_USE_LEGACY_KERAS=1 in the "
    "environment before starting Python, or import tfrs_mm before anything that uses tf.keras."
)


def configure_keras() -> None:
    """Sets `TF_USE_LEGACY_KERAS=1` and checks that `tf.keras` is not already Keras 3.

    Raises:
        ImportError: if TensorFlow was imported and `tf.keras` already resolved to Keras 3.
    """
    if os.environ.get("TF_USE_LEGACY_KERAS") not in _LEGACY_VALUES:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        # Read the module dicts directly: attribute access would resolve tf.keras. Before
        # first use tf.keras is a lazy loader recording its choice; after, the module itself.
        keras = vars(tf).get("keras")
        state = vars(keras) if keras is not None else {}
        if state.get("_tfll_keras_version") == "keras_3" or state.get("__name__", "").startswith("keras."):
            raise ImportError(KERAS3_ALREADY_LOADED)
    _silence_tensorflow_io_plugin_warnings()


def _silence_tensorflow_io_plugin_warnings() -> None:
    # tensorflow-io 0.37.1 (its last release) is built for TF 2.16, so its two native
    # libraries (file-system plugins and native ops) fail to load on TF 2.20 and it warns
    # twice on import. We use only its pure-Python audio ops (spectrogram, melscale,
    # dbscale, masking), which run on core TF ops, and decode WAV with tf.audio, so
    # nothing we call needs the missing libraries.
    for message in (r"unable to load libtensorflow_io_plugins\.so", r"file system plugins are not loaded"):
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    # tensorflow-hub 0.16.1 (its last release) imports pkg_resources; setuptools is pinned
    # below 81 so it still exists, and the deprecation notice is not ours to act on.
    warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
