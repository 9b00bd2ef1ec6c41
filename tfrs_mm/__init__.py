"""tfrs_mm: a multimodal recommender stack on TensorFlow Recommenders, Beam and TF Serving.

Importing this package selects tf-keras behind `tf.keras` (TFRS needs it); it
does not import TensorFlow itself, so the data tools start quickly.
"""

from tfrs_mm._keras_setup import configure_keras

configure_keras()

__version__ = "0.1.0"

__all__ = ["__version__"]
