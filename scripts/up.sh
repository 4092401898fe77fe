#!/usr/bin/env bash
# The main job, from a fresh clone: install everything, then run tansu on SeaweedFS, the schema
# registry, the ingestion API and the projection processor. Ctrl-C stops it all; data stays in ./var.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/anchang up "$@"
