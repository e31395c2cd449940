"""A lesion's outline inside its map cells, from a tumour-fraction raster (sub-cell mapping).

A tumour-fraction map says how much of each cell is tumour, not where in the cell it lies.
Thresholding the interpolated map at 0.5 (the older outline) keeps a cell's tumour only where
the interpolated value reaches 0.5: a lesion's pointed ends and thin parts taper into cells
less than half tumour, so they are cut off, and every diameter comes out short (on the real
CAMELYON16 lesions the median error was -0.5 .. -5 um at 2 .. 16 um cells, with a long tail
below). That loss is one-sided, so micrometastases near 0.2 mm were called ITC and never the
other way round.

Here the outline instead keeps *exactly* each cell's stated tumour area, placed where the
tumour most likely is: "soft-then-hard" sub-pixel mapping (as used for land-cover fraction
images in remote sensing): the map is interpolated bilinearly onto ``u x u`` fine pixels per
cell, and in every cell of the lesion (and the ring of cells around it) the ``round(f u^2)``
fine pixels of highest interpolated value become tumour, ``f`` being the cell's value. So a
cell half tumour gives half its pixels, on the side of its more tumorous neighbours; a pointed
end's cell of 0.2 contributes a fifth of a cell on the lesion's side instead of nothing. By
construction the outline's area equals the map's tumour area (to a fine pixel per cell), a
straight edge lies where the cell fractions put it, and nothing is added or removed by a
constant: no shape (round or pointed) is favoured. ``benchmarks/bench_diameter_bias.py``
measures what remains (docs/benchmarks.md: median -0.07 .. -0.03 cell on real lesions).

Only tumour-fraction maps are read this way (``MapFrame.l0_window == 0``). A patch
classifier's map with a label window is not a fraction (a cell is "tumour anywhere in the
window"); its outline is the thresholded one, eroded by the window (``lesions.py``), which
the same benchmark finds unbiased on such maps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["fraction_preserving_mask"]

_EIGHT = np.ones((3, 3), bool)


def fraction_preserving_mask(crop: np.ndarray, component: np.ndarray, fine: np.ndarray, u: int) -> np.ndarray:
    """Fine mask (``rows*u x cols*u``) of the lesion whose map cells are ``component``.

    ``crop``: tumour fractions 0..1 of the crop's cells (other lesions' cells already 0);
    ``fine``: the crop interpolated onto ``u x u`` fine px per cell (fine px ``j`` centred at
    cell coordinate ``(j + 0.5) / u - 0.5``), which only ranks the fine px inside each cell.
    Cells of the component and the ring of cells touching it give ``round(f u^2)`` px each;
    of the pieces that makes, those touching the component's cells are the lesion.
    """
    rows, cols = crop.shape
    near = ndimage.binary_dilation(component, _EIGHT)
    wanted = np.rint(np.where(near, crop, 0.0) * (u * u)).astype(np.int64)
    # fine px grouped by cell: (rows, cols, u*u), ranked within each cell by value
    blocks = fine.reshape(rows, u, cols, u).transpose(0, 2, 1, 3).reshape(rows, cols, u * u)
    order = np.argsort(-blocks, axis=2, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(u * u), order.shape), axis=2)
    chosen = rank < wanted[:, :, None]
    mask = chosen.reshape(rows, cols, u, u).transpose(0, 2, 1, 3).reshape(rows * u, cols * u)
    pieces, _n = ndimage.label(mask, _EIGHT)
    own_cells = np.kron(component, np.ones((u, u), bool))
    keep = np.unique(pieces[own_cells & mask])
    return np.isin(pieces, keep[keep > 0])
