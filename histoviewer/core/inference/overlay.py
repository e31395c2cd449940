"""The heatmap as a small RGBA raster, one pixel per map cell, for the viewer to scale and draw.

The raster is premultiplied RGBA (uint8, rows x cols x 4) so that a GUI toolkit can draw it
without converting. Cell colours:

- computed, probability >= threshold: the colour map's colour at that probability, with
  ``opacity``;
- computed, below the threshold: transparent (the tissue shows through);
- not yet computed (tissue): a faint grey veil, so a half-finished map never looks like a
  negative one;
- failed: translucent red;
- background (no tissue): transparent.

``refresh(window)`` recolours only the map cells of a window (new results touch a few
cells); a style change recolours everything. Both may run on any thread; one lock keeps
them from interleaving. Readers (the paint code) read ``rgba`` without the lock: a torn
read shows a cell one update late, which the next repaint fixes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from histoviewer.core.colormaps import lut_indices
from histoviewer.core.inference.grid import CellState, PredictionGrid

__all__ = ["FAILED_RGBA", "PENDING_RGBA", "SCREENED_RGBA", "HeatmapRaster", "HeatmapStyle"]

# Straight (not premultiplied) RGBA of the non-probability states.
PENDING_RGBA = (128, 128, 128, 56)
FAILED_RGBA = (220, 30, 30, 120)
# Screened negative (``inference.screening``): the screen found nothing, the full model did not
# look. A pale blue veil, paler and cooler than the grey "not yet classified" one and unlike
# any colour-map colour over the threshold: not a result, and not a negative classification.
SCREENED_RGBA = (110, 150, 235, 85)


@dataclass(frozen=True)
class HeatmapStyle:
    """How probabilities become colours. ``lut`` is a (256, 3) uint8 colour map table indexed
    by round(p * 255); ``opacity`` and ``threshold`` are 0..1."""

    lut: np.ndarray
    opacity: float = 0.5
    threshold: float = 0.5
    show_pending: bool = True

    def __post_init__(self) -> None:
        lut = np.ascontiguousarray(self.lut, np.uint8)
        if lut.shape != (256, 3):
            raise ValueError(f"a colour map table must be (256, 3) uint8, got {lut.shape}")
        object.__setattr__(self, "lut", lut)
        for name in ("opacity", "threshold"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
            object.__setattr__(self, name, value)

    def with_(self, **changes) -> HeatmapStyle:
        return replace(self, **changes)


def _premultiplied(rgba: tuple[int, int, int, int]) -> np.ndarray:
    r, g, b, a = rgba
    return np.array([(r * a + 127) // 255, (g * a + 127) // 255, (b * a + 127) // 255, a], np.uint8)


class HeatmapRaster:
    """Premultiplied RGBA of the map of ``grid`` (see the module docstring)."""

    def __init__(self, grid: PredictionGrid, style: HeatmapStyle) -> None:
        self.grid = grid
        self.rgba = np.zeros((*grid.geometry.shape, 4), np.uint8)
        self._style = style
        self._lock = threading.Lock()
        self._prepare_style()
        self.refresh()

    @property
    def style(self) -> HeatmapStyle:
        return self._style

    def set_style(self, style: HeatmapStyle) -> None:
        """Change colours (colour map, opacity, threshold) and recolour every cell."""
        with self._lock:
            self._style = style
            self._prepare_style()
        self.refresh()

    def _prepare_style(self) -> None:
        s = self._style
        alpha = round(s.opacity * 255)
        lut = np.zeros((256, 4), np.uint16)
        lut[:, :3] = (s.lut.astype(np.uint16) * alpha + 127) // 255
        lut[:, 3] = alpha
        self._lut = lut.astype(np.uint8)
        self._pending = _premultiplied(PENDING_RGBA) if s.show_pending else np.zeros(4, np.uint8)
        self._failed = _premultiplied(FAILED_RGBA)
        self._screened = _premultiplied(SCREENED_RGBA) if s.show_pending else np.zeros(4, np.uint8)

    def refresh(self, window: tuple[int, int, int, int] | None = None) -> None:
        """Recolour the map cells in ``window`` = (row0, row1, col0, col1), half-open; all
        when None."""
        rows, cols = self.grid.geometry.shape
        r0, r1, c0, c1 = window if window is not None else (0, rows, 0, cols)
        r0, c0 = max(0, r0), max(0, c0)
        r1, c1 = min(rows, r1), min(cols, c1)
        if r1 <= r0 or c1 <= c0:
            return
        values, state = self.grid.map((r0, r1, c0, c1))
        with self._lock:
            index = lut_indices(values)  # the exports' rounding: both show the same colours
            out = self._lut[index]
            # Below the threshold: transparent, decided on the value itself (as the exports do).
            out[values < self._style.threshold] = 0
            out[state == CellState.NOT_COMPUTED] = self._pending
            out[state == CellState.FAILED] = self._failed
            out[state == CellState.SCREENED_NEGATIVE] = self._screened
            out[state == CellState.BACKGROUND] = 0
            self.rgba[r0:r1, c0:c1] = out

    def window_for_cells(self, cells: np.ndarray) -> tuple[int, int, int, int]:
        """The map window whose colours depend on these patches (flat indices): their
        bounding box, grown by the overlap (a patch covers ``k`` x ``k`` map cells)."""
        cols, k = self.grid.geometry.cols, self.grid.geometry.overlap
        r, c = np.divmod(np.asarray(cells, np.int64), cols)
        return int(r.min()), int(r.max()) + k, int(c.min()), int(c.max()) + k

    def probability_at(self, l0_x: float, l0_y: float) -> tuple[CellState, float] | None:
        """State and map value of the cell under a level-0 point; None outside the grid."""
        cell = self.grid.geometry.cell_at(l0_x, l0_y)
        if cell is None:
            return None
        r, c = divmod(cell, self.grid.geometry.cols)
        values, state = self.grid.map((r, r + 1, c, c + 1))
        return CellState(int(state[0, 0])), float(values[0, 0])
