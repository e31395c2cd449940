"""Whole-slide inference (no Qt): the patch grid, tissue cells, batched region reads, the
live worker thread, the on-disk heatmap cache and headless ``analyze``."""

from histoviewer.core.inference.grid import CellState, GridGeometry, PredictionGrid

__all__ = ["CellState", "GridGeometry", "PredictionGrid"]
