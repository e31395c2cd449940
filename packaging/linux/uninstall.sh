#!/bin/sh
# Remove what install.sh put into ~/.local (your slides, settings and models folder stay).
set -eu
data="${XDG_DATA_HOME:-$HOME/.local/share}"
rm -rf "$data/histoviewer/application"
rm -f "$HOME/.local/bin/histoviewer" "$data/applications/histoviewer.desktop" "$data/mime/packages/histoviewer.xml"
find "$data/icons/hicolor" -name 'histoviewer.png' -o -name 'histoviewer.svg' 2>/dev/null | while read -r f; do rm -f "$f"; done
command -v update-mime-database >/dev/null 2>&1 && update-mime-database "$data/mime" >/dev/null 2>&1 || true
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$data/applications" >/dev/null 2>&1 || true
echo "HistoViewer removed."
