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

# A flat image is held in memory whole (about 7 bytes a pixel while it is decoded: 0.7 GB
# here); beyond this a pyramidal format is the right tool.
MAX_FLAT_PIXELS = 100_000_000
# The most pixels one byte of a complete file can code, per format: a JPEG needs at least one
# bit per 8 x 8 block (512 px a byte), deflate (PNG, TIFF) at most ~1032:1 on 1-bit rows
# (~8300 px a byte). A file declaring more pixels than its bytes can hold is truncated or a
# decompression bomb (a 631-byte JPEG declaring 20000 x 20000 px cost 46 s and 9.6 GB):
# refused from its header, before anything is decoded.
_MAX_PIXELS_PER_BYTE = {"JPEG": 1024, "MPO": 1024}
_MAX_PIXELS_PER_BYTE_OTHER = 10_000
_MIN_LEVEL_SIDE = 512


def _downsample2(rgb: np.ndarray, rows_per_strip: int = 1024) -> np.ndarray:
    """Halve an RGB image by 2x2 averaging (odd edge rows/columns are dropped), a strip of
    rows at a time so that the 16-bit sums never cost more than one strip."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    out = np.empty((h // 2, w // 2, 3), np.uint8)
    for y in range(0, h, rows_per_strip):
        strip = rgb[y : min(y + rows_per_strip, h), :w]
        view = strip.reshape(strip.shape[0] // 2, 2, w // 2, 2, 3).astype(np.uint16)
        out[y // 2 : y // 2 + view.shape[0]] = (view.sum(axis=(1, 3), dtype=np.uint16) + 2) // 4
    return out


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


def _check_declared_size(path: Path, image: Image.Image) -> None:
    """Refuse, from the header alone, an image larger than ``MAX_FLAT_PIXELS`` or declaring
    more pixels than its file's bytes can code (``_MAX_PIXELS_PER_BYTE``)."""
    pixels = image.width * image.height
    if pixels > MAX_FLAT_PIXELS:
        raise SlideOpenError(
            f"{path}: a flat {image.width}x{image.height} image is too large to open whole "
            f"(more than {MAX_FLAT_PIXELS // 1_000_000} M px); convert it to a tiled pyramidal TIFF")
    n_bytes = max(path.stat().st_size, 1)
    limit = _MAX_PIXELS_PER_BYTE.get(image.format or "", _MAX_PIXELS_PER_BYTE_OTHER)
    if pixels > limit * n_bytes:
        raise SlideOpenError(
            f"{path}: declares {image.width}x{image.height} px but holds only {n_bytes} bytes, "
            f"fewer than any complete {image.format or 'image'} of that size needs: truncated, or "
            "a decompression bomb; refused")


class ImageReader(SlideReader):
    """A flat RGB image presented as a slide (mpp from TIFF resolution tags, if any)."""

    def __init__(self, path: Path) -> None:
        Image.MAX_IMAGE_PIXELS = MAX_FLAT_PIXELS
        try:
            with Image.open(path) as image:
                _check_declared_size(path, image)
                mpp_x, mpp_y = _mpp_from_pil(image)
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    rgb = composite_on_white(np.asarray(image.convert("RGBA")))
                else:  # no alpha: straight to RGB (an RGBA copy of a large image costs 4 B/px)
                    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        except Image.DecompressionBombError as exc:
            raise SlideOpenError(
                f"{path}: declares more than {2 * MAX_FLAT_PIXELS // 1_000_000} M px, too large to "
                "open as a flat image (a decompression bomb, or an image for a pyramidal TIFF)") from exc
        except UnidentifiedImageError as exc:
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
