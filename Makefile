# Two entry points: `make demo` (the main job) and `make test` (the suite).
# Both create .venv on first use and install torch==2.13.0 before the package,
# so pip never resolves a second (CUDA) torch on a CPU machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-reference lint bench clean

# The released-model reference material and the field's sample files (outside the repository;
# see README, "Tests"). Reference tests that also need the samples run when REAL_DATA exists.
REFERENCE_MODELS ?= ../shared/reference/released-models
REAL_DATA ?= ../shared/data/real

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nufm demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/pyright --project pyproject.toml

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-reference: $(STAMP)
	NUFM_REFERENCE_MODELS=$(abspath $(REFERENCE_MODELS)) NUFM_REAL_DATA=$(abspath $(REAL_DATA)) \
	  $(BIN)/python -m pytest -m "reference$(if $(wildcard $(REAL_DATA)),, and not real_data)"

bench: $(STAMP)
	$(BIN)/nufm bench

clean:
	rm -rf $(VENV) demo_out
