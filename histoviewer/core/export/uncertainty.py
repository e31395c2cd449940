"""Exporting the uncertainty map, as the heatmap is exported: losslessly (float32 map TIFF,
``map_tiff_options``) or as a picture (PNG: the map in its own colour scale with a legend),
each with ``<file>.provenance.json``; and computing it for an export when no analysis holds it.

The map is ``inference.uncertainty_map``'s: the standard deviation of the calibrated
P(tumour) over the 8 rotations and mirrors of each patch (0..0.5), on the probability map's
grid, NaN not computed, -1 background, -2 failed. An export of a region holds the map cells
that intersect it (as the raw probability export does).
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
import tifffile
from PIL import Image, ImageDraw

from histoviewer.core.atomic import atomic_target, atomic_write_bytes, atomic_write_text
from histoviewer.core.errors import ExportError
from histoviewer.core.export.legend import _font, _wrap
from histoviewer.core.export.provenance import CellCrop
from histoviewer.core.export.raw import cell_window
from histoviewer.core.export.source import HeatmapData, clip_region
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.outputs import map_tiff_options
from histoviewer.core.inference.regions import RegionCutter
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.inference.uncertainty_map import (
    UNCERTAINTY_DISPLAY_MAX,
    UNCERTAINTY_ENCODING,
    UNCERTAINTY_FILE,
    UNCERTAINTY_MEANING,
    UNCERTAINTY_SHOWN_FROM,
    compute_uncertainty,
    new_uncertainty_grid,
    stretched_lut,
    uncertainty_caveat,
)
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.models.registry import open_model
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.safe_input import parse_json
from histoviewer.core.slide import open_slide
from histoviewer.core.strict_json import strict_dumps

__all__ = [
    "UncertaintyExport",
    "export_uncertainty_map",
    "read_uncertainty_analysis",
    "uncertainty_for_slide",
]

NOT_COMPUTED_RGB = (200, 200, 200)
FAILED_RGB = (255, 0, 255)
BACKGROUND_RGB = (255, 255, 255)
AGREE_RGB = (245, 245, 245)  # computed, views agree (below UNCERTAINTY_SHOWN_FROM)
MAX_IMAGE_SIDE_PX = 2048


@dataclass(frozen=True)
class UncertaintyExport:
    """What an uncertainty export wrote: ``kind`` "uncertainty-raw" (float32 TIFF, ``size`` in
    map cells) or "uncertainty-image" (PNG, ``size`` in px, legend included); ``provenance``:
    the sidecar's record."""

    path: Path
    kind: str
    size: tuple[int, int]
    provenance: dict[str, Any]
    sidecars: tuple[Path, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "size": list(self.size),
            "sidecars": [str(p) for p in self.sidecars],
            "seconds": round(self.seconds, 3),
            "provenance": self.provenance,
        }


def read_uncertainty_analysis(path: str | os.PathLike[str]) -> HeatmapData:
    """``uncertainty.tiff`` written by ``analyze`` with the uncertainty option (``path``: the
    file or its analysis folder). ``ExportError`` naming the file when it is missing or
    unreadable."""
    path = Path(path)
    tiff = path / UNCERTAINTY_FILE if path.is_dir() else path
    if not tiff.is_file():
        raise ExportError(
            f"{tiff}: no uncertainty map here; analyse the slide with the uncertainty map "
            "first (or let the export compute it)",
            setting="uncertainty",
        )
    try:
        with tifffile.TiffFile(tiff) as tf:
            meta = parse_json(
                tf.pages[0].description, tiff, "the map's description", ExportError
            )
            encoded = tf.asarray()
        geometry = GridGeometry.from_dict(meta["geometry"])
        model = ModelRecord.from_dict(meta.get("model") or {})
    except (OSError, ValueError, KeyError, TypeError, tifffile.TiffFileError) as exc:
        raise ExportError(f"{tiff}: not a readable uncertainty map: {exc}") from exc
    return HeatmapData(encoded, geometry, model, f"analysis:{tiff.parent}")


def uncertainty_for_slide(
    slide_path: str | os.PathLike[str],
    model_spec: str,
    *,
    region: tuple[float, float, float, float] | None = None,
    stride_px: int | None = None,
    device: str = "auto",
    control: JobControl = NO_CONTROL,
    user_mpp: float | None = None,
    force_mpp: bool = False,
) -> HeatmapData:
    """Compute the uncertainty map of the tissue in ``region`` (level-0 x, y, w, h; None: the
    whole slide, 8x the work of the heatmap) with ``model_spec``; cells outside it stay not
    computed (NaN)."""
    slide_path = Path(slide_path)
    model = open_model(model_spec, device)
    try:
        with open_slide(slide_path, user_mpp=user_mpp, force_mpp=force_mpp) as reader:
            info = reader.info
            if info.mpp is None:
                raise ExportError(
                    f"{slide_path}: the slide states no scale (microns per pixel), so patches "
                    "cannot be read at the model's scale",
                    setting="mpp",
                )
            spec = model.input
            geometry = GridGeometry.for_slide(
                info.dimensions,
                info.mpp,
                spec.mpp,
                spec.patch_px,
                stride_px,
                mpp_source=info.mpp_source,
            )
            grid = new_uncertainty_grid(geometry, grid_tissue(reader, geometry))
            cells = (
                None
                if region is None
                else geometry.cells_in_rect(*clip_region(info.dimensions, region))
            )
            fast = TiffRegionSource.open(slide_path, reader)
            try:
                compute_uncertainty(
                    grid,
                    RegionCutter(reader, geometry, source=fast),
                    model,
                    cells,
                    control=control,
                    stage=f"Uncertainty map of {slide_path.name} (8 views a patch)",
                )
            finally:
                if fast is not None:
                    fast.close()
        return HeatmapData(
            grid.encoded_map(), geometry, ModelRecord.from_info(model.info), "computed"
        )
    finally:
        model.close()


def _provenance(
    kind: str,
    slide_path: str,
    data: HeatmapData,
    region,
    crop: CellCrop,
    size: tuple[int, int],
    full_slide_path: bool,
) -> dict:
    return {
        "kind": kind,
        "map": "uncertainty",
        "meaning": UNCERTAINTY_MEANING,
        "slide": str(slide_path) if full_slide_path else Path(slide_path).name,
        "model": data.model.to_dict(),
        "map_origin": data.origin,
        "geometry": data.geometry.to_dict(),
        "l0_region": [round(v, 3) for v in region],
        "crop": crop.to_dict(),
        "output_size": list(size),
        "colour_scale": (
            None
            if kind == "uncertainty-raw"
            else f"inferno over 0..{UNCERTAINTY_DISPLAY_MAX:g} (higher saturates); below "
            f"{UNCERTAINTY_SHOWN_FROM:g} not coloured"
        ),
        "encoding": UNCERTAINTY_ENCODING,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def export_uncertainty_map(
    out_path: str | os.PathLike[str],
    data: HeatmapData,
    *,
    slide_path: str = "",
    region: tuple[float, float, float, float] | None = None,
    legend: bool = True,
    record_full_slide_path: bool = False,
) -> UncertaintyExport:
    """Write the uncertainty map cells intersecting ``region`` (None: all) to ``out_path``:
    ``.tif``/``.tiff`` -> float32 map TIFF (lossless); ``.png`` -> a picture, a whole number
    of pixels per map cell (longer side up to ``MAX_IMAGE_SIDE_PX``), legend band below.
    ``<out_path>.provenance.json`` says what, from where and how."""
    t0 = time.perf_counter()
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in (".tif", ".tiff", ".png"):
        raise ExportError(
            f"{out}: the uncertainty map is written as .tif/.tiff (values) or .png (picture)",
            setting="out",
        )
    g = data.geometry
    reg = clip_region((round(g.l0_width), round(g.l0_height)), region)
    r0, c0, rows, cols = cell_window(g, reg)
    crop = CellCrop(r0, c0, rows, cols)
    cells = np.ascontiguousarray(
        data.encoded[r0 : r0 + rows, c0 : c0 + cols], np.float32
    )
    if suffix == ".png":
        kind = "uncertainty-image"
        rgb = _picture(cells)
        if legend:
            rgb = np.concatenate(
                [
                    rgb,
                    _legend_band(
                        rgb.shape[1], data.model, font_px=max(14, rgb.shape[1] // 70)
                    ),
                ],
                axis=0,
            )
        size = (rgb.shape[1], rgb.shape[0])
        prov = _provenance(
            kind, slide_path, data, reg, crop, size, record_full_slide_path
        )
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG", compress_level=6)
        atomic_write_bytes(out, buf.getvalue())
    else:
        kind = "uncertainty-raw"
        size = (cols, rows)
        prov = _provenance(
            kind, slide_path, data, reg, crop, size, record_full_slide_path
        )
        with atomic_target(out) as tmp:
            tifffile.imwrite(tmp, cells, **map_tiff_options(g, prov))
    side = out.with_name(out.name + ".provenance.json")
    atomic_write_text(side, strict_dumps(prov, indent=2) + "\n")
    return UncertaintyExport(out, kind, size, prov, (side,), time.perf_counter() - t0)


def _picture(cells: np.ndarray) -> np.ndarray:
    """RGB of map cells, each a square of a whole number of pixels."""
    rows, cols = cells.shape
    k = max(1, math.floor(MAX_IMAGE_SIDE_PX / max(rows, cols)))
    lut = stretched_lut()
    rgb = np.empty((rows, cols, 3), np.uint8)
    finite = np.isfinite(cells) & (cells >= 0)
    idx = np.clip(np.rint(np.where(finite, cells, 0) * 255), 0, 255).astype(np.int64)
    rgb[:] = lut[idx]
    rgb[finite & (cells < UNCERTAINTY_SHOWN_FROM)] = AGREE_RGB
    rgb[np.isnan(cells)] = NOT_COMPUTED_RGB
    rgb[cells == -1.0] = BACKGROUND_RGB
    rgb[cells == -2.0] = FAILED_RGB
    return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def _legend_band(width_px: int, model: ModelRecord, font_px: int = 14) -> np.ndarray:
    """White band: what the value means, the colour bar 0..display max, the state colours,
    the model and its caution."""
    width_px = max(int(width_px), 360)
    font, small = _font(font_px), _font(max(9, font_px - 3))
    margin = font_px
    text_w = width_px - 2 * margin
    head = _wrap(
        "Uncertainty: standard deviation of P(tumour) over 8 rotations and mirrors of each patch "
        "(0 = the views agree; high = the orientation changes the answer)",
        font,
        text_w,
    )
    caution = f"WARNING: {model.caution}" if model.demonstration else model.caution
    tail = _wrap(f"{model.display_name or model.name}: {caution}", small, text_w)
    if caveat := uncertainty_caveat(
        model.kind or ""
    ):  # a map blind by construction says so
        tail += _wrap(caveat, small, text_w)
    line_h, small_h, bar_h = int(font_px * 1.35), int(font_px * 1.2), max(12, font_px)
    height = (
        margin
        + line_h * len(head)
        + 6
        + bar_h
        + 4
        + line_h
        + line_h
        + small_h * len(tail)
        + margin
    )
    img = Image.new("RGB", (width_px, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = margin
    for text in head:
        draw.text((margin, y), text, fill=(0, 0, 0), font=font)
        y += line_h
    y += 6
    bar_w = min(text_w, 36 * font_px)
    top = round(UNCERTAINTY_DISPLAY_MAX * 255)
    index = np.clip(np.rint(np.linspace(0, top, bar_w)), 0, 255).astype(np.int64)
    bar = np.repeat(stretched_lut()[index][None], bar_h, axis=0)
    img.paste(Image.fromarray(np.ascontiguousarray(bar)), (margin, y))
    agree_w = round(bar_w * UNCERTAINTY_SHOWN_FROM / UNCERTAINTY_DISPLAY_MAX)
    draw.rectangle((margin, y, margin + agree_w, y + bar_h - 1), fill=AGREE_RGB)
    y += bar_h + 4
    for value in (0.0, 0.1, 0.2, UNCERTAINTY_DISPLAY_MAX):
        x = margin + bar_w * value / UNCERTAINTY_DISPLAY_MAX
        label = f">={value:g}" if value == UNCERTAINTY_DISPLAY_MAX else f"{value:g}"
        tx = min(x - font.getlength(label) / 2, margin + bar_w - font.getlength(label))
        draw.text((max(margin, tx), y), label, fill=(0, 0, 0), font=font)
    y += line_h
    x = margin
    for rgb, label in (
        (AGREE_RGB, f"views agree (< {UNCERTAINTY_SHOWN_FROM:g})"),
        (NOT_COMPUTED_RGB, "not computed"),
        (FAILED_RGB, "failed"),
    ):
        box = small_h - 4
        draw.rectangle(
            (x, y + 2, x + box, y + 2 + box), fill=rgb, outline=(120, 120, 120)
        )
        draw.text((x + box + 4, y), label, fill=(0, 0, 0), font=small)
        x += box + 4 + small.getlength(label) + font_px
    y += line_h
    for text in tail:
        draw.text(
            (margin, y),
            text,
            fill=(190, 0, 0) if model.demonstration else (90, 60, 0),
            font=small,
        )
        y += small_h
    return np.asarray(img)
