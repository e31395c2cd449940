"""Fallback backend for flat images (PNG, JPEG, plain TIFF): a single field of view.

The image is decoded once and held in memory with a small in-memory pyramid so that
zoomed-out views do not rescale the full image on every read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from histoviewer.core.errors import SlideOpenError
from histoviewer.core.slide.info import SlideInfo
from histoviewer.core.slide.reader import SlideReader, composite_on_white

# A flat image is held in memory whole; beyond this a pyramidal format is the right tool.
MAX_FLAT_PIXELS = 400_000_000
_MIN_LEVEL_SIDE = 512


def _downsample2(rgb: np.ndarray) -> np.ndarray:
    """Halve an RGB image by 2x2 averaging (odd edge rows/columns are dropped)."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    view = rgb[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).astype(np.uint16)
    return ((view.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)


def _mpp_from_pil(image: Image.Image) -> tuple[float | None, float | None]:
    """Microns per pixel from TIFF resolution tags when they state a physical unit."""
    tags = getattr(image, "tag_v2", None)
    if not tags:
        return None, None
    unit = tags.get(296)  # ResolutionUnit: 2 = inch, 3 = centimetre
    per_unit_um = {2: 25400.0, 3: 10000.0}.get(unit)
    xres, yres = tags.get(282), tags.get(283)
    if per_unit_um is None or not xres or not yres:
        return None, None
    try:
        return per_unit_um / float(xres), per_unit_um / float(yres)
    except (ZeroDivisionError, TypeError, ValueError):
        return None, None


class ImageReader(SlideReader):
    """A flat RGB image presented as a slide (mpp from TIFF resolution tags, if any)."""

    def __init__(self, path: Path) -> None:
        Image.MAX_IMAGE_PIXELS = MAX_FLAT_PIXELS
        try:
            with Image.open(path) as image:
                if image.width * image.height > MAX_FLAT_PIXELS:
                    raise SlideOpenError(
                        f"{path}: a flat {image.width}x{image.height} image is too large to open "
                        "whole; convert it to a tiled pyramidal TIFF"
                    )
                mpp_x, mpp_y = _mpp_from_pil(image)
                rgb = composite_on_white(np.asarray(image.convert("RGBA")))
        except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise SlideOpenError(f"{path}: not a slide or image format HistoViewer can read") from exc
        except OSError as exc:
            raise SlideOpenError(f"{path}: the image data is broken: {exc}") from exc
        self._levels = [rgb]
        while max(self._levels[-1].shape[:2]) > _MIN_LEVEL_SIDE * 2:
            self._levels.append(_downsample2(self._levels[-1]))
        h0, w0 = rgb.shape[:2]
        self.info = SlideInfo(
            path=path,
            backend="image",
            vendor=None,
            level_dimensions=tuple((lv.shape[1], lv.shape[0]) for lv in self._levels),
            level_downsamples=tuple(w0 / lv.shape[1] for lv in self._levels),
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            objective_power=None,
            associated_images=(),
            properties={"histoviewer.flat-image-size": f"{w0}x{h0}"},
        )

    def read_region(self, l0_x: int, l0_y: int, level: int, lv_width: int, lv_height: int) -> np.ndarray:
        if not 0 <= level < len(self._levels):
            raise ValueError(f"level {level} out of range 0..{len(self._levels) - 1}")
        src = self._levels[level]
        ds = self.info.level_downsamples[level]
        out = np.full((max(lv_height, 0), max(lv_width, 0), 3), 255, np.uint8)
        lv_x, lv_y = int(np.floor(l0_x / ds)), int(np.floor(l0_y / ds))
        x0, y0 = max(lv_x, 0), max(lv_y, 0)
        x1, y1 = min(lv_x + lv_width, src.shape[1]), min(lv_y + lv_height, src.shape[0])
        if x1 > x0 and y1 > y0:
            out[y0 - lv_y : y1 - lv_y, x0 - lv_x : x1 - lv_x] = src[y0:y1, x0:x1]
        return out

    def thumbnail(self, max_size: int) -> np.ndarray:
        for level in self._levels:  # first level small enough, else the coarsest
            if max(level.shape[:2]) <= max_size:
                break
        image = Image.fromarray(level)
        image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
        return np.asarray(image)

    def associated_image(self, name: str) -> np.ndarray:
        raise KeyError(f"{self.info.path}: a flat image has no associated images")

    def close(self) -> None:
        self._levels = []
