"""SavedModel exports in TF Serving's layout: `export_all(data_dir, workdir, out_dir)`.

`retrieval` (exact top-k), `ranking` and `recommender` use core TensorFlow ops
only and run on stock TF Serving; `retrieval_scann` needs the ScaNN custom ops.
"""

from tfrs_mm.export.exporter import CUSTOM_OPS_CONFIG_FILE, EXPORTS, export_all
from tfrs_mm.export.layout import (
    MODELS_CONFIG_FILE,
    custom_ops,
    graph_ops,
    models_config_text,
    next_version,
    versions,
)
from tfrs_mm.export.warmup import WARMUP_DIR, WARMUP_FILE, prediction_log

__all__ = [
    "CUSTOM_OPS_CONFIG_FILE",
    "EXPORTS",
    "MODELS_CONFIG_FILE",
    "WARMUP_DIR",
    "WARMUP_FILE",
    "custom_ops",
    "export_all",
    "graph_ops",
    "models_config_text",
    "next_version",
    "prediction_log",
    "versions",
]
