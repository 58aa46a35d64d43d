# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test test-fast lint node-image

run: $(VENV)/.installed $(VENV)/bin/trainyard
	sh scripts/local-isolation.sh
	$(PY) manage.py up

test: $(VENV)/.installed-test $(VENV)/bin/trainyard
	bash scripts/test.sh

# Every test that needs no service (no Docker, sshd, Spark, browser or local run), in
# under a minute; `make test` runs them all.
test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -m "not service" -q -n 2

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy . \
		&& $(VENV)/bin/bandit -c pyproject.toml -r . -q && $(VENV)/bin/lint-imports --no-cache

# Builds the managed-cluster node image locally (never pulled from a registry).
node-image:
	bash scripts/build-node-image.sh

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The command line, `python -m cli` from this checkout, callable from any folder.
$(VENV)/bin/trainyard: $(VENV)/.installed
	printf '#!/bin/sh\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m cli "$$@"\n' \
		"$(CURDIR)" "$(abspath $(PY))" > $@
	chmod +x $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@ $(VENV)/.installed
