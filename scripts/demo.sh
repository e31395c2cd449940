#!/usr/bin/env bash
# Set everything up (first run only) and open the viewer on the demo phantom slide.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/bootstrap.sh" test
# Qt >= 6.5 needs libxcb-cursor0 for X11 windows; a minimal Debian/Ubuntu lacks it.
if [ -n "${DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ] && command -v ldconfig >/dev/null \
    && ! ldconfig -p | grep -q libxcb-cursor.so.0; then
    echo "[demo] Qt needs the X11 library libxcb-cursor0; install it with:" >&2
    echo "       sudo apt-get install libxcb-cursor0" >&2
    exit 1
fi
exec "$here/.venv/bin/histoviewer" demo "$@"
