"""heatmap.png's key: the colour bar and, on a screened map, the screened-negative veil's swatch."""

from __future__ import annotations

import numpy as np
from PIL import Image

from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import ENCODED, CellState
from histoviewer.core.inference.heatmap_key import (
    KEY_MIN_PX,
    TISSUE_RGB,
    blend,
    key_box,
)
from histoviewer.core.inference.outputs import heatmap_base, write_heatmap_png
from histoviewer.core.inference.overlay import SCREENED_RGBA

SCREENED = ENCODED[CellState.SCREENED_NEGATIVE]


def _picture(tmp_path, encoded: np.ndarray, px_per_cell: int = 50) -> np.ndarray:
    rows, cols = encoded.shape
    geo = GridGeometry(
        l0_width=100 * cols,
        l0_height=100 * rows,
        slide_mpp=1.0,
        model_mpp=1.0,
        patch_px=100,
        stride_px=100,
    )
    thumbnail = np.full(
        (rows * px_per_cell, cols * px_per_cell, 3), TISSUE_RGB, np.uint8
    )
    write_heatmap_png(tmp_path / "h.png", thumbnail, encoded, geo)
    return np.asarray(Image.open(tmp_path / "h.png"))[..., :3]


def _has_colour(area: np.ndarray, rgb: np.ndarray) -> bool:
    return bool(np.any(np.all(area == np.asarray(rgb, np.uint8), axis=-1)))


def _veil_swatch() -> np.ndarray:
    grey = heatmap_base(np.asarray(TISSUE_RGB, np.uint8).reshape(1, 1, 3))
    *veil, alpha = SCREENED_RGBA
    return blend(
        grey, round(alpha * 256 / 255), np.asarray(veil, np.uint8).reshape(1, 1, 3)
    )[0, 0]


def test_a_screened_heatmap_keys_its_veil_with_the_very_colour_it_paints(tmp_path):
    """The key sits in the corner with the least tissue (the top-right here: background),
    and its veil swatch is the colour a screened-negative tissue cell is painted."""
    encoded = np.full((12, 12), SCREENED, np.float32)
    encoded[:4, 8:] = -1.0  # background in the top-right corner only
    encoded[6, 6] = 0.9
    png = _picture(tmp_path, encoded)
    assert png.shape[:2] == (600, 600) and min(png.shape[:2]) >= KEY_MIN_PX
    veiled_cell = png[25, 25]  # a screened-negative cell: veil over the greyed tissue
    np.testing.assert_array_equal(veiled_cell, _veil_swatch())
    x0, y0, x1, y1 = key_box(encoded, (600, 600), screened=True)
    assert x0 > 300 and y1 < 300  # top-right
    key = png[y0:y1, x0:x1]
    assert _has_colour(key, veiled_cell)  # the swatch
    assert _has_colour(key, (255, 255, 255))  # the card
    # outside the key the picture is untouched: the top-left cell is the veil, the
    # bottom-right corner's background is the greyed thumbnail
    assert np.all(png[:50, :50] == veiled_cell)


def test_without_screened_cells_the_key_has_no_veil_swatch_and_a_small_picture_no_key(
    tmp_path,
):
    encoded = np.full((12, 12), 0.1, np.float32)
    encoded[8:, :4] = -1.0  # background bottom-left
    png = _picture(tmp_path, encoded)
    x0, y0, x1, y1 = key_box(encoded, (600, 600), screened=False)
    assert x1 < 300 and y0 > 300  # bottom-left
    key = png[y0:y1, x0:x1]
    assert _has_colour(key, (255, 255, 255)) and not _has_colour(key, _veil_swatch())
    # a picture below KEY_MIN_PX: painted cells only
    small = np.full((4, 4), SCREENED, np.float32)
    png = _picture(tmp_path, small, px_per_cell=KEY_MIN_PX // 4 - 1)
    assert (
        np.all(png == png[0, 0])
        and key_box(small, png.shape[1::-1], screened=True) is None
    )
