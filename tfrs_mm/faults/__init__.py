"""The fault, load and bad-input suite: scenarios that attack one stage each and return figures.

Each module has a `run_*` function that builds its hostile input, runs the
stage against it and returns a dict of figures (inputs tried, records lost,
faults survived, ...). `tests/test_faults_*.py` (the `faults` tier, `make
test-faults`) assert on them; `bench/bench_faults.py` (`make faults-report`)
writes them to `bench/results/faults.{json,md}`.
"""

from tfrs_mm.faults.catalog import run_catalog_faults
from tfrs_mm.faults.serving import run_serving_faults
from tfrs_mm.faults.training import run_training_faults

__all__ = ["run_catalog_faults", "run_serving_faults", "run_training_faults"]
