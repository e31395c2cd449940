#!/usr/bin/env bash
# Set everything up (first run only) and open the viewer on the demo phantom slide.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/bootstrap.sh" test
exec "$here/.venv/bin/histoviewer" demo "$@"
