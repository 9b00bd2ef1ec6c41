"""NaN and infinity checks on what the trainers read, so bad input fails loudly and by name.

The Beam jobs never write a non-finite float (`schema.encode_example` refuses
one), so a NaN or inf in a dataset directory means its files were damaged or
written by another tool. Left alone, one such value turns the loss into NaN a
few steps later, with nothing to say where it came from. Tables (item
embeddings, user numeric features) are checked once at load time with numpy;
per-example interaction floats (`weight`, `rating`) are checked in the tf.data
pipeline, batch by batch, before the model sees them. A loss that still
becomes non-finite (divergence, not input) stops training with an error
instead of Keras's silent `TerminateOnNaN`.
"""

from __future__ import annotations

import contextlib
import math
import re

import numpy as np

from tfrs_mm.schema import features as F

MAX_NAMED = 5  # offending ids quoted in a message; the count says how many there are in all
_MARKER = "non-finite input feature"  # finds our assertion in a TensorFlow error message
_HINT = "the Beam jobs never write NaN or infinity: re-run `tfrs-mm preprocess` to rebuild the dataset"


class NonFiniteFeatureError(ValueError):
    """A feature the trainer reads holds NaN or infinity; the message names the feature and ids."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite although every input feature was finite."""


def nonfinite_rows(values: np.ndarray) -> np.ndarray:
    """Indices of the rows of `values` [N] or [N, d] holding a NaN or infinity.

    Summing a row first costs one [N] temporary instead of an [N, d] mask (a
    million 1280-d image embeddings would need 1.3 GB); NaN and inf survive
    the sum, and the rare finite row whose sum overflows is re-checked exactly.
    """
    values = np.asarray(values)
    if values.ndim == 1:
        return np.flatnonzero(~np.isfinite(values))
    with np.errstate(over="ignore", invalid="ignore"):
        suspects = np.flatnonzero(~np.isfinite(values.sum(axis=tuple(range(1, values.ndim)))))
    if not len(suspects):
        return suspects
    rows = values[suspects].reshape(len(suspects), -1)
    return suspects[~np.isfinite(rows).all(axis=1)]


def check_finite(feature: str, values: np.ndarray, ids: np.ndarray, id_name: str, source: str) -> None:
    """Raises `NonFiniteFeatureError` if any row of `values` is not finite.

    Args:
        feature: Feature name, e.g. `image_embedding`.
        values: [N] or [N, d] floats, row `i` belonging to `ids[i]`.
        ids: [N] ids of the rows.
        id_name: What the ids are, e.g. `item_id`.
        source: Where the values came from, e.g. `items records (items-*.tfrecord.gz)`.
    """
    bad = nonfinite_rows(values)
    if not len(bad):
        return
    named = ", ".join(f"{str(ids[i])!r} ({_first_nonfinite(values[i])})" for i in bad[:MAX_NAMED])
    more = f" and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
    raise NonFiniteFeatureError(
        f"feature {feature!r} of the {source} is NaN or infinite in {len(bad)} of {len(values)} rows: "
        f"{id_name} {named}{more}; {_HINT}"
    )


def _first_nonfinite(row: np.ndarray) -> str:
    flat = np.asarray(row, np.float64).reshape(-1)
    return str(flat[~np.isfinite(flat)][0]) if flat.size else "?"


def check_finite_records(arrays: dict[str, np.ndarray], features: list[str], key: str, source: str) -> None:
    """`check_finite` on each of `features` of records read as arrays keyed by `key` (the id)."""
    for feature in features:
        check_finite(feature, arrays[feature], arrays[key], key, source)


def float_features(specs) -> list[str]:
    """Names of the fixed-shape float32 features among `specs` (the ones that can be NaN)."""
    return [s.name for s in specs if s.dtype == "float32" and not s.varlen]


def assert_finite_batch(batch: dict, features: list[str], split: str) -> dict:
    """The parsed interaction batch, with an assertion that each of `features` is finite.

    Runs inside the tf.data pipeline, so the bad batch never reaches the model.
    The assertion names the feature, the split and the offending (user, item)
    pairs; `raise_if_nonfinite_input` turns TensorFlow's error into a
    `NonFiniteFeatureError` carrying that text.
    """
    import tensorflow as tf

    out = dict(batch)
    for name in features:
        values = batch[name]
        finite = tf.math.is_finite(values)
        if values.shape.rank > 1:
            finite = tf.reduce_all(tf.reshape(finite, [tf.shape(values)[0], -1]), axis=1)
        bad = tf.logical_not(finite)
        check = tf.debugging.Assert(
            tf.reduce_all(finite),
            [
                f"{_MARKER} {name!r} of the {split} interactions is NaN or infinite in",
                tf.reduce_sum(tf.cast(bad, tf.int32)),
                "example(s) of a batch: user_id/item_id",
                tf.strings.join(
                    [tf.boolean_mask(batch[F.USER_ID], bad), tf.boolean_mask(batch[F.ITEM_ID], bad)], "/"
                ),
                "values",
                tf.boolean_mask(values, bad),
                f"; {_HINT}",
            ],
            summarize=MAX_NAMED,
        )
        with tf.control_dependencies([check]):
            out[name] = tf.identity(values)
    return out


@contextlib.contextmanager
def nonfinite_inputs_by_name():
    """Turns a failed `assert_finite_batch` inside the block into a `NonFiniteFeatureError`."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        raise_if_nonfinite_input(error)
        raise


def raise_if_nonfinite_input(error: Exception) -> None:
    """Re-raises a TensorFlow error from `assert_finite_batch` as a `NonFiniteFeatureError`."""
    message = getattr(error, "message", str(error))
    if _MARKER not in message:
        return
    # Keep TensorFlow's text of the assertion, drop the graph node and stack that follow it.
    text = message[message.index(_MARKER) + len(_MARKER) :].split("\n")[0]
    # TensorFlow prints each logged tensor in brackets and escapes the quotes of strings.
    text = re.sub(r"\]\s*\[", " ", text).replace("[", "").replace("]", "").replace("\\'", "'")
    text = text.replace(" ;", ";")
    raise NonFiniteFeatureError("feature" + text) from None


def nonfinite_loss_callback():
    """A Keras callback that raises `NonFiniteLossError` at the first NaN or infinite loss.

    Keras's `TerminateOnNaN` stops quietly and the run then saves NaN weights
    and writes metrics as if it had succeeded. Place this callback before
    `BackupAndRestore`, so the failing step is never saved to the backup.
    """
    import tensorflow as tf

    class RaiseOnNonFiniteLoss(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self._epoch = 0
            self._supports_tf_logs = True  # reads one scalar; other logs need not be copied to numpy

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise NonFiniteLossError(
                    f"training loss became {float(loss)} at epoch {self._epoch + 1}, step {batch + 1}, "
                    "although every input feature was checked finite: the optimisation diverged "
                    "(try a lower train.learning_rate)"
                )

    return RaiseOnNonFiniteLoss()
