"""Where HistoViewer keeps things: user data (demo slide, models folder) and bundled resources."""

from __future__ import annotations

import os
import sys
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
    """``resources/`` (default models, icons, licences): of the source tree, or of the packaged
    application when frozen by PyInstaller (``sys._MEIPASS``: the bundle's ``_internal`` folder,
    where packaging/histoviewer-*.spec puts ``resources/``)."""
    if getattr(sys, "frozen", False) and hasattr(sys, "_MEIPASS"):
        return Path(sys._MEIPASS) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"
