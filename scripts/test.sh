#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the dev dependencies and Prometheus (for the
# end-to-end metrics test), then runs pytest. Tests start their own tansu broker and schema registry;
# PostgreSQL tests use the server at $ANCHANG_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --dev
scripts/install-prometheus.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
