"""Where HistoViewer keeps things: user data (demo slide, models folder) and bundled resources."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["bundled_resources_dir", "user_data_dir", "user_models_dir"]


def user_data_dir() -> Path:
    """``$HISTOVIEWER_DATA_DIR``, else ``$XDG_DATA_HOME/histoviewer``, else ``~/.local/share/histoviewer``."""
    if env := os.environ.get("HISTOVIEWER_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "histoviewer"


def user_models_dir() -> Path:
    """The folder users drop model files into (``<data dir>/models``); not created here."""
    return user_data_dir() / "models"


def bundled_resources_dir() -> Path:
    """``resources/`` of the source tree (default models, colour maps)."""
    return Path(__file__).resolve().parents[2] / "resources"
