# Two commands do all set-up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test install wheel benchmark clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/python train.py $(ARGS)

# Two pytest workers (pytest-xdist), each taking whole test files (module fixtures run once):
# the suite is mostly subprocesses that leave a core idle; `make test JOBS=1` runs it serially.
JOBS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile $(ARGS)

# dist/meshgnn-<version>-py3-none-any.whl, conf/ inside (pip install it anywhere: `meshgnn train ...`).
wheel: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation . -w dist

benchmark: $(STAMP)
	$(BIN)/python benchmarks/foundation.py
	$(BIN)/python benchmarks/checkpoints.py

clean:
	rm -rf $(VENV) data_cache .pytest_cache build dist
