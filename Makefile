# Every target creates the virtualenv and installs the project itself, so a fresh
# clone needs nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo lint test bench sample-data chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m etl.demo

# The gate .ci/run passes before the tests: ruff's formatting and small rule set on
# all the code, mypy --strict on etl/ (all configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

sample-data: $(STAMP)
	$(BIN)/python sample_data/generate.py

# The browser the report test renders in (tests/test_html_report.py; skipped locally
# without it, a failure under CI=true). Debian's package; needs root.
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

clean:
	rm -rf $(VENV) .etl pipelines/.etl
