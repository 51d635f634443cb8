# webconnect: `make run` to serve, `make test` to test. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format assets install install-dev clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt clients/python/pyproject.toml
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet -e clients/python
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.dev-installed

## Serve on http://$(HOST):$(PORT) with a Celery worker and beat beside it.
run: $(VENV)/.installed
	HOST=$(HOST) PORT=$(PORT) bash scripts/run.sh

## The whole suite: the embedded tier, then the services tier when DATABASE_URL and REDIS_URL are set.
test: $(VENV)/.dev-installed
	bash scripts/test.sh

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .

format: $(VENV)/.dev-installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## Rebuild the co-editing bundle (collab/static/collab/editor.bundle.js) from frontend/'s lockfile.
assets:
	cd frontend && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf $(VENV) .data staticfiles test-artifacts
