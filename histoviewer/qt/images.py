"""numpy <-> QImage conversions (safe to call from worker threads: QImage, not QPixmap)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def rgb_to_qimage(rgb: np.ndarray) -> tuple[QImage, int]:
    """An RGB uint8 array as a QImage that owns its pixels, and its size in bytes.

    Converted to ``Format_RGB32`` because the raster paint engine blits that format
    without per-pixel conversion, which keeps warm-cache frames cheap.
    """
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888)
    image = image.convertToFormat(QImage.Format.Format_RGB32)  # a deep copy: owns its memory
    return image, image.sizeInBytes()


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """A QImage as an RGB uint8 array (copy)."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()
