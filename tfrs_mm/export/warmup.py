"""Warmup records: `assets.extra/tf_serving_warmup_requests`, replayed by TF Serving at load.

The file is a TFRecord of `tensorflow.serving.PredictionLog` protos. They are
encoded by hand in protobuf's wire format, because `tensorflow-serving-api`
requires a newer TensorFlow than ours. Field numbers (tensorflow_serving/apis):

    PredictionLog  { PredictLog predict_log = 6; }            prediction_log.proto
    PredictLog     { PredictRequest request = 1; }            prediction_log.proto
    PredictRequest { ModelSpec model_spec = 1;                predict.proto
                     map<string, TensorProto> inputs = 2; }
    ModelSpec      { string name = 1; string signature_name = 3; }   model.proto

A map field is a repeated entry message `{ key = 1; value = 2; }`. Requests
come from real users and histories of the dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from tfrs_mm import fileio, schema
from tfrs_mm.schema import features as F
from tfrs_mm.training.ranking_data import CANDIDATE_IDS

logger = logging.getLogger(__name__)

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many
_LENGTH_DELIMITED = 2

PREDICTION_LOG_PREDICT_LOG = 6
PREDICT_LOG_REQUEST = 1
PREDICT_REQUEST_MODEL_SPEC, PREDICT_REQUEST_INPUTS = 1, 2
MODEL_SPEC_NAME, MODEL_SPEC_SIGNATURE_NAME = 1, 3
MAP_KEY, MAP_VALUE = 1, 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message)."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def tensor_proto_bytes(value) -> bytes:
    """A serialised `tensorflow.TensorProto` of an array-like (strings as UTF-8)."""
    import tensorflow as tf

    return tf.make_tensor_proto(value).SerializeToString()


def prediction_log(model_name: str, signature_name: str, inputs: Mapping[str, bytes]) -> bytes:
    """A serialised `PredictionLog` holding one `PredictRequest`.

    Args:
        model_name: `ModelSpec.name`.
        signature_name: `ModelSpec.signature_name`.
        inputs: Input name → serialised `TensorProto`.
    """
    spec = _field(MODEL_SPEC_NAME, model_name.encode()) + _field(
        MODEL_SPEC_SIGNATURE_NAME, signature_name.encode()
    )
    request = _field(PREDICT_REQUEST_MODEL_SPEC, spec)
    for key in sorted(inputs):
        entry = _field(MAP_KEY, key.encode()) + _field(MAP_VALUE, inputs[key])
        request += _field(PREDICT_REQUEST_INPUTS, entry)
    return _field(PREDICTION_LOG_PREDICT_LOG, _field(PREDICT_LOG_REQUEST, request))


def write_warmup(
    export_dir: str, model_name: str, signature_name: str, requests: Sequence[Mapping[str, np.ndarray]]
) -> str:
    """Writes `export_dir/assets.extra/tf_serving_warmup_requests`; returns its path."""
    import tensorflow as tf

    if len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(requests)} warmup requests; TF Serving reads at most {MAX_WARMUP_RECORDS}")
    directory = fileio.join(export_dir, WARMUP_DIR)
    fileio.makedirs(directory)
    path = fileio.join(directory, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            inputs = {name: tensor_proto_bytes(value) for name, value in request.items()}
            writer.write(prediction_log(model_name, signature_name, inputs))
    return path


def sample_queries(data_dir: str, count: int, splits: Sequence[str] = ("valid", "test", "train")):
    """Up to `count` (user_id, history [H]) pairs of distinct users from the dataset's interactions.

    The first split with records is used; an empty list if there are none.
    """
    if count <= 0:
        return []
    manifest = schema.read_manifest(data_dir)
    for split in splits:
        if split in manifest.files:
            queries = _first_users(data_dir, manifest, split, count)
            if queries:
                return queries
    logger.warning("no interaction records in %s: warmup requests use an unknown user", data_dir)
    return []


def _first_users(data_dir: str, manifest, split: str, count: int, max_batches: int = 20):
    from tfrs_mm.training import data as data_lib

    try:
        dataset = data_lib.interaction_dataset(data_dir, manifest, split, batch_size=1024)
    except FileNotFoundError:
        return []
    queries: dict[str, list[str]] = {}
    # Records are grouped by user: read until `count` distinct users, or give up after a few batches.
    for batch in dataset.take(max_batches):
        for user, history in zip(batch[F.USER_ID].numpy(), batch[F.HISTORY].numpy()):
            if len(queries) < count:
                queries.setdefault(user.decode(), [h.decode() for h in history])
        if len(queries) >= count:
            break
    return list(queries.items())


def query_requests(queries, count: int) -> list[dict[str, np.ndarray]]:
    """`count` retrieval requests (`user_id` [1], `history` [1, H]), cycling through `queries`."""
    queries = list(queries) or [("", [F.PADDING_ID])]
    requests = []
    for i in range(count):
        user, history = queries[i % len(queries)]
        requests.append(
            {
                F.USER_ID: np.array([user], dtype=object),
                F.HISTORY: np.array([history or [F.PADDING_ID]], dtype=object),
            }
        )
    return requests


def ranking_requests(queries, count: int, catalog: Sequence[str], num_candidates: int):
    """Retrieval requests plus `candidate_ids` [1, C]: C catalog items, a different slice per request."""
    requests = query_requests(queries, count)
    size = max(1, min(num_candidates, len(catalog)))
    for i, request in enumerate(requests):
        start = (i * size) % max(len(catalog), 1)
        picked = [catalog[(start + j) % len(catalog)] for j in range(size)] if catalog else [F.PADDING_ID]
        request[CANDIDATE_IDS] = np.array([picked], dtype=object)
    return requests
