# Two commands do everything on a fresh machine:  make run   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Exact versions, tested together: the service and its dev tools (requirements/lock.txt is the
# service alone, for the Docker image). pyproject.toml keeps the ranges for people who install
# the package; `make lock` re-pins after a change there.
LOCK   := requirements/lock-dev.txt
UV_COMPILE := $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --quiet \
	--custom-compile-command "make lock"

.PHONY: run test install lock lint typecheck check bench loadtest migrate fuzz clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	@$(BIN)/pip check >/dev/null || { $(BIN)/pip check; \
		echo "pyproject.toml needs what $(LOCK) lacks: run make lock"; exit 1; }
	touch $(STAMP)

install: $(STAMP)

## Re-pin requirements/lock.txt and lock-dev.txt from pyproject.toml (keeps current pins that
## still fit; `make lock UPGRADE=1` takes the newest versions). Commit them with pyproject.toml.
lock:
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet uv; }
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) -o requirements/lock.txt
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) --extra dev -c requirements/lock.txt \
		-o requirements/lock-dev.txt

## Install into .venv and run the whole service: migrations, API (gunicorn), Celery worker and beat.
run: $(STAMP)
	$(BIN)/python -m config.serve

## Install what the tests need and run the whole suite (DATABASE_URL, else :5432, else embedded).
test: $(STAMP)
	@bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

check: lint typecheck
	DB_PREFER_LOCAL=1 $(BIN)/python manage.py makemigrations --check --dry-run

## Benchmarks (not part of the tests): ours beside a raw psycopg baseline, as ratios.
bench: $(STAMP)
	DB_PREFER_LOCAL=1 $(BIN)/python -m bench

## Load test (not part of the tests): two API servers, a Celery worker and beat, a mixed load for
## LOADTEST_SECONDS (300), then every ledger invariant (bench/loadtest.py).
loadtest: $(STAMP)
	DB_PREFER_LOCAL=1 $(BIN)/python -m bench.loadtest

## API fuzzing with many more examples than CI runs (schemathesis, every operation), and the
## ledger's differential test and the event validator's shortcut on new random examples (CI runs a
## fixed set).
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} $(BIN)/python -m pytest -q tests/fuzz
	DIFF_RANDOM=1 DIFF_EXAMPLES=$${DIFF_EXAMPLES:-300} $(BIN)/python -m pytest -q \
		tests/points/test_differential.py tests/api/test_plain_validation.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
