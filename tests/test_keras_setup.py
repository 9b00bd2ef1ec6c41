"""Importing tfrs_mm selects tf-keras behind tf.keras, or fails clearly when it is too late."""

import os
import subprocess
import sys


def run_python(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_overrides, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_import_sets_legacy_keras_before_tensorflow():
    result = run_python(
        "import tfrs_mm, os, tensorflow as tf, tensorflow_recommenders as tfrs\n"
        "print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.__name__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "tf_keras.api._v2.keras"]


def test_tensorflow_imported_first_but_keras_untouched_still_works():
    result = run_python("import tensorflow as tf\nimport tfrs_mm\nprint(tf.keras.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tf_keras.api._v2.keras"


def test_keras3_already_behind_tf_keras_raises_actionable_import_error():
    result = run_python("import tensorflow as tf\ntf.keras.layers\nimport tfrs_mm")
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "TF_USE_LEGACY_KERAS=1" in result.stderr


def test_keras_hub_keeps_keras3_beside_tf_keras():
    result = run_python(
        "import tfrs_mm, keras, keras_hub, tensorflow as tf\nprint(keras.__version__[0], tf.keras.__name__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "tf_keras.api._v2.keras"]


def test_tensorflow_io_plugin_warnings_are_silenced():
    result = run_python(
        "import tfrs_mm, tensorflow_io as tfio\nprint(tfio.__version__)", PYTHONWARNINGS="error"
    )
    assert result.returncode == 0, result.stderr
    assert "libtensorflow_io" not in result.stderr
    # Without tfrs_mm the same import warns: the silencing is doing the work.
    bare = run_python("import tensorflow_io")
    assert "unable to load libtensorflow_io_plugins.so" in bare.stderr
