#!/bin/sh
# Install HistoViewer for this user (no administrator rights needed):
#   the application      -> ~/.local/share/histoviewer/app-VERSION (this folder, copied)
#   the command          -> ~/.local/bin/histoviewer
#   menu entry, icon, file types (.svs .ndpi .mrxs .scn .tif .tiff .dcm) -> ~/.local/share
# Run it from the extracted folder:  ./install.sh      Remove with:  ./uninstall.sh
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
bin="$HOME/.local/bin"
target="$data/histoviewer/application"

echo "Installing HistoViewer into $target ..."
mkdir -p "$data/histoviewer" "$bin" "$data/applications" "$data/mime/packages"
if [ "$here" != "$target" ]; then
    rm -rf "$target.new"
    cp -a "$here" "$target.new"
    rm -rf "$target"
    mv "$target.new" "$target"
fi
ln -sf "$target/histoviewer" "$bin/histoviewer"

sed "s|^Exec=histoviewer|Exec=\"$target/histoviewer\"|" "$here/histoviewer.desktop" \
    > "$data/applications/histoviewer.desktop"
cp "$here/histoviewer-mime.xml" "$data/mime/packages/histoviewer.xml"
for png in "$here"/icons/histoviewer-*.png; do
    size="$(basename "$png" .png)"; size="${size#histoviewer-}"
    mkdir -p "$data/icons/hicolor/${size}x${size}/apps"
    cp "$png" "$data/icons/hicolor/${size}x${size}/apps/histoviewer.png"
done
mkdir -p "$data/icons/hicolor/scalable/apps"
cp "$here/icons/histoviewer.svg" "$data/icons/hicolor/scalable/apps/histoviewer.svg"

# Refresh the desktop's caches when the tools are there (they are optional).
command -v update-mime-database >/dev/null 2>&1 && update-mime-database "$data/mime" >/dev/null 2>&1 || true
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$data/applications" >/dev/null 2>&1 || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$data/icons/hicolor" >/dev/null 2>&1 || true
command -v xdg-mime >/dev/null 2>&1 && xdg-mime default histoviewer.desktop \
    image/x-aperio-svs image/x-hamamatsu-ndpi image/x-mirax-mrxs image/x-leica-scn >/dev/null 2>&1 || true

echo "Done. Start HistoViewer from your applications menu, or double-click a slide file."
case ":$PATH:" in *":$bin:"*) ;; *) echo "(To use it from a terminal, add $bin to your PATH.)";; esac
