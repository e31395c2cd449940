#!/usr/bin/env bash
# Create (if missing) and update the project's virtual environment in .venv.
# Idempotent: a second run only checks that everything is installed.
# On this CPU-only machine torch is pinned to the local 2.13.0 CPU build; GPU users can
# pre-install a CUDA build (see README) and set HISTOVIEWER_TORCH=skip.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HISTOVIEWER_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
extras="${1:-test}"

if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment in $venv"
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.histoviewer-installed"
want="$(cat "$here/pyproject.toml" "$here/scripts/bootstrap.sh" | sha256sum | cut -c1-16)-$extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
"$py" -m pip install --quiet --upgrade pip
if [ "${HISTOVIEWER_TORCH:-cpu}" != "skip" ]; then
    if ! "$py" -c "import torch" >/dev/null 2>&1; then
        echo "[setup] installing torch 2.13.0 (CPU build)"
        "$py" -m pip install --quiet "torch==2.13.0"
    fi
fi
echo "[setup] installing histoviewer and its dependencies"
"$py" -m pip install --quiet -e "$here[$extras]"
echo "$want" > "$stamp"
