"""A small tissue mask computed on a low-resolution image of a slide.

Method: stained tissue is coloured, glass and background are grey/white, so threshold the
HSV saturation with Otsu (floored at ``MIN_SATURATION`` so a blank slide does not turn
noise into tissue), drop near-black pixels (pen marks, scanner borders), then clean up:
closing (joins cells into tissue), removal of specks smaller than ``min_object_um2`` and
filling of holes smaller than ``min_hole_um2`` (fat, lumen inside tissue).

Frames: the mask has ``mask_px`` pixels; ``l0_per_px_x/y`` convert to level-0 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_holes, remove_small_objects

from histoviewer.core.slide.reader import SlideReader

__all__ = ["MIN_SATURATION", "TissueMap", "slide_tissue_map", "tissue_mask"]

MIN_SATURATION = 0.07  # below this nothing counts as stained, whatever Otsu says
MAX_DARK = 30  # max(R, G, B) below this is ink or a scanner border, not tissue


def tissue_mask(
    rgb: np.ndarray,
    *,
    mask_mpp: float | None = None,
    min_object_um2: float = 2500.0,
    min_hole_um2: float = 2500.0,
) -> np.ndarray:
    """Boolean tissue mask of a low-resolution uint8 RGB image (True = tissue).

    ``mask_mpp`` (um per mask pixel) sizes the clean-up; when unknown, specks and holes
    under 0.01 % of the image are removed instead.
    """
    img = np.asarray(rgb)[..., :3].astype(np.float32)
    vmax = img.max(axis=-1)
    sat = (vmax - img.min(axis=-1)) / np.maximum(vmax, 1.0)
    if sat.size == 0 or float(sat.max()) < MIN_SATURATION:
        return np.zeros(sat.shape, bool)
    try:
        thr = max(float(threshold_otsu(sat)), MIN_SATURATION)
    except ValueError:  # a constant image
        thr = MIN_SATURATION
    mask = (sat >= thr) & (vmax >= MAX_DARK)
    mask = ndi.binary_closing(mask, structure=np.ones((3, 3), bool), iterations=2, border_value=0)
    if mask_mpp is not None:
        min_obj = max(1, int(min_object_um2 / mask_mpp**2))
        min_hole = max(1, int(min_hole_um2 / mask_mpp**2))
    else:
        min_obj = min_hole = max(1, mask.size // 10_000)
    mask = remove_small_objects(mask, max_size=min_obj)  # removes objects of <= max_size px
    return remove_small_holes(mask, max_size=min_hole)


@dataclass(frozen=True)
class TissueMap:
    """A tissue mask with its scale: mask pixel ``(r, c)`` covers level-0 px
    ``[c * l0_per_px_x, (c + 1) * l0_per_px_x)`` x ``[r * l0_per_px_y, ...)``."""

    mask: np.ndarray
    l0_per_px_x: float
    l0_per_px_y: float

    def fractions(self, l0_x: np.ndarray, l0_y: np.ndarray, l0_size: float) -> np.ndarray:
        """Tissue fraction (0..1) of squares of side ``l0_size`` at level-0 ``(l0_x, l0_y)`` (top-left).

        Squares are snapped to whole mask pixels (at least one); parts outside the mask
        count as background. Vectorised with an integral image.
        """
        h, w = self.mask.shape
        ii = np.zeros((h + 1, w + 1), np.int64)
        ii[1:, 1:] = self.mask.cumsum(0).cumsum(1)
        x0 = np.floor(np.asarray(l0_x, float) / self.l0_per_px_x).astype(np.int64)
        y0 = np.floor(np.asarray(l0_y, float) / self.l0_per_px_y).astype(np.int64)
        nx = max(1, int(round(l0_size / self.l0_per_px_x)))
        ny = max(1, int(round(l0_size / self.l0_per_px_y)))
        x1, y1 = np.clip(x0 + nx, 0, w), np.clip(y0 + ny, 0, h)
        x0, y0 = np.clip(x0, 0, w), np.clip(y0, 0, h)
        inside = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
        return inside / float(nx * ny)


def slide_tissue_map(reader: SlideReader, *, l0_px_per_mask_px: float, max_side: int = 4096) -> TissueMap:
    """Tissue map of a whole slide from its thumbnail, about ``l0_px_per_mask_px`` level-0
    px per mask px (coarser when the mask would exceed ``max_side`` px)."""
    l0_w, l0_h = reader.info.dimensions
    side = int(np.clip(np.ceil(max(l0_w, l0_h) / max(l0_px_per_mask_px, 1.0)), 16, max_side))
    thumb = reader.thumbnail(side)
    sx, sy = l0_w / thumb.shape[1], l0_h / thumb.shape[0]
    mpp = reader.info.mpp
    mask = tissue_mask(thumb, mask_mpp=None if mpp is None else mpp * (sx + sy) / 2)
    return TissueMap(mask=mask, l0_per_px_x=sx, l0_per_px_y=sy)
