# The two commands of the README: `make demo` and `make test`. Each creates or updates the
# local virtualenv (.venv) first, so a fresh clone with Python 3.11 needs nothing else.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DATA   ?= .demo-data
PORT   ?= 5006
# test worker processes (pytest-xdist); each test module runs whole on one worker
TEST_WORKERS ?= 2

.PHONY: demo test lint format venv bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# tb-mqtt-client's paho fork (once in the test extra) shares upstream paho's files: drop both
	@# so the install below puts upstream paho-mqtt back whole (the SDK now has .test-venvs/)
	if $(BIN)/python -m pip show --quiet tb-paho-mqtt-client 2>/dev/null; then \
	    $(BIN)/python -m pip uninstall --quiet -y tb-mqtt-client tb-paho-mqtt-client paho-mqtt; fi
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tbpanel serve --demo --data $(DATA) --port $(PORT)

# lint, format check and types first (seconds), then the suite
test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check tbpanel tests benchmarks
	$(BIN)/ruff format --check tbpanel tests benchmarks
	$(BIN)/mypy

# rewrites files: what `ruff format --check` in `make test` asks for
format: $(STAMP)
	$(BIN)/ruff check --fix tbpanel tests benchmarks
	$(BIN)/ruff format tbpanel tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest_query.py

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .hypothesis .test-venvs
