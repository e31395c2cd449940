"""Whole-slide inference (no Qt): the patch grid, tissue cells, batched region reads, the
live worker thread, the on-disk heatmap cache and headless ``analyze``. The grid's geometry,
``GridGeometry``, lives in ``core.grid_geometry`` (one import path)."""

from histoviewer.core.inference.grid import CellState, PredictionGrid

__all__ = ["CellState", "PredictionGrid"]
