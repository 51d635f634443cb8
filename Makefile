# webconnect: `make run` to serve, `make test` to test. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format assets install install-dev clean

# `make test -- tests/clients -q -x` passes what follows `test` to pytest (or use ARGS='-k "a or b"').
ifeq (test,$(firstword $(MAKECMDGOALS)))
  TEST_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
  .PHONY: $(TEST_ARGS)
  $(eval $(TEST_ARGS):;@:)
endif

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The Python client and its CLI (`.venv/bin/python -m webconnect_client`), editable.
$(VENV)/.client-installed: $(VENV)/.installed clients/python/pyproject.toml
	$(PY) -m pip install --quiet -e clients/python
	touch $@

$(VENV)/.dev-installed: $(VENV)/.client-installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.client-installed
install-dev: $(VENV)/.dev-installed

## Serve on http://$(HOST):$(PORT) with a Celery worker and beat beside it.
run: $(VENV)/.client-installed
	HOST=$(HOST) PORT=$(PORT) bash scripts/run.sh

## The whole suite: Node dependencies for the Node tests (npm ci when frontend/node_modules is missing or
## older than the lockfile), the embedded tier, then the services tier when DATABASE_URL and REDIS_URL are set.
test: $(VENV)/.dev-installed
	bash scripts/test.sh $(TEST_ARGS) $(ARGS)

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .

format: $(VENV)/.dev-installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## Rebuild the co-editing bundle (collab/static/collab/editor.bundle.js) from frontend/'s lockfile.
assets:
	cd frontend && npm ci --no-audit --no-fund && npm run build && npm run build:client

clean:
	rm -rf $(VENV) .data staticfiles test-artifacts
