"""Render any rectangle of an export's output image: slide (or plain background), heatmap,
outlines, scale bar. Everything works in output pixels of the *whole* image, so tiles
rendered separately join without seams and memory stays bounded by one tile.

Frame: output pixel ``(u, v)`` covers level-0 px ``[x0 + u * l0_per_px, + l0_per_px)`` (and
likewise in y) with ``(x0, y0)`` the top-left of ``l0_region``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from histoviewer.core.errors import ExportCancelled, ExportError
from histoviewer.core.colormaps import DEFAULT_COLORMAP, blend_heatmap, colormap_lut
from histoviewer.core.export.legend import (BACKGROUND_RGB, FAILED_RGB, NOT_COMPUTED_RGB, SCREENED_RGB, ScaleBar,
                                            draw_scale_bar)
from histoviewer.core.export.outline import Outline, OutlineStyle, draw_outlines
from histoviewer.core.export.source import HeatmapData
from histoviewer.core.progress import JobControl

__all__ = ["BELOW_THRESHOLD_RGB", "RenderSpec", "TileRenderer", "iter_strips", "output_size"]

BELOW_THRESHOLD_RGB = (235, 235, 235)  # heatmap-only images: computed but below threshold
MAX_OUTPUT_SIDE = 1 << 20  # a sanity bound: a typo in --um-per-px should not fill the disk


def output_size(l0_region: tuple[float, float, float, float], l0_per_px: float) -> tuple[int, int]:
    """(width, height) in output px of ``l0_region`` at ``l0_per_px`` (rounded, at least 1)."""
    if not (l0_per_px > 0 and math.isfinite(l0_per_px)):
        raise ExportError(f"output scale {l0_per_px!r} level-0 px per pixel must be positive")
    w = max(1, round(l0_region[2] / l0_per_px))
    h = max(1, round(l0_region[3] / l0_per_px))
    if max(w, h) > MAX_OUTPUT_SIDE:
        raise ExportError(f"the output would be {w} x {h} px (limit {MAX_OUTPUT_SIDE} per side); "
                          "choose a coarser resolution or a smaller region")
    return w, h


@dataclass(frozen=True)
class RenderSpec:
    """What to draw. ``with_slide`` False: the heatmap alone on a plain background, with
    cells that have no probability in their state colours (see ``legend``)."""

    l0_region: tuple[float, float, float, float]
    l0_per_px: float
    size: tuple[int, int]
    with_slide: bool = True
    colormap: str = DEFAULT_COLORMAP
    opacity: float = 0.5
    threshold: float = 0.0
    outlines: Sequence[Outline] = ()
    outline_style: OutlineStyle = OutlineStyle()
    scale_bar: ScaleBar | None = None

    def __post_init__(self) -> None:
        colormap_lut(self.colormap)  # fail early on an unknown name
        if not 0.0 <= self.threshold <= 1.0:
            raise ExportError(f"threshold {self.threshold} must be between 0 and 1")
        if not 0.0 <= self.opacity <= 1.0:
            raise ExportError(f"opacity {self.opacity} must be between 0 and 1")


class TileRenderer:
    """Renders output rectangles of one export; ``reader`` may be None when
    ``spec.with_slide`` is False. Thread-compatible: one renderer per export thread."""

    def __init__(self, spec: RenderSpec, heatmap: HeatmapData | None, reader=None, source=None) -> None:
        """``source``: where pixels come from when not ``reader`` (a ``TiffRegionSource``:
        same ``read_region`` contract, several times faster on tiled TIFF/SVS)."""
        if spec.with_slide and reader is None:
            raise ExportError("an overlay needs the slide; pass its reader")
        self.spec = spec
        self.heatmap = heatmap
        self.reader = reader
        self.source = source if source is not None else reader
        self.level = reader.best_level_for_downsample(spec.l0_per_px) if reader is not None else 0

    def _slide(self, u0: int, v0: int, w: int, h: int) -> np.ndarray:
        s, reader = self.spec, self.reader
        info = reader.info
        d = float(info.level_downsamples[self.level])
        lw, lh = info.level_dimensions[self.level]
        rx, ry = s.l0_region[0], s.l0_region[1]
        # The tile's rectangle in level px (fractional). Shrinking (BOX: each output pixel
        # averages exactly the source pixels under it) needs nothing outside it; enlarging
        # (bilinear) needs one neighbour. No more: a margin would make every tile decode
        # the neighbouring rows and columns of source tiles too (9 tiles instead of 1 at
        # 1 um/px from a 512 px tiled level, measured 10x slower).
        scale = s.l0_per_px / d
        margin = 0 if scale >= 1.0 else 1
        fx0, fy0 = (rx + u0 * s.l0_per_px) / d, (ry + v0 * s.l0_per_px) / d
        fx1, fy1 = (rx + (u0 + w) * s.l0_per_px) / d, (ry + (v0 + h) * s.l0_per_px) / d
        ix0, iy0 = max(0, math.floor(fx0) - margin), max(0, math.floor(fy0) - margin)
        ix1, iy1 = math.ceil(fx1 - 1e-9) + margin, math.ceil(fy1 - 1e-9) + margin
        if ix0 >= lw or iy0 >= lh:  # wholly outside the slide
            return np.full((h, w, 3), 255, np.uint8)
        # readers return white beyond the slide's edge, so the window may stick out of it
        src = self.source.read_region(round(ix0 * d), round(iy0 * d), self.level, ix1 - ix0, iy1 - iy0)
        img = Image.fromarray(np.ascontiguousarray(src[..., :3]))
        resample = Image.Resampling.BOX if scale >= 1.0 else Image.Resampling.BILINEAR
        sh, sw = src.shape[:2]
        box = (fx0 - ix0, fy0 - iy0, min(fx1 - ix0, sw), min(fy1 - iy0, sh))
        return np.asarray(img.resize((w, h), resample=resample, box=box))

    def _values(self, u0: int, v0: int, w: int, h: int) -> np.ndarray:
        s = self.spec
        l0_x = s.l0_region[0] + (np.arange(u0, u0 + w) + 0.5) * s.l0_per_px
        l0_y = s.l0_region[1] + (np.arange(v0, v0 + h) + 0.5) * s.l0_per_px
        return self.heatmap.sample(l0_x, l0_y)

    def render(self, u0: int, v0: int, w: int, h: int) -> np.ndarray:
        """Output pixels ``[u0, u0 + w) x [v0, v0 + h)`` as uint8 RGB (h, w, 3)."""
        s = self.spec
        if s.with_slide:
            rgb = self._slide(u0, v0, w, h)
            if self.heatmap is not None:
                rgb = blend_heatmap(rgb, self._values(u0, v0, w, h), s.colormap, s.opacity, s.threshold)
        else:
            vals = self._values(u0, v0, w, h)
            rgb = np.empty((h, w, 3), np.uint8)
            rgb[:] = BACKGROUND_RGB
            with np.errstate(invalid="ignore"):
                rgb[np.isnan(vals)] = NOT_COMPUTED_RGB
                rgb[vals == -2.0] = FAILED_RGB
                rgb[vals == -3.0] = SCREENED_RGB
                rgb[(vals >= 0) & (vals < s.threshold)] = BELOW_THRESHOLD_RGB
            rgb = blend_heatmap(rgb, vals, s.colormap, s.opacity, s.threshold)
        if s.outlines or s.scale_bar is not None:
            img = Image.fromarray(rgb)
            draw = ImageDraw.Draw(img)
            if s.outlines:
                draw_outlines(draw, s.outlines, l0_origin=s.l0_region[:2], l0_per_px=s.l0_per_px,
                              tile_offset=(u0, v0), tile_size=(w, h), style=s.outline_style)
            bar = s.scale_bar
            if bar is not None and bar.rect[2] >= u0 and bar.rect[0] < u0 + w \
                    and bar.rect[3] >= v0 and bar.rect[1] < v0 + h:
                draw_scale_bar(draw, bar, (u0, v0))
            rgb = np.asarray(img)
        return rgb


def iter_strips(renderer: TileRenderer, strip_h: int, tile_w: int, control: JobControl,
                pad_to: tuple[int, int] | None = None,
                stage: str = "Rendering") -> Iterator[tuple[int, np.ndarray]]:
    """``(v0, strip)`` for strips of ``strip_h`` output rows, top to bottom, each rendered in
    tiles ``tile_w`` wide; cancellation is checked (``ExportCancelled``) and progress reported
    per tile, as ``stage``.

    ``pad_to`` (width multiple, height multiple): strips are padded with white to multiples
    (a tiled TIFF's full tiles).
    """
    width, height = renderer.spec.size
    n_cols, n_rows = math.ceil(width / tile_w), math.ceil(height / strip_h)
    total, done = n_cols * n_rows, 0
    control.report(stage, 0, total)
    for r in range(n_rows):
        v0 = r * strip_h
        h = min(strip_h, height - v0)
        sw, sh = (width, h)
        if pad_to is not None:
            sw = math.ceil(width / pad_to[0]) * pad_to[0]
            sh = math.ceil(h / pad_to[1]) * pad_to[1]
        strip = np.full((sh, sw, 3), 255, np.uint8)
        for c in range(n_cols):
            control.check("export", ExportCancelled)
            u0 = c * tile_w
            w = min(tile_w, width - u0)
            strip[:h, u0 : u0 + w] = renderer.render(u0, v0, w, h)
            done += 1
            control.report(stage, done, total)
        yield v0, strip
