"""RetrievalModel: toy training, a hand-computed logQ loss, and cross-replica negatives."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfrs_mm.config import ModelConfig
from tfrs_mm.models import build_retrieval_model, random_item_table, sampling_probabilities

DIMS = {"text": 8, "image": 6, "audio": 4}
CONFIG = ModelConfig(embedding_dim=16, id_embedding_dim=8, modality_dropout=0.0, temperature=0.1)
USERS = ["u0", "u1", "u2", "u3"]
TABLE = random_item_table(30, DIMS, seed=0)
FREQUENCIES = np.arange(30) % 7  # includes zero counts: they get the floor
FEATURES = {
    "user_id": tf.constant(["u0", "u1", "u2"]),
    "item_id": tf.constant(["item_1", "item_4", "item_25"]),
    "history": tf.constant([["", "item_2", "item_3"], ["", "", ""], ["item_5", "item_6", "item_7"]]),
}


def make_model(config: ModelConfig = CONFIG, **kwargs):
    tf.keras.utils.set_random_seed(0)
    train_items = TABLE.item_ids[:20].tolist()
    return build_retrieval_model(TABLE, train_items, USERS, config, item_frequencies=FREQUENCIES, **kwargs)


def softmax_cross_entropy_sum(logits: np.ndarray) -> float:
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-np.trace(log_probs))


def test_sampling_probabilities_floor_zero_counts():
    probs = sampling_probabilities(np.array([0, 3, 1]), 3, floor=0.5)
    np.testing.assert_allclose(probs, np.array([0.5, 0.5, 3, 1]) / 5.0)
    with pytest.raises(ValueError):
        sampling_probabilities(np.array([1, 2]), 3, floor=0.5)


@pytest.mark.parametrize("logq", [True, False])
def test_loss_matches_hand_computed_softmax(logq):
    model = make_model(dataclasses.replace(CONFIG, logq_correction=logq))
    loss = float(model.compute_loss(FEATURES))
    queries = model.query_tower(FEATURES["user_id"], FEATURES["history"]).numpy()
    candidates = model.item_tower(FEATURES["item_id"]).numpy()
    logits = queries @ candidates.T / CONFIG.temperature
    if logq:
        counts = np.maximum(np.concatenate([[0.0], FREQUENCIES]), 0.5)
        rows = [TABLE.item_ids.tolist().index(i) + 1 for i in ["item_1", "item_4", "item_25"]]
        logits = logits - np.log(counts[rows] / counts.sum())
    np.testing.assert_allclose(loss, softmax_cross_entropy_sum(logits), rtol=1e-5)


def test_logq_changes_the_loss():
    with_logq = float(make_model().compute_loss(FEATURES))
    without = float(make_model(dataclasses.replace(CONFIG, logq_correction=False)).compute_loss(FEATURES))
    assert abs(with_logq - without) > 1e-3


def test_accidental_hits_are_removed():
    features = {**FEATURES, "item_id": tf.constant(["item_1", "item_1", "item_25"])}
    model = make_model(dataclasses.replace(CONFIG, logq_correction=False))
    loss = float(model.compute_loss(features))
    queries = model.query_tower(features["user_id"], features["history"]).numpy()
    logits = queries @ model.item_tower(features["item_id"]).numpy().T / CONFIG.temperature
    logits[0, 1] = logits[1, 0] = np.finfo(np.float32).min / 100.0
    np.testing.assert_allclose(loss, softmax_cross_entropy_sum(logits), rtol=1e-5)


def test_hard_negatives_hook_keeps_fewer_negatives():
    full = float(make_model().compute_loss(FEATURES))
    hard = float(make_model(num_hard_negatives=1).compute_loss(FEATURES))
    assert hard < full


def test_training_reduces_loss():
    model = make_model(dataclasses.replace(CONFIG, modality_dropout=0.1))
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    dataset = tf.data.Dataset.from_tensor_slices(FEATURES).repeat(4).batch(3)
    history = model.fit(dataset, epochs=3, verbose=0).history["loss"]
    assert history[-1] < history[0]


CROSS_REPLICA_SCRIPT = textwrap.dedent(
    """
    import tfrs_mm, json, dataclasses
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrs_mm.config import ModelConfig
    from tfrs_mm.models import build_retrieval_model, random_item_table

    table = random_item_table(30, {"text": 8, "image": 6, "audio": 4}, seed=1)
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(6)]
    items = ["item_1", "item_5", "item_7", "item_5", "item_9", "item_25", "item_13", "item_29"]
    features = {
        "user_id": tf.constant([users[i % 6] for i in range(8)]),
        "item_id": tf.constant(items),  # item_5 twice, once per replica: an accidental hit across replicas
        "history": tf.constant(rng.choice(["", *table.item_ids[:20]], size=(8, 3)).astype(str)),
    }
    frequencies = rng.integers(0, 10, size=30)

    def build(cross, strategy=None):
        config = ModelConfig(
            embedding_dim=8, id_embedding_dim=4, modality_dropout=0.0, cross_replica_negatives=cross
        )
        tf.keras.utils.set_random_seed(3)
        with strategy.scope() if strategy else tf.init_scope():
            model = build_retrieval_model(table, table.item_ids[:20].tolist(), users, config, frequencies)
            model.compute_loss(features)
        return model

    def single(model):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(features, training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        return float(loss), [tf.convert_to_tensor(g).numpy() for g in grads]

    def distributed(model, strategy):
        dataset = tf.data.Dataset.from_tensor_slices(features).batch(8)
        batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

        def replica_fn(b):
            with tf.GradientTape() as tape:
                loss = model.compute_loss(b, training=True)
            grads = tape.gradient(loss, model.trainable_variables)
            return loss, [tf.convert_to_tensor(g) for g in grads]

        @tf.function
        def step(batch):
            loss, grads = strategy.run(replica_fn, args=(batch,))
            total = lambda x: strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None)
            return total(loss), [total(g) for g in grads]

        loss, grads = step(batch)
        return float(loss), [g.numpy() for g in grads]

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    reference_loss, reference_grads = single(build(True))
    scale = max(float(np.abs(g).max()) for g in reference_grads)
    out = {"replicas": strategy.num_replicas_in_sync, "single": reference_loss, "grad_scale": scale}
    for cross in (True, False):
        loss, grads = distributed(build(cross, strategy), strategy)
        out[f"loss_{cross}"] = loss
        out[f"grad_diff_{cross}"] = max(float(np.abs(a - b).max()) for a, b in zip(grads, reference_grads))
    print("RESULT", json.dumps(out))
    """
)


def test_cross_replica_negatives_match_single_device_loss_and_gradients():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", CROSS_REPLICA_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["replicas"] == 2
    # Relative 1e-5: the summed loss is ~90, where one float32 ulp is ~8e-6.
    assert abs(out["loss_True"] - out["single"]) < 1e-5 * max(1.0, abs(out["single"]))
    assert out["grad_diff_True"] < 1e-5 * max(1.0, out["grad_scale"])
    # Without cross-replica negatives each replica sees only 4 candidates: a different (smaller) loss.
    assert abs(out["loss_False"] - out["single"]) > 1e-2
    assert out["grad_diff_False"] > 1e-3
