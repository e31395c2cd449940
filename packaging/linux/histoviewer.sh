#!/bin/sh
# HistoViewer launcher: runs the bundled application next to this script.
# With no arguments it opens the viewer; `histoviewer info SLIDE`, `histoviewer analyze ...`
# run the command line (`histoviewer --help` lists the commands).
here="$(dirname "$(readlink -f "$0")")"
exec "$here/app/histoviewer" "$@"
