"""Choosing a `tf.distribute` strategy from the training config.

- `default`: TensorFlow's default strategy (one device).
- `mirrored`: `MirroredStrategy` over local devices. On a CPU-only machine,
  `num_logical_devices > 1` splits the CPU into that many logical devices
  first, so the distributed path (per-replica batches, all-reduce, cross-replica
  negatives) runs and can be tested here exactly as it would on GPUs.
- `multi_worker`: `MultiWorkerMirroredStrategy`, configured from `TF_CONFIG`
  (each worker runs the same command with its own task index).
"""

from __future__ import annotations

import json
import logging
import os

from tfrs_mm.config import TrainConfig

logger = logging.getLogger(__name__)


def split_cpu(num_devices: int) -> None:
    """Makes `num_devices` logical CPU devices; must run before TensorFlow initialises its runtime.

    Raises:
        RuntimeError: if TensorFlow has already initialised (say so instead of silently using one device).
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) == num_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
        )
    except RuntimeError as e:
        raise RuntimeError(
            f"cannot split the CPU into {num_devices} logical devices: TensorFlow is already initialised "
            "in this process. Choose the strategy before running any TensorFlow op (a fresh process)."
        ) from e


def make_strategy(config: TrainConfig):
    """The `tf.distribute.Strategy` named by `config.strategy`."""
    import tensorflow as tf

    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        if config.num_logical_devices > 1 and not tf.config.list_physical_devices("GPU"):
            split_cpu(config.num_logical_devices)
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
            return tf.distribute.MirroredStrategy(devices)
        return tf.distribute.MirroredStrategy()
    if config.strategy == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy multi_worker needs TF_CONFIG (cluster and task) in the environment")
        task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
        logger.info("multi-worker training as %s %s", task.get("type"), task.get("index"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {config.strategy!r}")


def is_chief() -> bool:
    """True unless this process is a non-chief worker of a multi-worker job (only the chief writes).

    With a `chief` task in the cluster, only it is chief; otherwise worker 0 is.
    """
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task, cluster = tf_config.get("task", {}), tf_config.get("cluster", {})
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0
