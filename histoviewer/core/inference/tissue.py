"""Which grid cells are tissue: the slide's tissue map (``core.patches.tissue``) per patch.

A patch is classified when at least ``TISSUE_THRESHOLD`` (25 %) of its area is tissue.
Why a quarter: a patch that is mostly glass carries little the model was trained on (and
PatchCamelyon discarded such patches), yet a lesion at the edge of the tissue still falls
in patches that are a quarter tissue or more at every stride. The tissue map has about
four mask pixels per stride, so fractions are resolved to about 1/16 of a cell.
"""

from __future__ import annotations

import numpy as np

from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.patches.tissue import TissueMap, slide_tissue_map
from histoviewer.core.slide.reader import SlideReader

__all__ = ["TISSUE_THRESHOLD", "grid_tissue", "grid_tissue_fractions"]

TISSUE_THRESHOLD = 0.25
_MASK_PX_PER_STRIDE = 4


def grid_tissue_fractions(tissue_map: TissueMap, geometry: GridGeometry) -> np.ndarray:
    """Tissue fraction (0..1, float rows x cols) of every patch of ``geometry``."""
    cells = np.arange(geometry.size, dtype=np.int64)
    x, y = geometry.cell_l0_xy(cells)
    return tissue_map.fractions(x, y, geometry.l0_patch).reshape(geometry.shape)


def grid_tissue(
    reader: SlideReader, geometry: GridGeometry, threshold: float = TISSUE_THRESHOLD,
    tissue_map: TissueMap | None = None,
) -> np.ndarray:
    """Boolean rows x cols: patches with at least ``threshold`` tissue."""
    if tissue_map is None:
        tissue_map = slide_tissue_map(reader, l0_px_per_mask_px=geometry.l0_stride / _MASK_PX_PER_STRIDE)
    return grid_tissue_fractions(tissue_map, geometry) >= threshold
