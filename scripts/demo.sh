#!/usr/bin/env bash
# Set everything up (first run only) and open the viewer on the demo phantom slide.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/bootstrap.sh" test
# Qt >= 6.5 needs libxcb-cursor0 for X11 windows; a minimal Debian/Ubuntu lacks it.
if [ -n "${DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ] && command -v ldconfig >/dev/null \
    && ! ldconfig -p | grep -q libxcb-cursor.so.0; then
    echo "[demo] Qt needs X11 libraries this system lacks (libxcb-cursor0 first); on Debian/Ubuntu:" >&2
    echo "       sudo apt-get install libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 \\" >&2
    echo "           libxcb-image0 libxcb-render-util0 libxcb-shape0 libegl1 libgl1" >&2
    echo "       (README.md, 'System libraries')" >&2
    exit 1
fi
# The first run makes the demo slide (a few minutes on 2 cores; a progress bar shows how far).
exec "$here/.venv/bin/histoviewer" demo "$@"
