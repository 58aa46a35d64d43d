#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: system packages, services, lint, tests
# on SQLite, then again on a real PostgreSQL server.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# Outside DATA_DIR (.trainyard), which only the studio's account may enter: the test
# PostgreSQL server runs as the postgres user.
export TRAINYARD_TEST_STATE="${TRAINYARD_TEST_STATE:-$PWD/.test-services}"
mkdir -p "$TRAINYARD_TEST_STATE"

echo "== system packages"
bash scripts/test-system-deps.sh
sh scripts/local-isolation.sh
echo "== docker engine and node image"
DATA_DIR="$PWD/.trainyard" bash scripts/start-dockerd.sh
DATA_DIR="$PWD/.trainyard" bash scripts/build-node-image.sh

echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy . --no-error-summary
.venv/bin/bandit -c pyproject.toml -r . -q
.venv/bin/lint-imports --no-cache

echo "== tests on SQLite"
status=0
$PY -m pytest "$@" || status=$?

echo "== tests on PostgreSQL"
pg_dir="$TRAINYARD_TEST_STATE/postgres"
rm -rf "$pg_dir"
DATABASE_URL="$($PY -m tests.services.postgres start "$pg_dir")"
export DATABASE_URL
trap '$PY -m tests.services.postgres stop "$pg_dir" >/dev/null 2>&1 || true' EXIT
$PY -m pytest -m "not e2e and not outage" "$@" || status=$?
exit $status
