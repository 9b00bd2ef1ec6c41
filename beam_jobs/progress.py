"""Progress logging from inside a running pipeline (each worker logs its own share)."""

from __future__ import annotations

import logging
import time

import apache_beam as beam

logger = logging.getLogger("beam_jobs")


class LogProgressFn(beam.DoFn):
    """Counts elements in a Beam counter and logs every `every` of them with the rate so far."""

    def __init__(self, what: str, every: int = 500):
        self.what = what
        self.every = every
        self.counter = beam.metrics.Metrics.counter("tfrs_mm", what)

    def setup(self):
        self.count = 0
        self.start = time.perf_counter()

    def process(self, element):
        self.counter.inc()
        self.count += 1
        if self.count % self.every == 0:
            rate = self.count / max(time.perf_counter() - self.start, 1e-9)
            logger.info("%s: %d (%.1f/s on this worker)", self.what, self.count, rate)
        return []
