"""What an image export is asked to draw: frozen requests for ``export_overlay`` and
``export_heatmap_image``, validated where they are made (so a dialog or a command line
reports a bad value before any pixel is read).

Frames and units: ``l0_region`` is (x, y, width, height) in level-0 slide pixels (None: the
whole slide); the output scale is either ``output_mpp`` (micrometres per output pixel) or
``l0_per_output_px`` (level-0 pixels per output pixel), never both; neither picks the
finest scale that keeps the longer side within ``max_side_px``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from histoviewer.core.colormaps import COLORMAPS, DEFAULT_COLORMAP
from histoviewer.core.errors import ExportError
from histoviewer.core.export.outline import Outline, OutlineStyle

__all__ = ["DEFAULT_MAX_SIDE_PX", "HeatmapImageRequest", "ImageRequest", "OverlayRequest", "parse_region"]

DEFAULT_MAX_SIDE_PX = 4096

L0Region = tuple[float, float, float, float]


def parse_region(text: str) -> L0Region:
    """A typed region, ``x, y, width, height`` in level-0 pixels -> a tuple of floats.

    Accepted (the union of what the export dialog and ``export-heatmap --region`` took):
    four numbers separated by commas, semicolons and/or whitespace, in any mix
    (``"10,20,300,400"``, ``"10, 20, 300, 400"``, ``"10 20 300 400"``, ``"10;20;300;400"``,
    ``"1, 2 3;4"``); decimals and exponents as Python's ``float`` reads them. Width and
    height must be positive and every number finite. ``ValueError`` says what is wrong.
    """
    parts = [p for p in re.split(r"[,;\s]+", text) if p]
    if len(parts) != 4:
        raise ValueError(f"region {text!r}: type it as x, y, width, height in level-0 pixels")
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"region {text!r}: x, y, width and height must be numbers") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"region {text!r}: the numbers must be finite")
    if w <= 0 or h <= 0:
        raise ValueError(f"region {text!r}: the width and height must be positive")
    return x, y, w, h


@dataclass(frozen=True)
class ImageRequest:
    """What both image exports share. ``scale_bar``: None draws one on PNG, not on TIFF
    (viewers draw their own); ``legend``: a band below a PNG, ``<file>.legend.png`` beside a
    TIFF; ``tile_px``: output tile (and streamed strip) size."""

    l0_region: L0Region | None = None
    output_mpp: float | None = None
    l0_per_output_px: float | None = None
    colormap: str = DEFAULT_COLORMAP
    threshold: float = 0.5
    threshold_source: str = ""  # where threshold came from (analysis/threshold.py), "" for a display choice
    outlines: Sequence[Outline] = ()
    outline_style: OutlineStyle = field(default_factory=OutlineStyle)
    scale_bar: bool | None = None
    legend: bool = True
    max_side_px: int = DEFAULT_MAX_SIDE_PX
    tile_px: int = 512
    jpeg_quality: int = 90
    record_full_slide_path: bool = False  # provenance: the slide's full path, not its file name

    def __post_init__(self) -> None:
        object.__setattr__(self, "outlines", tuple(self.outlines))
        if self.l0_region is not None:
            region = tuple(float(v) for v in self.l0_region)
            if len(region) != 4 or not all(math.isfinite(v) for v in region):
                raise ExportError(f"region {self.l0_region!r} must be four finite numbers x, y, width, height",
                                  setting="l0_region")
            if region[2] <= 0 or region[3] <= 0:
                raise ExportError(f"region {self.l0_region!r}: width and height must be positive",
                                  setting="l0_region")
            object.__setattr__(self, "l0_region", region)
        if self.output_mpp is not None and self.l0_per_output_px is not None:
            raise ExportError("give the output scale in micrometres per pixel or in level-0 pixels per "
                              "output pixel, not both")
        if self.output_mpp is not None and not (self.output_mpp > 0 and math.isfinite(self.output_mpp)):
            raise ExportError(f"resolution {self.output_mpp} um/px must be positive", setting="output_mpp")
        if self.l0_per_output_px is not None and not (self.l0_per_output_px > 0
                                                      and math.isfinite(self.l0_per_output_px)):
            raise ExportError(f"scale {self.l0_per_output_px} level-0 px per output px must be positive")
        if self.colormap not in COLORMAPS:
            raise ExportError(f"unknown colour map {self.colormap!r}; choose one of "
                              f"{', '.join(sorted(COLORMAPS))}", setting="colormap")
        if not 0.0 <= self.threshold <= 1.0:
            raise ExportError(f"threshold {self.threshold} must be between 0 and 1", setting="threshold")
        if self.max_side_px < 1 or self.tile_px < 1:
            raise ExportError("the output side and tile size must be at least one pixel")
        if not 1 <= self.jpeg_quality <= 100:
            raise ExportError(f"JPEG quality {self.jpeg_quality} must be 1..100")


@dataclass(frozen=True)
class OverlayRequest(ImageRequest):
    """The slide with the heatmap blended over it at ``opacity``; probabilities below
    ``threshold`` are not coloured. ``fast_tiff``: decode tiled TIFF/SVS tiles directly (as
    ``analyze`` does), else every read goes through the slide reader."""

    opacity: float = 0.5
    fast_tiff: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.opacity <= 1.0:
            raise ExportError(f"opacity {self.opacity} must be between 0 and 1", setting="opacity")


@dataclass(frozen=True)
class HeatmapImageRequest(ImageRequest):
    """The heatmap alone: probabilities at or above ``threshold`` in ``colormap``, other
    cells in the state colours the legend explains. ``slide_path`` is recorded in the
    provenance. Default scale: a whole number of output pixels per map cell."""

    slide_path: str = ""
    threshold: float = 0.0
    max_side_px: int = 2048
    jpeg_quality: int = 95
