"""Two models on one slide, side by side (issue 17): where their maps differ and which
lesions each finds.

``compare_models`` analyses the slide with model A and with model B (the whole ``analyze``
pipeline, each into its own folder: maps, heatmaps, lesions, summaries), then writes into
``out_dir``:

- ``difference.tiff``: A minus B per map cell, float32 in -1..1 (NaN where either model has
  no probability: background, failed, not classified), A's grid; its description (JSON)
  holds the geometry and both models;
- ``difference.png``: that map over the greyed slide thumbnail in a diverging colour map
  (red: A higher, blue: B higher, clear where they agree), with a legend band;
- ``lesions.png``: the lesions over the thumbnail, outlined by who found them (both, A only,
  B only), with a legend band;
- ``comparison.json``: both models, both node labels, the difference's statistics and every
  finding (``analysis.lesion_match``: lesions in A only, B only, both; sizes and classes);
- ``a/`` and ``b/``: each model's complete analysis (as ``histoviewer analyze`` writes it).

The folder appears complete or not at all; an existing one is replaced only when asked.
Each model's lesions are read at its own operating point unless one threshold is given for
both (``AnalyzeOptions.lesion_threshold``). When the two models read patches at different
scales, B's map is sampled at the centres of A's cells.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from histoviewer.core.analysis.lesion_match import (
    FOUND_BY_A,
    FOUND_BY_B,
    FOUND_BY_BOTH,
    Finding,
    match_lesions,
)
from histoviewer.core.analysis.lesions import Lesion, MapFrame
from histoviewer.core.analysis.map_io import read_probability_map
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.analysis.summary import SlideSummary
from histoviewer.core.atomic import (
    atomic_folder,
    atomic_write_bytes,
    atomic_write_text,
    check_output,
)
from histoviewer.core.errors import InferenceError, OverwriteRefused
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.analyze import (
    HEATMAP_MAX_PX,
    AnalyzeOptions,
    analyze_slide,
)
from histoviewer.core.inference.model_loading import PendingModel, loaded_model
from histoviewer.core.inference.outputs import (
    heatmap_base,
    map_tiff_bytes,
    write_relocated_summary,
)
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.slide import open_slide
from histoviewer.core.strict_json import strict_dumps

__all__ = [
    "DIFFERENCE_LUT",
    "DifferenceStats",
    "SlideComparison",
    "compare_models",
    "difference_map",
    "difference_rgba",
    "finding_colour",
    "lesions_of",
    "stated_label",
]

# Diverging table for A - B in -1..1 (entry i: (i - 127.5) / 127.5): blue where B is higher,
# near white where they agree, red where A is higher (ColorBrewer RdBu, reversed).
_ANCHORS = np.array(
    [(33, 102, 172), (103, 169, 207), (247, 247, 247), (239, 138, 98), (178, 24, 43)],
    float,
)
DIFFERENCE_LUT = (
    np.stack(
        [
            np.interp(np.linspace(0, 4, 256), np.arange(5), _ANCHORS[:, c])
            for c in range(3)
        ],
        axis=1,
    )
    .round()
    .astype(np.uint8)
)
DIFFERENCE_LUT.setflags(write=False)
# a difference of this size or more is painted fully (agreement stays see-through)
FULL_OPACITY_AT = 0.5
_MAX_OPACITY = 0.85

# outline colours of findings (RGB), also the viewer's
FINDING_COLOURS = {
    FOUND_BY_BOTH: (255, 176, 0),
    FOUND_BY_A: (220, 30, 30),
    FOUND_BY_B: (30, 100, 235),
}


def finding_colour(found_by: str) -> tuple[int, int, int]:
    return FINDING_COLOURS[found_by]


def stated_label(summary: SlideSummary) -> str:
    """The node label as it may be stated: 'macro', or 'unknown (why)' when not final."""
    reason = summary.unknown_reason
    return (
        summary.node_label.value
        if reason is None
        else f"{summary.node_label.value} ({reason})"
    )


@dataclass(frozen=True)
class DifferenceStats:
    """How far two maps are apart on the cells both classified (probabilities, 0..1)."""

    cells: int  # cells with a probability from both models
    mean_abs: float  # mean |A - B|
    max_a_over_b: float  # largest A - B (0 when A is never higher)
    max_b_over_a: float  # largest B - A
    cells_apart: int  # cells where |A - B| >= 0.5 (one model says tumour, the other not, roughly)

    @classmethod
    def of(cls, difference: np.ndarray) -> DifferenceStats:
        d = difference[np.isfinite(difference)]
        if d.size == 0:
            return cls(0, 0.0, 0.0, 0.0, 0)
        return cls(
            int(d.size),
            float(np.mean(np.abs(d))),
            float(max(0.0, d.max())),
            float(max(0.0, -d.min())),
            int(np.count_nonzero(np.abs(d) >= 0.5)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": self.cells,
            "mean_abs": round(self.mean_abs, 6),
            "max_a_over_b": round(self.max_a_over_b, 6),
            "max_b_over_a": round(self.max_b_over_a, 6),
            "cells_apart": self.cells_apart,
        }


@dataclass(frozen=True)
class SlideComparison:
    """What ``compare_models`` found and wrote (paths under ``out_dir``)."""

    slide: str
    out_dir: str
    a: SlideSummary
    b: SlideSummary
    findings: tuple[Finding, ...]
    difference: DifferenceStats
    files: dict[str, str]

    def count(self, found_by: str) -> int:
        return sum(f.found_by == found_by for f in self.findings)

    @property
    def agree(self) -> bool:
        """Same node label, no lesion of one model alone, no finding with two size classes."""
        return (
            self.a.node_label == self.b.node_label
            and self.count(FOUND_BY_A) == 0
            and self.count(FOUND_BY_B) == 0
            and not any(f.classes_differ for f in self.findings)
        )

    def to_dict(self) -> dict[str, Any]:
        def side(s: SlideSummary) -> dict[str, Any]:
            return {
                "model": s.model.to_dict(),
                "node_label": s.node_label.value,
                "lesions": len(s.lesions),
                "lesion_threshold": s.lesion_params.threshold,
                "threshold_source": s.lesion_params.threshold_source,
                "domain": s.domain.describe(),
                "folder": s.out_dir,
            }

        return {
            "slide": self.slide,
            "a": side(self.a),
            "b": side(self.b),
            "difference": {
                "meaning": "A minus B per map cell, on the cells both models classified",
                **self.difference.to_dict(),
            },
            "agree": self.agree,
            "counts": {
                "both": self.count(FOUND_BY_BOTH),
                "a_only": self.count(FOUND_BY_A),
                "b_only": self.count(FOUND_BY_B),
                "classes_differ": sum(f.classes_differ for f in self.findings),
            },
            "findings": [f.to_dict() for f in self.findings],
            "files": self.files,
        }


def difference_map(encoded_a: np.ndarray, encoded_b: np.ndarray) -> np.ndarray:
    """A - B (float32) where both are probabilities (0..1), NaN elsewhere; same shapes."""
    if encoded_a.shape != encoded_b.shape:
        raise InferenceError(
            f"maps of {encoded_a.shape} and {encoded_b.shape} cells cannot be compared"
        )
    both = (
        np.isfinite(encoded_a)
        & (encoded_a >= 0)
        & np.isfinite(encoded_b)
        & (encoded_b >= 0)
    )
    out = np.full(encoded_a.shape, np.nan, np.float32)
    out[both] = encoded_a[both] - encoded_b[both]
    return out


def on_grid(
    encoded: np.ndarray, geometry: GridGeometry, target: GridGeometry
) -> np.ndarray:
    """``encoded`` (a map on ``geometry``) sampled at the cell centres of ``target`` (the
    same slide); cells outside it are NaN."""
    if geometry == target:
        return encoded
    rows, cols = np.indices(target.shape)
    x = target.l0_origin_x + (cols + 0.5) * target.l0_stride
    y = target.l0_origin_y + (rows + 0.5) * target.l0_stride
    c = np.floor((x - geometry.l0_origin_x) / geometry.l0_stride).astype(np.int64)
    r = np.floor((y - geometry.l0_origin_y) / geometry.l0_stride).astype(np.int64)
    inside = (r >= 0) & (r < geometry.rows) & (c >= 0) & (c < geometry.cols)
    out = np.full(target.shape, np.nan, np.float32)
    out[inside] = encoded[r[inside], c[inside]]
    return out


def difference_rgba(difference: np.ndarray) -> np.ndarray:
    """(rows, cols, 4) uint8: the diverging colour of each cell, its opacity growing with
    |A - B| up to ``FULL_OPACITY_AT`` (agreement stays clear); NaN cells transparent."""
    finite = np.isfinite(difference)
    d = np.where(finite, np.clip(difference, -1.0, 1.0), 0.0)
    rgba = np.zeros(difference.shape + (4,), np.uint8)
    rgba[..., :3] = DIFFERENCE_LUT[np.round((d + 1.0) * 127.5).astype(np.intp)]
    alpha = np.minimum(np.abs(d) / FULL_OPACITY_AT, 1.0) * _MAX_OPACITY * 255
    rgba[..., 3] = np.where(finite, np.round(alpha), 0).astype(np.uint8)
    return rgba


def _cells_to_pixels(
    per_cell: np.ndarray, geometry: GridGeometry, width: int, height: int
) -> np.ndarray:
    """A per-cell image (rows, cols, C) spread over a ``width`` x ``height`` thumbnail."""
    cols = np.clip(
        ((np.arange(width) + 0.5) * geometry.l0_width / width - geometry.l0_origin_x)
        // geometry.l0_stride,
        0,
        geometry.cols - 1,
    ).astype(np.intp)
    rows = np.clip(
        ((np.arange(height) + 0.5) * geometry.l0_height / height - geometry.l0_origin_y)
        // geometry.l0_stride,
        0,
        geometry.rows - 1,
    ).astype(np.intp)
    return per_cell[rows][:, cols]


def _font(size: int):
    return ImageFont.load_default(size=size)


def _legend_band(
    width: int, lines: list[tuple[str, tuple[int, int, int] | None]], bar: bool
) -> Image.Image:
    """A white band: an optional colour bar of the difference, then text lines (each with a
    colour swatch when given); text scaled to the image's width."""
    size = max(14, width // 70)
    font = _font(size)
    line_h = round(size * 1.45)
    bar_h = size
    height = size + (bar_h + line_h + size // 2 if bar else 0) + line_h * len(lines)
    band = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(band)
    y = size // 2
    if bar:
        bar_w = min(width - 4 * size, 40 * size)
        x0 = (width - bar_w) // 2
        strip = np.repeat(
            DIFFERENCE_LUT[np.linspace(0, 255, bar_w).round().astype(np.intp)][None],
            bar_h,
            axis=0,
        )
        band.paste(Image.fromarray(strip), (x0, y))
        draw.rectangle((x0 - 1, y - 1, x0 + bar_w, y + bar_h), outline=(60, 60, 60))
        labels = {
            -1.0: ("-1: B higher", "la"),
            0.0: ("0: agree", "ma"),
            1.0: ("+1: A higher", "ra"),
        }
        for value, (text, anchor) in labels.items():
            draw.text(
                (x0 + (value + 1) / 2 * bar_w, y + bar_h + 3),
                text,
                fill="black",
                font=font,
                anchor=anchor,
            )
        y += bar_h + line_h + size // 2
    for text, colour in lines:
        x = size
        if colour is not None:
            draw.rectangle(
                (x, y + size // 5, x + size, y + size + size // 5),
                outline=colour,
                width=max(2, size // 6),
            )
            x += round(size * 1.6)
        draw.text((x, y), text, fill="black", font=font)
        y += line_h
    return band


def _with_band(image: np.ndarray, band: Image.Image) -> np.ndarray:
    out = Image.new("RGB", (image.shape[1], image.shape[0] + band.height), "white")
    out.paste(Image.fromarray(image), (0, 0))
    out.paste(band, (0, image.shape[0]))
    return np.asarray(out)


def render_difference(
    base: np.ndarray,
    difference: np.ndarray,
    geometry: GridGeometry,
    names: tuple[str, str],
) -> np.ndarray:
    """The difference map over ``base`` (the greyed thumbnail), with its legend band."""
    h, w = base.shape[:2]
    rgba = _cells_to_pixels(difference_rgba(difference), geometry, w, h).astype(
        np.uint16
    )
    alpha = rgba[..., 3:4]
    painted = (
        (rgba[..., :3] * alpha + base.astype(np.uint16) * (255 - alpha)) // 255
    ).astype(np.uint8)
    band = _legend_band(
        w,
        [
            (f"A: {names[0]}", None),
            (f"B: {names[1]}", None),
            ("grey: no probability from one of them (background, failed)", None),
        ],
        bar=True,
    )
    return _with_band(painted, band)


def render_findings(
    base: np.ndarray,
    geometry: GridGeometry,
    findings: tuple[Finding, ...],
    names: tuple[str, str],
) -> np.ndarray:
    """The lesions of both models over ``base``, outlined by who found them, with a legend."""
    h, w = base.shape[:2]
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    sx, sy = w / geometry.l0_width, h / geometry.l0_height
    width = max(2, round(w / 700))
    for finding in findings:
        colour = finding_colour(finding.found_by)
        for lesion in finding.a + finding.b:
            ring = [(x * sx, y * sy) for x, y in lesion.l0_outline]
            if len(ring) >= 3:
                draw.line(ring + ring[:1], fill=colour, width=width)
            else:
                cx, cy = lesion.l0_centroid[0] * sx, lesion.l0_centroid[1] * sy
                draw.ellipse(
                    (cx - 4, cy - 4, cx + 4, cy + 4), outline=colour, width=width
                )
    counts = {
        k: sum(f.found_by == k for f in findings)
        for k in (FOUND_BY_BOTH, FOUND_BY_A, FOUND_BY_B)
    }
    band = _legend_band(
        w,
        [
            (f"found by both: {counts[FOUND_BY_BOTH]}", FINDING_COLOURS[FOUND_BY_BOTH]),
            (f"A only ({names[0]}): {counts[FOUND_BY_A]}", FINDING_COLOURS[FOUND_BY_A]),
            (f"B only ({names[1]}): {counts[FOUND_BY_B]}", FINDING_COLOURS[FOUND_BY_B]),
        ],
        bar=False,
    )
    return _with_band(np.asarray(image), band)


def lesions_of(summary: SlideSummary, encoded: np.ndarray) -> tuple[Lesion, ...]:
    """The lesions of an analysis with their outlines (``summary.json`` holds none): its map
    analysed again with the same parameters (deterministic: the same lesions)."""
    return analyse_map(
        encoded, MapFrame.from_geometry(summary.geometry), summary.lesion_params
    ).lesions


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def compare_models(
    slide: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    model_a: PatchClassifier | PendingModel,
    model_b: PatchClassifier | PendingModel,
    options: AnalyzeOptions = AnalyzeOptions(),
    *,
    overwrite: bool = False,
    control: JobControl = NO_CONTROL,
) -> SlideComparison:
    """Analyse ``slide`` with both models and write the comparison into ``out_dir`` (see the
    module docstring). Raises ``OverwriteRefused`` (setting ``overwrite``) when ``out_dir``
    exists and ``overwrite`` is False, before any work; what ``analyze_slide`` raises."""
    slide = Path(slide)
    final = check_output(out_dir, inputs=[slide], folder=True)
    if os.path.lexists(final) and not overwrite:
        raise OverwriteRefused(
            f"{final} already exists; nothing was written", setting="overwrite"
        )
    with atomic_folder(final, replace=overwrite) as tmp:
        summaries = []
        for key, model in (("a", model_a), ("b", model_b)):
            summary = analyze_slide(slide, tmp / key, model, options, control=control)
            summaries.append(write_relocated_summary(summary, tmp / key, final / key))
        sum_a, sum_b = summaries
        map_a, _ = read_probability_map(tmp / "a" / "probability.tiff")
        map_b, _ = read_probability_map(tmp / "b" / "probability.tiff")
        difference = difference_map(
            map_a, on_grid(map_b, sum_b.geometry, sum_a.geometry)
        )
        geometry = sum_a.geometry
        raster = min(sum_a.geometry.l0_stride, sum_b.geometry.l0_stride) / 4
        findings = match_lesions(
            lesions_of(sum_a, map_a), lesions_of(sum_b, map_b), raster
        )
        names = (loaded_model(model_a).info.name, loaded_model(model_b).info.name)
        meta = {
            "geometry": geometry.to_dict(),
            "slide": str(slide),
            "encoding": {
                "difference": "A minus B, -1..1",
                "not_both": "NaN (one of them has no probability)",
            },
            "model_a": sum_a.model.to_dict(),
            "model_b": sum_b.model.to_dict(),
        }
        atomic_write_bytes(
            tmp / "difference.tiff", map_tiff_bytes(difference, geometry, meta)
        )
        with open_slide(
            slide, user_mpp=options.user_mpp, force_mpp=options.force_mpp
        ) as reader:
            base = heatmap_base(reader.thumbnail(HEATMAP_MAX_PX))
        atomic_write_bytes(
            tmp / "difference.png",
            _png(render_difference(base, difference, geometry, names)),
        )
        atomic_write_bytes(
            tmp / "lesions.png", _png(render_findings(base, geometry, findings, names))
        )
        files = {
            "difference_tiff": str(final / "difference.tiff"),
            "difference_png": str(final / "difference.png"),
            "lesions_png": str(final / "lesions.png"),
            "comparison_json": str(final / "comparison.json"),
            "a": str(final / "a"),
            "b": str(final / "b"),
        }
        result = SlideComparison(
            str(slide),
            str(final),
            sum_a,
            sum_b,
            findings,
            DifferenceStats.of(difference),
            files,
        )
        atomic_write_text(
            tmp / "comparison.json", strict_dumps(result.to_dict(), indent=2)
        )
    return result
