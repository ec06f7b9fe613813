# Two commands do everything on a fresh machine:  make run   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint typecheck check bench migrate fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

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

## API fuzzing with many more examples than CI runs (schemathesis, every operation).
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} $(BIN)/python -m pytest -q tests/fuzz

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
