#!/usr/bin/env bash
# Build the Linux installer: dist/histoviewer-VERSION-linux-x86_64.tar.gz
#
#   packaging/build.sh            # lean bundle (the default)
#   HISTOVIEWER_LEAN=0 packaging/build.sh   # everything the hooks collect (to measure the savings)
#
# Uses the Python in $PYTHON (default: .venv/bin/python of the source tree, else python3) with
# the project's dependencies and the `packaging` extra installed (pip install -e .[packaging]).
# The PyInstaller work folder (build/pyinstaller) is kept, so a rebuild is incremental.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
version="$("$python" -c 'import histoviewer; print(histoviewer.__version__)')"
arch="$(uname -m)"
name="histoviewer-$version-linux-$arch"
lean="${HISTOVIEWER_LEAN:-1}"
suffix=""; [ "$lean" = "0" ] && suffix="-full"
work="$root/build/pyinstaller"  # shared: the Analysis is the same, only COLLECT differs
dist="$root/dist/pyinstaller$suffix"
stage="$root/build/stage$suffix/$name"
start=$(date +%s)

echo "[build] third-party licences from the installed distributions" >&2
export HISTOVIEWER_LICENSES_DIR="$root/build/licenses"
rm -rf "$HISTOVIEWER_LICENSES_DIR"
"$python" -m histoviewer.core.licenses "$HISTOVIEWER_LICENSES_DIR"

echo "[build] PyInstaller (work folder $work)" >&2
export HISTOVIEWER_LEAN="$lean"
"$python" -m PyInstaller --noconfirm --log-level WARN --workpath "$work" --distpath "$dist" \
    "$root/packaging/histoviewer-linux.spec"

echo "[build] staging $stage" >&2
rm -rf "$stage"
mkdir -p "$stage"
cp -a "$dist/histoviewer" "$stage/app"
install -m 755 "$root/packaging/linux/histoviewer.sh" "$stage/histoviewer"
install -m 755 "$root/packaging/linux/install.sh" "$stage/install.sh"
install -m 755 "$root/packaging/linux/uninstall.sh" "$stage/uninstall.sh"
install -m 644 "$root/packaging/linux/histoviewer.desktop" "$stage/histoviewer.desktop"
install -m 644 "$root/packaging/linux/histoviewer-mime.xml" "$stage/histoviewer-mime.xml"
mkdir -p "$stage/icons"
cp "$root"/resources/icons/histoviewer-*.png "$root/resources/icons/histoviewer.svg" "$stage/icons/"
install -m 644 "$root/packaging/linux/README.txt" "$stage/README.txt"

echo "[build] archive" >&2
tarball="$root/dist/$name$suffix.tar.gz"
tar -C "$(dirname "$stage")" -czf "$tarball.part" "$name"
mv "$tarball.part" "$tarball"
end=$(date +%s)
echo "[build] bundle folder: $(du -sm "$stage/app" | cut -f1) MiB; archive: $(du -m "$tarball" | cut -f1) MiB; $((end - start)) s" >&2
echo "$tarball"
