# Two entry points: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PG_URL ?= postgresql+psycopg://postgres:hwnas@127.0.0.1:5432/hwnas_test
# Browser tests drive the system's Chromium (Debian's package); Playwright never downloads one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install install-dev demo test lint postgres chromium clean deploy-check

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The local CPU build; any other spec pulls gigabytes of CUDA.
	$(PIP) install -q torch==2.13.0
	touch $@

install: $(VENV)/.torch
	$(PIP) install -q -e .

install-dev: $(VENV)/.torch
	$(PIP) install -q -e '.[dev]'

demo: install
	$(VENV)/bin/hwnas demo

postgres:
	bash .ci/postgres.sh

chromium:
	bash .ci/chromium.sh

lint: install-dev
	$(VENV)/bin/ruff check search_spaces latency_lut nas api tests bench
	$(VENV)/bin/ruff format --check search_spaces latency_lut nas api tests bench

test: install-dev postgres chromium lint
	HWNAS_TEST_POSTGRES_URL=$${HWNAS_TEST_POSTGRES_URL:-$(PG_URL)} $(VENV)/bin/pytest -q --durations=40

# docker-compose.yml's topology as local processes (PostgreSQL, Ray head + node, API, two workers); no Docker.
deploy-check: install-dev postgres
	HWNAS_TEST_POSTGRES_URL=$${HWNAS_TEST_POSTGRES_URL:-$(PG_URL)} $(VENV)/bin/pytest -q tests/deploy

clean:
	rm -rf $(VENV) .hwnas
