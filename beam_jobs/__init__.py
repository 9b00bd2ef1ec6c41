"""Apache Beam jobs of tfrs_mm: preprocess items and interactions into a dataset directory.

Each job is `python -m beam_jobs.<job>` with standard Beam pipeline options.
"""

# Select tf-keras behind tf.keras before anything (Beam's TF inference module,
# tensorflow_hub) resolves it: the jobs run in worker processes too.
import tfrs_mm  # noqa: F401
