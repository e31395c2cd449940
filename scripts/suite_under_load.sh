#!/usr/bin/env bash
# Is the default suite deterministic? Run it N times (default 5) on a clean clone of HEAD
# while a CPU-heavy process runs beside it. The first run is .ci/run itself (a fresh .venv,
# installed from scratch), the others scripts/test.sh. ../shared is linked beside the clone
# when it exists, as CI has it. Prints one line per run; exits non-zero if any run failed.
set -uo pipefail
runs="${1:-5}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/histoviewer-load.XXXXXX")"
[ -d "$here/../shared" ] && ln -s "$(cd "$here/../shared" && pwd)" "$work/shared"
git clone -q "$here" "$work/repo"
cd "$work/repo" || exit 2
python3 -c "while True: pass" &  # the competing load: one busy core
burner=$!
trap 'kill $burner 2>/dev/null' EXIT
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, one busy-loop process beside the suite; logs in $work"
failed=0
for i in $(seq 1 "$runs"); do
    t0=$(date +%s)
    if [ "$i" = 1 ]; then
        CI=true bash .ci/run > "$work/run$i.log" 2>&1 < /dev/null; rc=$?
    else
        bash scripts/test.sh -p no:cacheprovider > "$work/run$i.log" 2>&1 < /dev/null; rc=$?
    fi
    [ "$rc" = 0 ] || failed=1
    echo "run $i: rc=$rc, $(( $(date +%s) - t0 )) s, $(tail -1 "$work/run$i.log" | tr -d '=')"
done
exit $failed
