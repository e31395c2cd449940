"""OpenSlide backend: every format OpenSlide 4 reads (SVS, NDPI, MRXS, SCN, TIFF, DICOM, ...)."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from histoviewer.core.errors import SlideOpenError, SlideReadError
from histoviewer.core.slide.info import SlideInfo
from histoviewer.core.slide.reader import SlideReader, composite_on_white, rgb_of_rgba

log = logging.getLogger(__name__)

# A thumbnail may read this many pixels of one level at once (64 MB as RGBA): above it the
# level is shrunk block by block, and above MAX_THUMBNAIL_SOURCE_PIXELS (about 46000 x 46000,
# ~20 s of decoding) it is refused: only a slide without a pyramid gets there.
THUMBNAIL_DIRECT_PIXELS = 16 * 1024 * 1024
MAX_THUMBNAIL_SOURCE_PIXELS = 2**31
_THUMBNAIL_BLOCK_PX = 4096
# A 75 mm glass slide at 0.1 um/px (finer than any scanner) is 750,000 px long.
MAX_SLIDE_SIDE_PX = 1_000_000


def _float_property(props: dict[str, str], key: str) -> float | None:
    """A positive float property, or None when absent, unparsable or zero."""
    try:
        value = float(props[key])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None


def _check_dimensions(path: Path, level_dimensions: tuple[tuple[int, int], ...]) -> None:
    """Refuse a file declaring a level larger than any glass slide: 75 mm at 0.1 um/px is
    750,000 px. Every size derived from it (analysis grids, masks, exports) would be absurd."""
    for w, h in level_dimensions:
        if max(w, h) > MAX_SLIDE_SIDE_PX:
            raise SlideOpenError(
                f"{path}: declares a level of {w} x {h} px, larger than any scanned glass slide "
                f"(at most {MAX_SLIDE_SIDE_PX:,} px a side); refused as damaged or hostile")


class OpenSlideReader(SlideReader):
    """A slide read through OpenSlide.

    OpenSlide puts a handle into a permanent error state after any failed read, so a
    failure would blank the rest of the slide. We reopen the handle after a failure
    (under a lock) so one broken tile costs only that tile.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        try:
            self._slide = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideOpenError(f"{path}: not a slide format OpenSlide can read ({exc})") from exc
        except openslide.OpenSlideError as exc:
            raise SlideOpenError(f"{path}: OpenSlide cannot open this file: {exc}") from exc
        self._generation = 0
        self.info = self._read_info()
        _check_dimensions(path, self.info.level_dimensions)

    def _read_info(self) -> SlideInfo:
        props = dict(self._slide.properties)
        return SlideInfo(
            path=self._path,
            backend="openslide",
            vendor=props.get(openslide.PROPERTY_NAME_VENDOR),
            level_dimensions=tuple(tuple(int(v) for v in d) for d in self._slide.level_dimensions),
            level_downsamples=tuple(float(d) for d in self._slide.level_downsamples),
            # as stated (inf, -0.5, "abc" included): SlideInfo checks the scale and says why it is unknown
            # (OpenSlide itself drops an Aperio "MPP = nan": the raw value then gives the reason)
            mpp_x=props.get(openslide.PROPERTY_NAME_MPP_X, props.get("aperio.MPP")),  # type: ignore[arg-type]
            mpp_y=props.get(openslide.PROPERTY_NAME_MPP_Y, props.get("aperio.MPP")),  # type: ignore[arg-type]
            objective_power=_float_property(props, openslide.PROPERTY_NAME_OBJECTIVE_POWER),
            associated_images=tuple(self._slide.associated_images.keys()),
            properties=props,
        )

    def _recover(self, failed_generation: int) -> None:
        """Replace the handle that entered OpenSlide's sticky error state (once per failure)."""
        with self._lock:
            if self._generation != failed_generation:
                return  # another thread already reopened it
            try:
                fresh = openslide.OpenSlide(str(self._path))
            except openslide.OpenSlideError as exc:
                log.warning("%s: could not reopen after a read error: %s", self._path, exc)
                return
            old, self._slide = self._slide, fresh
            self._generation += 1
        # The old handle may still be in use by a concurrent read; leave it to the GC
        # rather than closing it under that reader.
        del old

    def read_region(self, l0_x: int, l0_y: int, level: int, lv_width: int, lv_height: int) -> np.ndarray:
        if not 0 <= level < self.info.level_count:
            raise ValueError(f"level {level} out of range 0..{self.info.level_count - 1}")
        if lv_width <= 0 or lv_height <= 0:
            return np.full((max(lv_height, 0), max(lv_width, 0), 3), 255, np.uint8)
        slide, generation = self._slide, self._generation
        try:
            image = slide.read_region((int(l0_x), int(l0_y)), level, (int(lv_width), int(lv_height)))
        except openslide.OpenSlideError as exc:
            self._recover(generation)
            raise SlideReadError(
                f"{self._path}: cannot read level {level} at level-0 ({l0_x}, {l0_y}), "
                f"{lv_width}x{lv_height} px: {exc}"
            ) from exc
        return rgb_of_rgba(np.asarray(image))

    def thumbnail(self, max_size: int) -> np.ndarray:
        """The slide fitted in ``max_size`` px. OpenSlide's own thumbnail reads the best level
        for it whole, which for a slide without a pyramid (one 10^5 x 10^5 px level) is tens of
        GB: above ``THUMBNAIL_DIRECT_PIXELS`` we shrink that level block by block instead
        (memory: one block), and above ``MAX_THUMBNAIL_SOURCE_PIXELS`` refuse."""
        level = self._slide.get_best_level_for_downsample(
            max(d / max_size for d in self.info.level_dimensions[0]))
        lv_w, lv_h = self.info.level_dimensions[level]
        if lv_w * lv_h > THUMBNAIL_DIRECT_PIXELS:
            if lv_w * lv_h > MAX_THUMBNAIL_SOURCE_PIXELS:
                raise SlideReadError(
                    f"{self._path}: a thumbnail would have to read {lv_w} x {lv_h} px (the slide has "
                    f"no smaller level), more than {MAX_THUMBNAIL_SOURCE_PIXELS / 1e9:.1f} G px; "
                    "refused. Convert it to a pyramidal TIFF (e.g. with libvips) to view it")
            return self._thumbnail_by_blocks(level, max_size)
        try:
            image = self._slide.get_thumbnail((max_size, max_size))
        except openslide.OpenSlideError as exc:
            self._recover(self._generation)
            raise SlideReadError(f"{self._path}: cannot read a thumbnail: {exc}") from exc
        return composite_on_white(np.asarray(image.convert("RGBA")))

    def _thumbnail_by_blocks(self, level: int, max_size: int) -> np.ndarray:
        """``level`` shrunk by a whole factor with a box average, one block of about
        ``_THUMBNAIL_BLOCK_PX`` square at a time, then fitted to ``max_size`` (Lanczos)."""
        lv_w, lv_h = self.info.level_dimensions[level]
        ds = self.info.level_downsamples[level]
        factor = max(1, max(lv_w, lv_h) // max_size)  # the shrunk image is at least max_size
        block = factor * max(1, _THUMBNAIL_BLOCK_PX // factor)
        out = Image.new("RGB", (math.ceil(lv_w / factor), math.ceil(lv_h / factor)), "white")
        for y in range(0, lv_h, block):
            for x in range(0, lv_w, block):
                w, h = min(block, lv_w - x), min(block, lv_h - y)
                rgb = self.read_region(int(x * ds), int(y * ds), level, w, h)
                piece = Image.fromarray(np.ascontiguousarray(rgb)).reduce(factor)
                out.paste(piece, (x // factor, y // factor))
        out.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
        return np.asarray(out)

    def associated_image(self, name: str) -> np.ndarray:
        try:
            image = self._slide.associated_images[name]
        except KeyError:
            raise KeyError(f"{self._path}: no associated image named {name!r}") from None
        except openslide.OpenSlideError as exc:
            raise SlideReadError(f"{self._path}: cannot read associated image {name!r}: {exc}") from exc
        return composite_on_white(np.asarray(image.convert("RGBA")))

    def close(self) -> None:
        self._slide.close()
