"""A synthetic slide with a known lesion rectangle and a heatmap that marks it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histoviewer.core.export.source import HeatmapData
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.record import ModelRecord
from tests.core.inference_helpers import GLASS_X1, H, LESION_RECT, MPP, W, lesion_fraction, write_synthetic_tiff

# what a live model says about itself (the GUI hands a ModelInfo to the export)
MODEL_INFO = ModelInfo(name="fraction", kind="fake", architecture="green-channel", content_hash="f" * 64,
                       demonstration=True)
MODEL = ModelRecord(name="fraction", display_name="fraction (fake, green-channel)", kind="fake",
                    content_hash="f" * 64, demonstration=True)
# map cells of 200 level-0 px: 1.0 um/px model pixels, 50 px patches
GEOMETRY = GridGeometry.for_slide((W, H), MPP, 1.0, 50)


def lesion_heatmap() -> HeatmapData:
    """0.9 on cells mostly inside the lesion, 0.1 on other tissue, -1 on glass; one cell
    not computed (NaN) and one failed (-2) in the tissue's top-right corner."""
    g = GEOMETRY
    x, y = g.cell_l0_xy(np.arange(g.size))
    frac = lesion_fraction(x, y, g.l0_stride).reshape(g.shape)
    enc = np.where(frac > 0.5, 0.9, 0.1).astype(np.float32)
    enc[:, : int(GLASS_X1 // g.l0_stride)] = -1.0
    enc[0, -1] = np.nan
    enc[0, -2] = -2.0
    return HeatmapData(enc, g, MODEL, "test")


def slide(tmp_path: Path) -> Path:
    return write_synthetic_tiff(tmp_path / "synthetic.tiff", grain=False)  # exact colours, never classified


LESION_CENTRE = (LESION_RECT[0] + LESION_RECT[2] / 2, LESION_RECT[1] + LESION_RECT[3] / 2)
