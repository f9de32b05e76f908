#!/usr/bin/env bash
# Installs everything, then runs the whole test suite: lint, strict typing, and pytest
# (unit tests, plus integration tests against a real etcd and the embedded Mesos).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
V=.venv/bin
echo "== ruff check"; "$V/ruff" check controller tests
echo "== mypy --strict controller/"; "$V/mypy" --strict controller/
echo "== pytest"; "$V/pytest" "$@"
