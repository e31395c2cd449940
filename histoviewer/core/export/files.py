"""Streamed output files that appear whole or not at all: ``core.atomic.atomic_target``
(kept under this name for the exports that import it from here)."""

from __future__ import annotations

from histoviewer.core.atomic import atomic_target

__all__ = ["atomic_target"]
