"""The ``SlideReader`` interface every backend implements."""

from __future__ import annotations

import abc

import numpy as np

from histoviewer.core.slide.info import SlideInfo


class SlideReader(abc.ABC):
    """Read-only access to a multi-resolution slide.

    Coordinates: ``l0_x``/``l0_y`` are level-0 pixels (the top-left of the region);
    ``lv_width``/``lv_height`` are pixels of the requested level. Region reads return
    ``uint8`` RGB arrays of shape (lv_height, lv_width, 3) with transparent areas
    (outside the scanned area) composited on white. Reads may come from several
    threads at once; ``close`` must be called only after readers have stopped.
    """

    info: SlideInfo

    @abc.abstractmethod
    def read_region(self, l0_x: int, l0_y: int, level: int, lv_width: int, lv_height: int) -> np.ndarray:
        """Read an RGB region; raises ``SlideReadError`` when the pixel data is broken."""

    @abc.abstractmethod
    def thumbnail(self, max_size: int) -> np.ndarray:
        """The whole slide as RGB, fitting in ``max_size`` x ``max_size`` pixels."""

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


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA (straight alpha) uint8 to RGB uint8, transparent pixels becoming white."""
    alpha = rgba[..., 3]
    rgb = rgba[..., :3]
    if alpha.size == 0 or alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)[..., None]
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)
