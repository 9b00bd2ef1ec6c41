"""Apache Beam jobs of tfrs_mm: preprocess items and interactions into a dataset directory.

Each job is `python -m beam_jobs.<job>` with standard Beam pipeline options.
"""
