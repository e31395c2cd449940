"""The recent-files list, kept as JSON in the user's configuration folder."""

from __future__ import annotations

import os
from pathlib import Path

from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.errors import HistoViewerError
from histoviewer.core.safe_input import read_json
from histoviewer.core.strict_json import strict_dumps

MAX_RECENT = 10


def config_dir() -> Path:
    """``$HISTOVIEWER_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/histoviewer``, else ``~/.config/histoviewer``."""
    if env := os.environ.get("HISTOVIEWER_CONFIG_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "histoviewer"


class RecentFiles:
    """Most recent first, no duplicates, at most ``MAX_RECENT``; a broken file reads as empty."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "recent.json"

    def load(self) -> list[str]:
        try:  # a FIFO, a huge or hostile file reads as empty too (safe_input)
            data = read_json(self.path, "recent-files list", HistoViewerError)
        except HistoViewerError:
            return []
        return [p for p in data if isinstance(p, str)][:MAX_RECENT] if isinstance(data, list) else []

    def add(self, slide_path: str | os.PathLike[str]) -> list[str]:
        entry = str(Path(slide_path).resolve())
        items = [entry] + [p for p in self.load() if p != entry]
        items = items[:MAX_RECENT]
        try:
            atomic_write_text(self.path, strict_dumps(items, indent=1))
        except OSError:
            pass  # a read-only home must not stop the viewer from opening slides
        return items
