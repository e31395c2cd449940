"""``png_bytes.rgb_png_bytes``: PNG files that libpng and Pillow decode to the very pixels."""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from histoviewer.core.inference.png_bytes import rgb_png_bytes


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 7, 3), (257, 513, 3), (64, 2000, 3)])
def test_png_decodes_to_the_same_pixels_in_libpng_and_pillow(shape):
    rng = np.random.default_rng(sum(shape))
    rgb = rng.integers(0, 256, shape, dtype=np.uint8)
    rgb[: shape[0] // 2] = rgb[: shape[0] // 2] // 16 * 16  # smooth rows too (small "sub" differences)
    png = rgb_png_bytes(rgb)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(imagecodecs.png_decode(png), rgb)  # libpng checks every CRC
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "RGB" and im.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(im), rgb)


def test_png_of_a_non_contiguous_view_and_at_every_level():
    rgb = np.random.default_rng(1).integers(0, 256, (40, 60, 4), dtype=np.uint8)[:, ::2, :3]
    for level in (1, 6, 12):
        np.testing.assert_array_equal(imagecodecs.png_decode(rgb_png_bytes(rgb, level)), rgb)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint16), np.zeros((4, 4), np.uint8),
                                 np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4, 3), np.uint8)])
def test_only_rgb_uint8_pictures_are_written(bad):
    with pytest.raises(ValueError, match="RGB PNG"):
        rgb_png_bytes(bad)
