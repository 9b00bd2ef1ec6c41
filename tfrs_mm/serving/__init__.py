"""A local stand-in for `tensorflow_model_server --rest_api_port`: TF Serving's REST wire format.

Status, metadata and `:predict` (row and columnar, b64, TF Serving's error
bodies and codes), version policies, labels and polling from a models.config,
and an audit that refuses ops stock TF Serving lacks. See TF_SERVING_REST.md.
TensorFlow is imported when models load, not on import.
"""

from tfrs_mm.serving.server import create_app, running_server, serve

__all__ = ["create_app", "running_server", "serve"]
