"""The ``SlideReader`` interface every backend implements."""

from __future__ import annotations

import abc

import math

import numpy as np
from PIL import Image

from histoviewer.core.slide.info import SlideInfo


class SlideReader(abc.ABC):
    """Read-only access to a multi-resolution slide.

    Coordinates: ``l0_x``/``l0_y`` are level-0 pixels (the top-left of the region);
    ``lv_width``/``lv_height`` are pixels of the requested level. Region reads return
    ``uint8`` RGB arrays of shape (lv_height, lv_width, 3) with transparent areas
    (outside the scanned area) composited on white. They may be read-only and need not
    be C-contiguous (an opaque tile is returned as the RGB view of its RGBA pixels):
    copy before writing, ``np.ascontiguousarray`` where contiguous memory is needed.
    Reads may come from several threads at once; ``close`` must be called only after
    readers have stopped.
    """

    info: SlideInfo

    @abc.abstractmethod
    def read_region(self, l0_x: int, l0_y: int, level: int, lv_width: int, lv_height: int) -> np.ndarray:
        """Read an RGB region; raises ``SlideReadError`` when the pixel data is broken."""

    @abc.abstractmethod
    def thumbnail(self, max_size: int) -> np.ndarray:
        """The whole slide as RGB, fitting in ``max_size`` x ``max_size`` pixels."""

    def overview(self, max_side: int) -> np.ndarray:
        """The whole slide as RGB from its coarsest level, fitting in ``max_side`` px: cheap.

        Unlike ``thumbnail`` this never reads a finer level and never resamples with a
        filter: the coarsest level is shrunk by a whole factor with a box average. The
        viewer uses it as its fallback picture and overview, where speed matters more
        than hitting an exact size.
        """
        level = self.info.level_count - 1
        lv_w, lv_h = self.info.level_dimensions[level]
        if lv_w * lv_h > 16 * 1024 * 1024:  # no small level (no pyramid): bounded, by blocks
            return self.thumbnail(max_side)
        rgb = self.read_region(0, 0, level, lv_w, lv_h)
        factor = math.ceil(max(lv_w, lv_h) / max_side)
        if factor <= 1:
            return rgb
        return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).reduce(factor))

    @abc.abstractmethod
    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (label, macro, ...) as RGB. Call only on the user's request."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file. Not thread-safe: stop readers first."""

    def best_level_for_downsample(self, downsample: float) -> int:
        """The finest level whose downsample does not exceed ``downsample``.

        A small tolerance absorbs scanners' non-integer downsamples (2.0005 for 2).
        """
        best = 0
        for level, level_ds in enumerate(self.info.level_downsamples):
            if level_ds <= downsample * 1.01:
                best = level
        return best

    def __enter__(self) -> "SlideReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_opaque(rgba: np.ndarray) -> bool:
    """Every alpha is 255. As little-endian uint32 the alpha is the top byte, so the
    minimum over a contiguous view answers it without a strided pass over the alphas."""
    if rgba.size == 0:
        return True
    if rgba.flags.c_contiguous:
        return int(rgba.view("<u4").min()) >= 0xFF000000
    return int(rgba[..., 3].min()) == 255


def rgb_of_rgba(rgba: np.ndarray) -> np.ndarray:
    """RGB of RGBA pixels composited on white, as ``read_region`` returns it.

    Opaque pixels (nearly every tile) come back as the view ``rgba[..., :3]``: no copy,
    so a tile costs the loader no more than the raw read; the Qt converter turns the
    RGBA memory behind it into its image format directly.
    """
    return rgba[..., :3] if _is_opaque(rgba) else composite_on_white(rgba)


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA (straight alpha) uint8 to contiguous RGB uint8, transparent pixels becoming white.

    Opaque input is only repacked to RGB. PIL does that about 3x faster than numpy's
    strided copy of ``rgba[..., :3]`` (0.45 vs 1.3 ms per 512 px tile); the result is
    then read-only.
    """
    if _is_opaque(rgba):
        # The PIL fast path is for one (h, w, 4) image; batches (n, h, w, 4) take numpy's.
        if rgba.size == 0 or rgba.ndim != 3 or not rgba.flags.c_contiguous:
            return np.ascontiguousarray(rgba[..., :3])
        h, w = rgba.shape[:2]
        return np.asarray(Image.frombuffer("RGBA", (w, h), rgba, "raw", "RGBA", 0, 1).convert("RGB"))
    alpha = rgba[..., 3]
    rgb = rgba[..., :3]
    a = alpha.astype(np.uint16)[..., None]
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)
