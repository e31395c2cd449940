"""A lesion snapshot for the review queue tests: the AI's lesions of a slide made from a
probability map drawn by hand (blobs at given map cells), through the same ``analyse_map``
the viewer runs, so the queue sees real ``Lesion`` values without running a model."""

from __future__ import annotations

import numpy as np

from histoviewer.core.analysis.lesions import MapFrame
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.analysis.threshold import choose_lesion_params
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import PredictionGrid
from histoviewer.qt.live_lesions import LesionSnapshot

MODEL_HASH = "f" * 64
CELL_UM = 96.0  # one map cell: a 96-px patch at 1 um/px


def blob_snapshot(dimensions: tuple[int, int], mpp: float, blobs: list[tuple[int, int, int, float]],
                  model_hash: str = MODEL_HASH, generation: int = 1) -> LesionSnapshot:
    """Lesions of a map whose cells are 0.02 except square blobs ``(row, col, side in cells,
    P)``; every cell is classified (a whole map)."""
    geometry = GridGeometry.for_slide(dimensions, mpp, 1.0, 96)
    grid = PredictionGrid(geometry, np.ones(geometry.shape, bool))
    values = np.full(geometry.shape, 0.02, np.float32)
    for row, col, side, p in blobs:
        values[row:row + side, col:col + side] = p
    grid.set_values(np.arange(geometry.size), values.ravel())
    result = analyse_map(grid.encoded_map(), MapFrame.from_geometry(geometry), choose_lesion_params(None, None))
    counts = tuple(int(c) for c in np.histogram(values, bins=20, range=(0.0, 1.0))[0])
    return LesionSnapshot(result, counts, "test model", False, 0.0, generation, model_hash=model_hash)
