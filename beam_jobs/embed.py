"""Embedding items with pretrained encoders through `RunInference`, or passing embeddings through."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor

from beam_jobs.dead_letters import DEAD_LETTER, DeadLetter


def _to_tensor(element):
    import tensorflow as tf

    key, value = element
    return key, tf.convert_to_tensor(value)


def _to_vector(element) -> tuple[str, np.ndarray]:
    key, prediction = element
    return key, np.asarray(prediction.inference, dtype=np.float32).reshape(-1)


class EncoderModelHandler(TFModelHandlerTensor):
    """`TFModelHandlerTensor` for raw-input encoder SavedModels (see `tfrs_mm.encoders`).

    It loads with `tf.saved_model.load` rather than Keras (the encoders are
    plain `tf.Module`s), and registers the TF Text ops first: text SavedModels
    (ours and most on TF Hub) use TF Text tokenizer ops, which a fresh worker
    process has not registered, so loading would fail with "Op type not registered".
    """

    def __init__(self, model_uri: str, **kwargs):
        super().__init__(model_uri=model_uri, **kwargs)
        self.encoder_uri = model_uri

    def load_model(self):
        import tensorflow as tf
        import tensorflow_hub as hub

        from tfrs_mm.encoders import register_text_ops

        register_text_ops(required=False)
        return tf.saved_model.load(hub.resolve(self.encoder_uri))


class EmbedWithEncoder(beam.PTransform):
    """(item_id, raw input) → (item_id, [dim] float32), batched through a SavedModel encoder.

    The model is loaded once per worker by `RunInference` (a shared handle),
    and elements are batched up to `batch_size` to amortise each call.
    Inputs must already be known to decode (see `item_media`), so one bad file
    cannot fail a batch.
    """

    def __init__(self, model_path: str, batch_size: int):
        super().__init__()
        self.model_path = model_path
        self.batch_size = batch_size

    def expand(self, keyed_inputs):
        handler = KeyedModelHandler(
            EncoderModelHandler(model_uri=self.model_path, min_batch_size=1, max_batch_size=self.batch_size)
        )
        return (
            keyed_inputs
            | "ToTensor" >> beam.Map(_to_tensor)
            | "RunInference" >> RunInference(handler)
            | "ToVector" >> beam.Map(_to_vector)
        )


class ReadPrecomputedFn(beam.DoFn):
    """Path of an `.npz` (item_id [N], embedding [N, dim]) → (item_id, [dim] float32) per row.

    Rows with NaN or infinite values become dead letters; their items are
    written without that modality.
    """

    def __init__(self, modality: str, dim: int):
        self.modality = modality
        self.dim = dim

    def process(self, uri: str) -> Iterator:
        import io

        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(
            uri, mime_type="application/octet-stream", compression_type="uncompressed"
        ) as f:
            data = np.load(io.BytesIO(f.read()), allow_pickle=False)
            ids, matrix = data["item_id"], data["embedding"].astype(np.float32)
        if matrix.shape != (len(ids), self.dim):
            raise ValueError(f"{uri}: expected shape [{len(ids)}, {self.dim}], got {list(matrix.shape)}")
        finite = np.isfinite(matrix).all(axis=1)
        for item_id, vector, ok in zip(ids, matrix, finite):
            if ok:
                yield str(item_id), vector
            else:
                letter = DeadLetter(
                    f"items.{self.modality}", "non-finite embedding", "NaN or inf", uri, 0, str(item_id)
                )
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter)
