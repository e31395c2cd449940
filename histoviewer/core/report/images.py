"""The pictures of a slide's report page, rendered with the export renderer (no Qt).

- the thumbnail: the whole slide with the heatmap blended over it (the exports' colour
  map and threshold rule) and every lesion outlined, numbered, with a scale bar;
- one snapshot per largest lesion: the slide around the lesion's box at a resolution that
  fits it in ``snapshot_px``, its outline and diameter line drawn, with a scale bar.

Pixels come from the slide's pyramid (``TileRenderer``: the level nearest the output scale),
never from its label or macro image. When the slide file cannot be opened (moved, another
machine), the thumbnail falls back to the ``heatmap.png`` that ``analyze`` wrote and the
snapshots are left out, with a note saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from histoviewer.core.analysis.lesion_io import LESION_COLORS
from histoviewer.core.colormaps import DEFAULT_COLORMAP
from histoviewer.core.errors import ExportCancelled, HistoViewerError
from histoviewer.core.export.legend import scale_bar_for
from histoviewer.core.export.outline import Outline, OutlineStyle, draw_outlines
from histoviewer.core.export.render import RenderSpec, TileRenderer, iter_strips, output_size
from histoviewer.core.export.source import HeatmapData, clip_region, read_analysis
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.report.model import LesionEntry, SlideReport
from histoviewer.core.slide import open_slide
from histoviewer.core.staging_terms import SIZE_CLASS_NAMES
from histoviewer.core.units import l0_px_to_um, um_to_l0_px

log = logging.getLogger(__name__)

__all__ = ["SlideImages", "Snapshot", "fit_size", "lesion_outline", "render_slide_images", "snapshot_region"]

THUMB_MAX_PX = 1200  # ~290 dpi printed 104 mm wide
SNAPSHOT_PX = 640
MAX_SNAPSHOTS = 3
SNAPSHOT_MIN_UM = 500.0  # context around small lesions: an ITC alone would fill the frame
SNAPSHOT_CONTEXT = 1.6  # snapshot side / lesion box side
OVERLAY_OPACITY = 0.5


@dataclass(frozen=True)
class Snapshot:
    """One lesion's picture: ``rgb`` (h, w, 3) of ``l0_region`` (x, y, w, h) at ``l0_per_px``;
    ``output_mpp``: micrometres per picture px, None when the slide has no scale."""

    lesion: LesionEntry
    rgb: np.ndarray
    l0_region: tuple[float, float, float, float]
    l0_per_px: float
    output_mpp: float | None


@dataclass(frozen=True)
class SlideImages:
    """``thumbnail`` None when neither the slide nor ``heatmap.png`` could be read;
    ``notes`` say what is missing and why."""

    thumbnail: np.ndarray | None
    thumbnail_source: str  # "slide", "heatmap.png" or "none"
    snapshots: tuple[Snapshot, ...]
    notes: tuple[str, ...] = ()
    heatmap_drawn: bool = False  # the thumbnail shows the map (its colour bar applies)


def _short_label(les: LesionEntry) -> str:
    return les.name.removeprefix("lesion-")


def _size_text(les: LesionEntry) -> str:
    if les.diameter_mm is None:
        return f"{les.name}: size unknown (no scale)"
    return f"{les.diameter_mm:.2f} mm ({SIZE_CLASS_NAMES[les.size_class]})"


def lesion_outline(les: LesionEntry, label: str) -> Outline:
    """The lesion's outline (its box when ``lesions.geojson`` gave none) in its size-class
    colour, with its diameter segment."""
    pts: Sequence[tuple[float, float]] = les.outline_l0
    if len(pts) < 2:
        x, y, w, h = les.bbox_l0
        pts = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
    color = LESION_COLORS.get(les.size_class.value, LESION_COLORS["unknown"])
    return Outline(tuple(pts), color, label, les.diameter_ends_l0)


def snapshot_region(les: LesionEntry, mpp: float | None, l0_size: tuple[int, int]) -> tuple[float, ...]:
    """A square level-0 region centred on the lesion: ``SNAPSHOT_CONTEXT`` times its box,
    at least ``SNAPSHOT_MIN_UM`` across, clipped to the slide."""
    x, y, w, h = les.bbox_l0
    side = max(w, h) * SNAPSHOT_CONTEXT
    if mpp is not None:
        side = max(side, um_to_l0_px(SNAPSHOT_MIN_UM, mpp))
    side = max(side, 64.0)
    cx, cy = x + w / 2, y + h / 2
    return clip_region(l0_size, (cx - side / 2, cy - side / 2, side, side))


def _render(spec: RenderSpec, heatmap: HeatmapData | None, reader: Any, control: JobControl) -> np.ndarray:
    renderer = TileRenderer(spec, heatmap, reader)
    return np.concatenate([strip for _v0, strip in iter_strips(renderer, 512, 2048, control)])


def _thumbnail_from_slide(slide: SlideReport, reader: Any, heatmap: HeatmapData | None, max_px: int,
                          control: JobControl) -> np.ndarray:
    region = clip_region(tuple(reader.info.dimensions), None)
    l0_per_px = max(region[2], region[3]) / max_px
    size = output_size(region, l0_per_px)
    outlines = tuple(lesion_outline(les, _short_label(les)) for les in slide.lesions)
    # text and lines sized for print: ~3 mm letters on a picture printed ~100 mm wide
    output_mpp = l0_px_to_um(l0_per_px, slide.mpp)
    bar = None if output_mpp is None else scale_bar_for(output_mpp, size, font_px=32)
    spec = RenderSpec(region, l0_per_px, size, True, DEFAULT_COLORMAP, OVERLAY_OPACITY, slide.threshold,
                      outlines, OutlineStyle(line_px=4, diameter_px=3, font_px=36, halo_px=3), bar)
    return _render(spec, heatmap, reader, control)


def _thumbnail_from_png(slide: SlideReport, png: Path, max_px: int) -> np.ndarray:
    with Image.open(png) as im:
        im = im.convert("RGB")
        im.thumbnail((max_px, max_px))
        rgb = np.asarray(im).copy()
    w0 = slide.l0_size[0] or rgb.shape[1]
    img = Image.fromarray(rgb)
    draw_outlines(ImageDraw.Draw(img), [lesion_outline(les, _short_label(les)) for les in slide.lesions],
                  l0_origin=(0.0, 0.0), l0_per_px=w0 / rgb.shape[1], tile_offset=(0, 0),
                  tile_size=(rgb.shape[1], rgb.shape[0]), style=OutlineStyle(line_px=3, font_px=22))
    return np.asarray(img)


def _snapshot(slide: SlideReport, les: LesionEntry, reader: Any, px: int, control: JobControl) -> Snapshot:
    region = snapshot_region(les, slide.mpp, tuple(reader.info.dimensions))
    # never finer than level 0: enlarging adds no detail
    l0_per_px = max(1.0, max(region[2], region[3]) / px)
    size = output_size(region, l0_per_px)
    output_mpp = l0_px_to_um(l0_per_px, slide.mpp)
    bar = None if output_mpp is None else scale_bar_for(output_mpp, size, font_px=26)
    spec = RenderSpec(region, l0_per_px, size, True, DEFAULT_COLORMAP, 0.0, 0.0,
                      (lesion_outline(les, _size_text(les)),),
                      OutlineStyle(line_px=4, diameter_px=3, font_px=30, halo_px=3), bar)
    return Snapshot(les, _render(spec, None, reader, control), region, l0_per_px, output_mpp)


def render_slide_images(
    slide: SlideReport,
    *,
    reader: Any = None,
    heatmap: HeatmapData | None = None,
    thumb_max_px: int = THUMB_MAX_PX,
    snapshot_px: int = SNAPSHOT_PX,
    max_snapshots: int = MAX_SNAPSHOTS,
    control: JobControl = NO_CONTROL,
) -> SlideImages:
    """The thumbnail and snapshots of one slide's page.

    ``reader``: an open ``SlideReader`` of the slide (the viewer's); None opens
    ``slide.slide_path`` here and closes it after. ``heatmap``: the map (the viewer's live
    one); None reads the analysis folder's ``probability.tiff``.
    """
    notes: list[str] = []
    if heatmap is None and slide.analysis_dir:
        try:
            heatmap = read_analysis(slide.analysis_dir)
        except HistoViewerError as exc:
            notes.append(f"probability map unreadable ({exc})")
    own_reader = None
    if reader is None:
        try:
            reader = own_reader = open_slide(slide.slide_path)
        except HistoViewerError as exc:
            notes.append(f"slide not readable here ({exc}); no lesion snapshots")
    try:
        if reader is not None and heatmap is not None and \
                tuple(reader.info.dimensions) != (heatmap.geometry.l0_width, heatmap.geometry.l0_height):
            notes.append("the slide at this path is not the analysed one (other size); no slide pictures")
            reader = None
        thumb, source = None, "none"
        if reader is not None:
            thumb, source = _thumbnail_from_slide(slide, reader, heatmap, thumb_max_px, control), "slide"
        elif slide.analysis_dir and (png := Path(slide.analysis_dir) / "heatmap.png").is_file():
            thumb, source = _thumbnail_from_png(slide, png, thumb_max_px), "heatmap.png"
        snaps: list[Snapshot] = []
        if reader is not None:
            for les in slide.lesions[:max_snapshots]:
                control.check("report", ExportCancelled)
                snaps.append(_snapshot(slide, les, reader, snapshot_px, control))
        drawn = source == "heatmap.png" or (source == "slide" and heatmap is not None)
        return SlideImages(thumb, source, tuple(snaps), tuple(notes), drawn)
    finally:
        if own_reader is not None:
            own_reader.close()


def fit_size(size: tuple[int, int], box: tuple[float, float]) -> tuple[float, float]:
    """(w, h) of an image of ``size`` scaled to fit ``box`` with its aspect kept."""
    s = min(box[0] / max(size[0], 1), box[1] / max(size[1], 1))
    return size[0] * s, size[1] * s
