#!/usr/bin/env bash
# Installs everything, then starts the embedded system (etcd, embedded Mesos, controller).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/docket up "$@"
