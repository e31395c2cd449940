"""The exports the GUI and ``histoviewer export-heatmap`` call.

- ``export_overlay``: the slide with the heatmap blended over it (optional outlines with
  diameters), for a region or the whole slide, at a chosen um/px, with a scale bar
  (what to draw: an ``OverlayRequest``).
- ``export_heatmap_image``: the heatmap alone (state colours where there is no
  probability), for a region or the whole slide (a ``HeatmapImageRequest``).
- ``export_raw_probabilities``: the map itself as float32 TIFF (see ``raw.py``).

Output by extension: ``.png`` is one image with the legend as a band below it;
``.tif``/``.tiff`` is a tiled, JPEG-compressed pyramidal TIFF (OpenSlide opens it; its
level 0 is the output, MPP set, so it aligns with the slide by a stated downsample), with
the legend as ``<file>.legend.png``. Both stream in strips of ``tile_px`` rows: memory is a
few strips whatever the output size. Every export writes ``<file>.provenance.json`` and
embeds the same record. The slide's label and macro images are never read.

Threads: call from a worker thread; pass a ``JobControl(progress, cancel)`` (progress in
output tiles). On cancel, ``ExportCancelled`` is raised and no output file remains.
"""

from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from histoviewer.core.atomic import atomic_target, atomic_write_bytes
from histoviewer.core.errors import ExportError
from histoviewer.core.export.legend import legend_panel, scale_bar_for
from histoviewer.core.export.png_stream import PngStripWriter
from histoviewer.core.export.provenance import Provenance, pyramid_description, write_provenance
from histoviewer.core.export.raw import write_raw_probabilities
from histoviewer.core.export.render import RenderSpec, TileRenderer, iter_strips, output_size
from histoviewer.core.export.requests import DEFAULT_MAX_SIDE_PX, HeatmapImageRequest, OverlayRequest
from histoviewer.core.export.source import HeatmapData, clip_region
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.slide.pyramid_writer import EncodedRow, encode_jpeg, write_pyramidal_tiff

__all__ = [
    "DEFAULT_MAX_SIDE_PX",
    "ExportResult",
    "HeatmapImageRequest",
    "OverlayRequest",
    "export_heatmap_image",
    "export_overlay",
    "export_raw_probabilities",
    "legend_path",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote. ``size``: (width, height) of the image area in output px."""

    path: Path
    kind: str
    size: tuple[int, int]
    provenance: Provenance
    sidecars: tuple[Path, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "size": list(self.size),
                "sidecars": [str(p) for p in self.sidecars], "seconds": round(self.seconds, 3),
                "provenance": self.provenance.to_dict()}


def legend_path(out_path: str | os.PathLike[str]) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".legend.png")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ExportError(f"{path}: choose a .png, .tif or .tiff file name for an image export")
    return suffix


def _l0_per_px(mpp: float, region: tuple[float, float, float, float], output_mpp: float | None,
               l0_per_output_px: float | None, max_side_px: int) -> float:
    """The output scale in level-0 px per output px: ``output_mpp`` (converted with the
    slide's mpp) or ``l0_per_output_px`` (the request checked they are positive and not
    both); by default the finest that keeps the longer side within ``max_side_px`` but
    never finer than level 0."""
    if output_mpp is not None:
        return output_mpp / mpp
    if l0_per_output_px is not None:
        return float(l0_per_output_px)
    return max(1.0, max(region[2], region[3]) / max_side_px)


def _provenance(kind: str, slide_path: str, heatmap: HeatmapData, region, l0_per_px: float | None,
                size, colormap=None, opacity=None, threshold=None, outlines: int | None = None,
                slide_level_read: int | None = None, threshold_source: str = "",
                full_slide_path: bool = False) -> Provenance:
    g = heatmap.geometry
    return Provenance(
        kind=kind, slide_path=slide_path, slide_l0_size=(g.l0_width, g.l0_height), slide_mpp=g.slide_mpp,
        l0_region=tuple(float(v) for v in region), model=heatmap.model, output_size=tuple(size),
        l0_per_px=l0_per_px, output_mpp=None if l0_per_px is None else l0_per_px * g.slide_mpp,
        threshold=threshold, colormap=colormap, opacity=opacity, grid=g,
        coverage=round(heatmap.coverage(), 6), outlines=outlines, slide_level_read=slide_level_read,
        heatmap_source=heatmap.origin, threshold_source=threshold_source or None,
        tissue_check=None if heatmap.domain is None else heatmap.domain.describe(),
        out_of_domain=heatmap.domain is not None and heatmap.domain.out_of_domain,
        full_slide_path=full_slide_path,
    )


def _chunk(tile_px: int) -> int:
    """Output columns rendered per slide read: wide reads decode each source tile about
    once (a read decodes every source tile it touches, even for one pixel column)."""
    return max(tile_px, 2048 // tile_px * tile_px)


def _write_png(tmp: Path, renderer: TileRenderer, prov: Provenance, legend: np.ndarray | None,
               tile_px: int, control: JobControl) -> None:
    width, height = renderer.spec.size
    png_w = max(width, legend.shape[1]) if legend is not None else width
    png_h = height + (legend.shape[0] if legend is not None else 0)
    with open(tmp, "wb") as fh:
        writer = PngStripWriter(fh, png_w, png_h, prov.text_chunks())
        for _v0, strip in iter_strips(renderer, tile_px, _chunk(tile_px), control):
            if png_w > width:
                strip = np.concatenate([strip, np.full((strip.shape[0], png_w - width, 3), 255, np.uint8)], 1)
            writer.add_rows(strip)
        if legend is not None:
            band = np.full((legend.shape[0], png_w, 3), 255, np.uint8)
            band[:, : legend.shape[1]] = legend
            writer.add_rows(band)
        writer.close()


def _write_pyramid(tmp: Path, renderer: TileRenderer, prov: Provenance, tile_px: int, jpeg_quality: int,
                   control: JobControl) -> tuple[tuple[int, int], ...]:
    # The streaming pyramid writer (slide/pyramid_writer.py): one strip per level in memory, lower levels
    # built from the half-size strips and copied in as already-encoded tiles.
    width, height = renderer.spec.size
    ts = tile_px

    def rows():
        for _v0, strip in iter_strips(renderer, ts, _chunk(ts), control, pad_to=(ts, ts)):
            tiles = tuple(encode_jpeg(np.ascontiguousarray(strip[:, c : c + ts]), jpeg_quality)
                          for c in range(0, strip.shape[1], ts))
            # PIL's 2x2 box reduce (C) is several times faster than the phantom's numpy
            # downsample2 on a full-width strip; both round the mean to nearest
            yield EncodedRow(tiles, np.asarray(Image.fromarray(strip).reduce(2)))

    dims = write_pyramidal_tiff(tmp, rows(), width=width, height=height, tile_size=ts,
                                jpeg_quality=jpeg_quality, mpp=prov.output_mpp, pad_rgb=(255, 255, 255),
                                description=pyramid_description(prov),
                                software=f"{prov.software} {prov.software_version} export")
    return dims


def _export_image(kind: str, out_path, renderer: TileRenderer, prov: Provenance, legend: np.ndarray | None,
                  tile_px: int, jpeg_quality: int, control: JobControl, t0: float) -> ExportResult:
    out_path = Path(out_path)
    suffix = _suffix(out_path)
    sidecars: list[Path] = []
    if suffix == ".png":
        with atomic_target(out_path) as tmp:
            _write_png(tmp, renderer, prov, legend, tile_px, control)
    else:
        prov = prov.with_output(kind=f"{kind}-pyramid")
        with atomic_target(out_path) as tmp:
            dims = _write_pyramid(tmp, renderer, prov, tile_px, jpeg_quality, control)
        prov = prov.with_output(pyramid_levels=tuple((int(w), int(h)) for w, h in dims))
        if legend is not None:
            buf = _png_bytes(legend, prov)
            atomic_write_bytes(legend_path(out_path), buf)
            sidecars.append(legend_path(out_path))
    sidecars.insert(0, write_provenance(out_path, prov))
    return ExportResult(out_path, prov.kind, renderer.spec.size, prov, tuple(sidecars), time.perf_counter() - t0)


def _legend(size: tuple[int, int], heatmap: HeatmapData, colormap: str, threshold: float,
            opacity: float | None, state_key: bool, threshold_source: str = "") -> np.ndarray:
    """A legend about as wide as the image (480..1600 px) with text that grows with it."""
    width = min(max(size[0], 480), 1600)
    return legend_panel(width, heatmap.model, colormap, threshold, opacity, state_key,
                        font_px=max(14, min(28, width // 60)), threshold_source=threshold_source,
                        domain=heatmap.domain)


def _png_bytes(rgb: np.ndarray, prov: Provenance) -> bytes:
    info = PngInfo()
    for key, value in prov.text_chunks().items():
        if value:
            info.add_itxt(key, value)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def export_overlay(
    out_path: str | os.PathLike[str],
    reader,
    heatmap: HeatmapData,
    request: OverlayRequest = OverlayRequest(),
    *,
    control: JobControl = NO_CONTROL,
) -> ExportResult:
    """The slide (``reader``: an open ``SlideReader``) with ``heatmap`` blended over it, as
    ``request`` says (region clipped to the slide; None: the whole slide)."""
    t0 = time.perf_counter()
    r = request
    info = reader.info
    if tuple(info.dimensions) != (heatmap.geometry.l0_width, heatmap.geometry.l0_height):
        raise ExportError(f"{info.path}: the heatmap was computed for a slide of "
                          f"{heatmap.geometry.l0_width} x {heatmap.geometry.l0_height} px, not this one")
    reg = clip_region(info.dimensions, r.l0_region)
    mpp = heatmap.geometry.slide_mpp
    scale = _l0_per_px(mpp, reg, r.output_mpp, r.l0_per_output_px, r.max_side_px)
    size = output_size(reg, scale)
    is_png = _suffix(Path(out_path)) == ".png"
    bar = scale_bar_for(scale * mpp, size) if (is_png if r.scale_bar is None else r.scale_bar) else None
    spec = RenderSpec(reg, scale, size, True, r.colormap, r.opacity, r.threshold, tuple(r.outlines),
                      r.outline_style, bar)
    fast = TiffRegionSource.open(info.path, reader) if r.fast_tiff else None
    try:
        renderer = TileRenderer(spec, heatmap, reader, fast)
        prov = _provenance("overlay", str(info.path), heatmap, reg, scale, size, r.colormap, r.opacity,
                           r.threshold, outlines=len(spec.outlines), slide_level_read=renderer.level,
                           threshold_source=r.threshold_source, full_slide_path=r.record_full_slide_path)
        panel = (_legend(size, heatmap, r.colormap, r.threshold, r.opacity, False, r.threshold_source)
                 if r.legend else None)
        return _export_image("overlay", out_path, renderer, prov, panel, r.tile_px, r.jpeg_quality, control, t0)
    finally:
        if fast is not None:
            fast.close()


def export_heatmap_image(
    out_path: str | os.PathLike[str],
    heatmap: HeatmapData,
    request: HeatmapImageRequest = HeatmapImageRequest(),
    *,
    control: JobControl = NO_CONTROL,
) -> ExportResult:
    """The heatmap alone, as ``request`` says. Default scale: a whole number of output
    pixels per map cell, the longer side up to ``request.max_side_px``."""
    t0 = time.perf_counter()
    r = request
    g = heatmap.geometry
    reg = clip_region((g.l0_width, g.l0_height), r.l0_region)
    l0_per_output_px = r.l0_per_output_px
    if r.output_mpp is None and l0_per_output_px is None:
        cells = max(reg[2], reg[3]) / g.l0_stride
        l0_per_output_px = g.l0_stride / max(1, math.floor(r.max_side_px / max(cells, 1.0)))
    scale = _l0_per_px(g.slide_mpp, reg, r.output_mpp, l0_per_output_px, r.max_side_px)
    size = output_size(reg, scale)
    is_png = _suffix(Path(out_path)) == ".png"
    bar = scale_bar_for(scale * g.slide_mpp, size, user_set=g.slide_mpp_source == "user") if (is_png if r.scale_bar is None else r.scale_bar) else None
    spec = RenderSpec(reg, scale, size, False, r.colormap, 1.0, r.threshold, tuple(r.outlines),
                      r.outline_style, bar)
    prov = _provenance("heatmap", str(r.slide_path), heatmap, reg, scale, size, r.colormap, 1.0, r.threshold,
                       outlines=len(spec.outlines), threshold_source=r.threshold_source,
                       full_slide_path=r.record_full_slide_path)
    panel = (_legend(size, heatmap, r.colormap, r.threshold, None, True, r.threshold_source)
             if r.legend else None)
    return _export_image("heatmap", out_path, TileRenderer(spec, heatmap), prov, panel, r.tile_px,
                         r.jpeg_quality, control, t0)


def export_raw_probabilities(
    out_path: str | os.PathLike[str],
    heatmap: HeatmapData,
    *,
    slide_path: str | os.PathLike[str] = "",
    region: tuple[float, float, float, float] | None = None,
    record_full_slide_path: bool = False,
) -> ExportResult:
    """The map cells intersecting ``region`` (whole slide: None) as float32 TIFF, losslessly.
    ``record_full_slide_path``: the provenance names the slide by its full path, not its
    file name only."""
    t0 = time.perf_counter()
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".tif", ".tiff"):
        raise ExportError(f"{out_path}: raw probabilities are written as TIFF (.tif or .tiff)")
    g = heatmap.geometry
    reg = clip_region((g.l0_width, g.l0_height), region)
    prov = _provenance("raw-probabilities", str(slide_path), heatmap, reg, g.l0_stride, (0, 0),
                       full_slide_path=record_full_slide_path)
    crop = write_raw_probabilities(out_path, heatmap, reg, prov.to_dict())
    prov = prov.with_output(output_size=(crop.cols, crop.rows), crop=crop)
    side = write_provenance(out_path, prov)
    return ExportResult(out_path, prov.kind, (crop.cols, crop.rows), prov, (side,),
                        time.perf_counter() - t0)

