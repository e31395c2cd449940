#!/usr/bin/env bash
# Set everything up (first run only) and run the test suite (slow tests excluded; add -m slow for them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/bootstrap.sh" test
cd "$here"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
exec "$here/.venv/bin/python" -m pytest "$@"
