"""Lesions from a probability map: threshold, clean-up, connected components, measurement.

Frames and units. A map is a 2-D float array, one value per *map cell*; cell ``(row, col)``
covers level-0 px ``x in [l0_origin_x + col * l0_cell, + l0_cell)`` and ``y`` likewise with
``row`` (``MapFrame``). Values are probabilities 0..1; anything else (NaN = not computed,
-1 = background, -2 = failed, see ``inference/outputs.py``) is "no evidence of tumour" here,
and how much tissue was left unclassified is reported separately (``node_label.py``).

How a lesion is measured, and why:

1. Threshold the map at ``LesionParams.threshold`` (the model's operating point unless the
   user set another, 0.5 for a model that states none: ``analysis/threshold.py``) and label
   8-connected components of map cells: one component, one lesion.
2. Each component is measured on a fine raster (``upsample`` fine px per map cell) of the map
   interpolated bilinearly between cell centres, thresholded again **at the same threshold**,
   so the outline encloses (to a fine pixel) the centre of every cell of the component and of no
   cell below the threshold (bilinear values between two cells lie between theirs): the fine region and the
   cell component agree. Where the probabilities are graded (a calibrated model's are, on real
   tissue) the outline falls between a positive and a negative cell centre in proportion to
   their values, so diameters are not whole numbers of cells. Only for a block of saturated
   cells (1 beside 0) at threshold 0.5 does it fall exactly on the cell edge; a lower
   threshold moves it outwards (by 0.5 - t of a cell on such a block), a higher one inwards,
   which is the threshold's meaning, not a bias to undo. Holes are filled (tumour does not have
   holes at the map's resolution; a low cell inside a lesion is a missed patch).
3. Window correction. A patch classifier trained on PatchCamelyon-style labels calls a patch
   tumour when tumour touches the patch's central window (32 x 32 of 96 px: one third of
   the patch side). The region the map marks is therefore the lesion grown by that window
   (a Minkowski sum with a square of side ``l0_window``), which inflates every diameter by
   about one window (~31 um for the default model). The fine mask is eroded by that square
   to undo it; a lesion smaller than the erosion keeps its innermost pixels. With
   ``l0_window = 0`` (a map that is already a tumour-fraction raster) nothing is eroded.
4. Largest diameter = maximum Feret diameter of the eroded region's outline(s)
   (``core/geometry.py``), area = its fine-pixel area, both converted with the slide's mpp.
   Without an mpp, sizes are ``None`` and the class is ``SizeClass.UNKNOWN``.
5. Sub-cell outline of a tumour-fraction map. On a raster whose cells are the fraction of
   them that is tumour (``l0_window == 0``, values between 0 and 1), the 0.5 outline of
   step 2 cuts off a lesion's pointed ends and thin parts where they taper into cells less
   than half tumour: on the real CAMELYON16 lesions of 0.15-0.3 mm the median error was
   -0.45 / -0.83 / -1.8 / -4.9 um at 2 / 4 / 8 / 16 um cells, always short, so 3 / 3 / 7 / 23
   of their 163 micrometastases came out ITC and no ITC came out micro. Such a map is
   outlined instead by keeping each cell's stated tumour area where the tumour most likely
   lies (``subcell.py``: soft-then-hard sub-pixel mapping), unbiased by construction in area
   and without a constant added: median -0.07 .. -0.03 cell on the real lesions, +0.1 cell on
   phantom outlines; micro called ITC 2 / 2 / 4 / 8 (``benchmarks/bench_diameter_bias.py``,
   docs/benchmarks.md). A map of only 0 and 1 (nothing said about where in a cell the edge
   lies) and a classifier's map with a label window keep the 0.5 outline of step 2, which the
   same benchmark finds unbiased on them (median within +-0.3 cell, both signs).
6. Uncertainty. Every lesion carries ``diameter_low_mm`` .. ``diameter_high_mm``, the
   diameter minus / plus the measured 5-95 % range of the error, rounded outwards:
   ``SUBCELL_UNCERTAINTY_CELLS`` (-0.5 / +0.75 cell: the sub-cell outline errs short by up to
   0.6 cell at 16 um cells, long by up to 0.2) and ``THRESHOLD_UNCERTAINTY_CELLS`` (-1 / +1.5
   cells) for the 0.5 outline (a 0/1 map errs short by up to 1.3 cells at 16 um cells). When that interval straddles a size-class border (0.2 mm,
   2 mm) the lesion is a *border* case (``Lesion.border``) and every place that states its
   class says so (``describe_size``: "0.21 mm (0.16-0.27 mm: ITC/micro border)"). The class
   itself stays that of the best estimate: the node label and the stage follow the
   measurement; the border note, and at the pN level ``staging.border_warning`` when such a
   lesion decides the stage, tell the pathologist to measure it on the glass.

The remaining error is set by the map's resolution (the default model's cell is ~93 um):
``docs/benchmarks.md`` ("Lesions, size classes and pN") gives the measured error against
phantom lesions of known size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import ndimage
from skimage import measure

from histoviewer.core.analysis.simplify import approximate_polygon
from histoviewer.core.analysis.subcell import fraction_preserving_mask
from histoviewer.core.errors import InferenceError
from histoviewer.core.geometry import convex_hull, max_feret_diameter
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.staging_terms import NodeLabel, SizeClass, classify_diameter_mm
from histoviewer.core.units import l0_area_to_mm2, l0_px_to_mm

__all__ = [
    "DEFAULT_THRESHOLD",
    "PCAM_WINDOW_FRACTION",
    "THRESHOLD_FROM_DEFAULT",
    "THRESHOLD_FROM_MODEL",
    "THRESHOLD_SET_BY_USER",
    "Lesion",
    "LesionParams",
    "MapFrame",
    "describe_size",
    "find_lesions",
    "interval_straddles_border",
    "node_border",
    "node_class_border",
    "probabilities_of",
]

# The threshold for a model file that states no operating point. A model's own operating
# point (chosen on its validation part) comes first: calibrated probabilities on real tissue
# are graded, not near 0 or 1, so the components found depend on the threshold and one
# threshold does not fit every model. 0.5 is the most probable class of a calibrated model.
DEFAULT_THRESHOLD = 0.5
# Where a result's threshold came from (``LesionParams.threshold_source``, as written to
# summary.json; "" for an analysis written before the source was recorded).
THRESHOLD_FROM_MODEL = "model operating point"
THRESHOLD_SET_BY_USER = "set by user"
THRESHOLD_FROM_DEFAULT = "default, model states none"
# PatchCamelyon labels a 96 px patch tumour when its central 32 x 32 px contain tumour.
PCAM_WINDOW_FRACTION = 1.0 / 3.0
DEFAULT_UPSAMPLE = 12  # fine px per map cell: ~8 um for the default model's ~93 um cells
MAX_FINE_PX = 4_000_000  # per lesion
MEASURE_CACHE_SIZE = 4096  # distinct component crops remembered while one map is measured
# Separate regions above the threshold one map may hold before it is refused. A CAMELYON-size
# slide at 10x has ~10^5 map cells and real metastases number a handful to a few hundred;
# tens of thousands of separate regions are noise (a wrong threshold or model), and measuring
# each costs ~0.25 ms: 10^6 of them ran past 600 s. Refusing, with the count, bounds the time
# by the map's size (one labelling pass) and never drops regions silently.
MAX_LESION_REGIONS = 20_000
# a diameter's interval, in map cells (below, above) the measured one (docstring, 6): the
# 5-95 % range of the error measured by benchmarks/bench_diameter_bias.py, rounded outwards
SUBCELL_UNCERTAINTY_CELLS = (0.5, 0.75)  # the sub-cell outline of a tumour-fraction map
THRESHOLD_UNCERTAINTY_CELLS = (1.0, 1.5)  # the 0.5 outline: a classifier's (window) or a 0/1 map


@dataclass(frozen=True)
class MapFrame:
    """Where a probability map sits on the slide (see the module docstring).

    ``mpp``: micrometres per level-0 px, ``None`` when the slide states no scale.
    ``l0_window``: side (level-0 px) of the label window of the model that made the map, 0
    for none.
    """

    l0_cell: float
    mpp: float | None
    l0_origin_x: float = 0.0
    l0_origin_y: float = 0.0
    l0_window: float = 0.0

    def __post_init__(self) -> None:
        if not (self.l0_cell > 0 and math.isfinite(self.l0_cell)):
            raise ValueError(f"a map cell must be a positive size in level-0 px, got {self.l0_cell!r}")
        if self.mpp is not None and not (self.mpp > 0 and math.isfinite(self.mpp)):
            raise ValueError(f"microns per pixel must be positive and finite, got {self.mpp!r}")
        if not (self.l0_window >= 0 and math.isfinite(self.l0_window)):
            raise ValueError(f"the label window must be >= 0 level-0 px, got {self.l0_window!r}")

    @classmethod
    def from_geometry(cls, geometry: GridGeometry, window_fraction: float = PCAM_WINDOW_FRACTION) -> MapFrame:
        """The frame of a ``GridGeometry`` map (one cell = one stride square); the label
        window is ``window_fraction`` of the model's patch side. A grid always has a scale."""
        return cls(l0_cell=float(geometry.l0_stride), mpp=float(geometry.slide_mpp),
                   l0_origin_x=float(geometry.l0_origin_x), l0_origin_y=float(geometry.l0_origin_y),
                   l0_window=float(geometry.l0_patch) * window_fraction)

    @classmethod
    def for_cells(cls, um_per_cell: float | None, window_um: float = 0.0) -> MapFrame:
        """A bare map whose cells are ``um_per_cell`` wide: level-0 px *are* cells (so
        outlines come out in cell units) and ``mpp = um_per_cell``."""
        if um_per_cell is None:
            if window_um:
                raise ValueError("a label window in um needs the cell size in um")
            return cls(l0_cell=1.0, mpp=None)
        return cls(l0_cell=1.0, mpp=float(um_per_cell), l0_window=float(window_um) / float(um_per_cell))

    @property
    def um_per_cell(self) -> float | None:
        return None if self.mpp is None else self.l0_cell * self.mpp

    def to_dict(self) -> dict[str, Any]:
        return {"l0_cell": self.l0_cell, "mpp": self.mpp, "l0_origin_x": self.l0_origin_x,
                "l0_origin_y": self.l0_origin_y, "l0_window": self.l0_window}


@dataclass(frozen=True)
class LesionParams:
    """Operating point and clean-up. ``threshold_source``: where ``threshold`` came from
    (``THRESHOLD_*``; "" when not recorded); ``min_cells``: components of fewer map cells are
    dropped as noise (1 keeps every single-cell detection: an ITC is one or two cells)."""

    threshold: float = DEFAULT_THRESHOLD
    min_cells: int = 1
    fill_holes: bool = True
    upsample: int = DEFAULT_UPSAMPLE
    threshold_source: str = ""
    # a tumour-fraction map (no label window) is outlined keeping each cell's tumour area
    # (subcell.py); False: the older 0.5 outline, kept only to measure one against the other
    subcell_fractions: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"the threshold must lie strictly between 0 and 1, got {self.threshold!r}")
        if self.min_cells < 1:
            raise ValueError(f"min_cells must be at least 1, got {self.min_cells!r}")
        if not 1 <= self.upsample <= 64:
            raise ValueError(f"upsample must be 1..64 fine px per cell, got {self.upsample!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "threshold_source": self.threshold_source,
                "min_cells": self.min_cells, "fill_holes": self.fill_holes, "upsample": self.upsample}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LesionParams:
        """From ``to_dict``'s keys (as ``summary.json`` holds them); missing ones default
        (an older file without ``threshold_source`` reads as "" : not recorded)."""
        default = cls()
        return cls(threshold=float(data.get("threshold", default.threshold)),
                   threshold_source=str(data.get("threshold_source") or ""),
                   min_cells=int(data.get("min_cells", default.min_cells)),
                   fill_holes=bool(data.get("fill_holes", default.fill_holes)),
                   upsample=int(data.get("upsample", default.upsample)))


Point = tuple[float, float]


@dataclass(frozen=True)
class Lesion:
    """One suspect lesion. Geometry in level-0 px; sizes ``None`` without an mpp.

    ``l0_outline``: open ring of the (window-corrected) region's largest piece;
    ``l0_diameter_ends``: the two points whose distance is the largest diameter (to draw it).
    """

    index: int  # 1 = largest
    l0_outline: tuple[Point, ...]
    l0_centroid: Point
    l0_bbox: tuple[float, float, float, float]  # x, y, w, h of the outline
    l0_diameter_ends: tuple[Point, Point]
    l0_diameter: float
    diameter_mm: float | None
    area_mm2: float | None
    max_probability: float
    mean_probability: float
    cells: int
    size_class: SizeClass
    # the diameter's interval (module docstring, 6); None without an mpp or when not recorded
    diameter_low_mm: float | None = None
    diameter_high_mm: float | None = None
    # test-time-augmentation uncertainty over the lesion's cells (``lesion_uncertainty``): mean
    # and max std of P over 8 views, 0..0.5; None when no uncertainty map was computed for it;
    # ``tta_uncertainty_computed``: fraction of its cells the means rest on
    tta_uncertainty_mean: float | None = None
    tta_uncertainty_max: float | None = None
    tta_uncertainty_computed: float | None = None

    @property
    def name(self) -> str:
        return f"lesion-{self.index}"

    @property
    def border(self) -> bool:
        """True when the diameter's interval straddles a size-class border."""
        return interval_straddles_border(self.diameter_low_mm, self.diameter_high_mm)

    def to_dict(self, *, with_outline: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "size_class": self.size_class.value,
            "diameter_mm": None if self.diameter_mm is None else round(self.diameter_mm, 6),
            "area_mm2": None if self.area_mm2 is None else round(self.area_mm2, 6),
            "max_probability": round(self.max_probability, 6),
            "mean_probability": round(self.mean_probability, 6),
            "cells": self.cells,
            "diameter_range_mm": (None if self.diameter_low_mm is None or self.diameter_high_mm is None
                                  else [round(self.diameter_low_mm, 6), round(self.diameter_high_mm, 6)]),
            "size_class_border": self.border,
            "centroid_l0": [round(v, 2) for v in self.l0_centroid],
            "bbox_l0": [round(v, 2) for v in self.l0_bbox],
            "diameter_l0": round(self.l0_diameter, 3),
            "diameter_ends_l0": [[round(v, 2) for v in p] for p in self.l0_diameter_ends],
        }
        if self.tta_uncertainty_computed is not None:  # only when an uncertainty map was read
            out["tta_uncertainty_mean"] = _rounded(self.tta_uncertainty_mean)
            out["tta_uncertainty_max"] = _rounded(self.tta_uncertainty_max)
            out["tta_uncertainty_computed"] = round(self.tta_uncertainty_computed, 6)
        if with_outline:
            out["outline_l0"] = [[round(x, 2), round(y, 2)] for x, y in self.l0_outline]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], l0_outline: Sequence[Point] | None = None) -> Lesion:
        """From ``to_dict``'s keys (a lesion of ``summary.json``). The outline comes from
        ``outline_l0`` when present, else from ``l0_outline`` (``lesions.geojson`` holds the
        outlines of an analysis), else it is empty. Raises KeyError / ValueError / TypeError
        on a malformed entry (the reader names the file)."""
        name = str(data["name"])
        prefix, _, number = name.rpartition("-")
        if prefix != "lesion" or not number.isdigit():
            raise ValueError(f"a lesion name is lesion-<number>, got {name!r}")
        outline = data.get("outline_l0", l0_outline or ())
        ends = data["diameter_ends_l0"]
        diameter_mm, area_mm2 = data.get("diameter_mm"), data.get("area_mm2")
        return cls(
            index=int(number),
            l0_outline=tuple((float(x), float(y)) for x, y in outline),
            l0_centroid=_point(data["centroid_l0"]),
            l0_bbox=_bbox(data["bbox_l0"]),
            l0_diameter_ends=(_point(ends[0]), _point(ends[1])),
            l0_diameter=float(data["diameter_l0"]),
            diameter_mm=None if diameter_mm is None else float(diameter_mm),
            area_mm2=None if area_mm2 is None else float(area_mm2),
            max_probability=float(data["max_probability"]),
            mean_probability=float(data["mean_probability"]),
            cells=int(data["cells"]),
            size_class=SizeClass(str(data["size_class"])),
            diameter_low_mm=None if not data.get("diameter_range_mm") else float(data["diameter_range_mm"][0]),
            diameter_high_mm=None if not data.get("diameter_range_mm") else float(data["diameter_range_mm"][1]),
            tta_uncertainty_mean=_optional_float(data.get("tta_uncertainty_mean")),
            tta_uncertainty_max=_optional_float(data.get("tta_uncertainty_max")),
            tta_uncertainty_computed=_optional_float(data.get("tta_uncertainty_computed")),
        )


def interval_straddles_border(low_mm: float | None, high_mm: float | None) -> bool:
    """Whether a diameter interval holds two size classes (False when not recorded)."""
    if low_mm is None or high_mm is None:
        return False
    return classify_diameter_mm(low_mm) != classify_diameter_mm(high_mm)


def describe_size(lesion: SizedLesion) -> str:
    """The diameter and class as every output states them: '0.95 mm (micro)', or for a border
    case '0.235 mm (0.195-0.275 mm: ITC/micro border)'; 'size unknown (no scale)' without an mpp."""
    if lesion.diameter_mm is None:
        return "size unknown (no scale)"
    if interval_straddles_border(lesion.diameter_low_mm, lesion.diameter_high_mm):
        low, high = lesion.diameter_low_mm, lesion.diameter_high_mm
        return (f"{lesion.diameter_mm:.3f} mm ({low:.3f}\u2013{high:.3f} mm: "
                f"{_class_word(classify_diameter_mm(low))}/{_class_word(classify_diameter_mm(high))} border)")
    return f"{lesion.diameter_mm:.2f} mm ({_class_word(lesion.size_class)})"


class SizedLesion(Protocol):
    """What ``node_class_border`` reads of a lesion (``Lesion``, the report's ``LesionEntry``)."""

    name: str
    size_class: SizeClass
    diameter_mm: float | None
    diameter_low_mm: float | None
    diameter_high_mm: float | None


_CLASS_RANK = {SizeClass.ITC: 1, SizeClass.MICRO: 2, SizeClass.MACRO: 3}


def node_class_border(lesions: Sequence[SizedLesion]) -> tuple[SizedLesion, SizeClass] | None:
    """Whether a node's label (the class of its largest lesion) could be another class
    within its lesions' diameter intervals, and which: ``(the lesion that would change it,
    the class the node would then have)``, else None. Upwards first (a lesion whose interval
    reaches the next class), then downwards (the largest lesion below its border)."""
    known = [les for les in lesions if les.size_class in _CLASS_RANK and les.diameter_low_mm is not None
             and les.diameter_high_mm is not None]
    if not known:
        return None
    largest = max(known, key=lambda les: les.diameter_mm or 0.0)
    rank = _CLASS_RANK[largest.size_class]
    up = max(known, key=lambda les: les.diameter_high_mm)
    high = classify_diameter_mm(up.diameter_high_mm)
    if _CLASS_RANK.get(high, 0) > rank:
        return up, high
    # every lesion's class at its low end: the node's largest could fall below its border
    low = max((classify_diameter_mm(les.diameter_low_mm) for les in known), key=lambda c: _CLASS_RANK[c])
    if _CLASS_RANK[low] < rank:
        return largest, low
    return None


def node_border(label: NodeLabel, lesions: Sequence[SizedLesion]) -> tuple[NodeLabel | None, str]:
    """For a node labelled ``label`` from ``lesions``: (the label a border lesion could give
    it instead, the words saying which lesion and its interval), or (None, "") when no
    lesion's interval crosses the node's class. Only a final lesion label (ITC, micro,
    macro) can have a border; negative and unknown nodes have none."""
    if label not in (NodeLabel.ITC, NodeLabel.MICRO, NodeLabel.MACRO):
        return None, ""
    found = node_class_border(lesions)
    if found is None:
        return None, ""
    lesion, other = found
    return NodeLabel(other.value), f"{lesion.name} {describe_size(lesion)}"


def _class_word(size_class: SizeClass) -> str:
    return "ITC" if size_class is SizeClass.ITC else size_class.value


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _point(xy: Sequence[Any]) -> Point:
    x, y = xy
    return float(x), float(y)


def _bbox(xywh: Sequence[Any]) -> tuple[float, float, float, float]:
    x, y, w, h = xywh
    return float(x), float(y), float(w), float(h)


def probabilities_of(encoded: np.ndarray) -> np.ndarray:
    """Encoded map -> float64 probabilities with every non-probability code as 0."""
    values = np.asarray(encoded, np.float64)
    if values.ndim != 2:
        raise ValueError(f"a probability map must be 2-D (rows x cols), got shape {values.shape}")
    return np.where(np.isfinite(values) & (values >= 0), np.clip(values, 0.0, 1.0), 0.0)


def find_lesions(encoded: np.ndarray, frame: MapFrame,
                 params: LesionParams = LesionParams()) -> tuple[Lesion, ...]:
    """Every lesion of the map, largest diameter first (see the module docstring)."""
    prob = probabilities_of(encoded)
    positive = prob >= params.threshold
    labels, n = ndimage.label(positive, structure=np.ones((3, 3), bool))
    if n == 0:
        return ()
    if n > MAX_LESION_REGIONS:
        raise InferenceError(
            f"the map has {n:,} separate regions at P >= {params.threshold:.2f} (at most "
            f"{MAX_LESION_REGIONS:,} are measured): that is scattered noise, not lesions; check the "
            "threshold and the model before reading any lesion from this map")
    found = []
    cache: dict = {}  # equal crops measured once: a map of 10^6 lone cells stays linear
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        cells = labels[sl] == k
        n_cells = int(cells.sum())
        if n_cells < params.min_cells:
            continue
        cell_values = prob[sl][cells]
        measured = _measure_component(prob, labels, k, sl, frame, params, cache)
        found.append((measured, float(cell_values.max()), float(cell_values.mean()), n_cells))
    found.sort(key=lambda f: (-f[0][2], -f[1]))  # largest diameter, then most probable, first
    lesions = []
    for i, ((outline, ends, l0_diam, l0_area, centroid, subcell), p_max, p_mean, n_cells) in enumerate(found, 1):
        diameter_mm, area_mm2 = l0_px_to_mm(l0_diam, frame.mpp), l0_area_to_mm2(l0_area, frame.mpp)
        low = high = None
        if diameter_mm is not None:
            cell_mm = frame.um_per_cell / 1000.0
            below, above = (SUBCELL_UNCERTAINTY_CELLS if subcell else THRESHOLD_UNCERTAINTY_CELLS)
            low = max(diameter_mm - below * cell_mm, 0.0)
            high = diameter_mm + above * cell_mm
        xs, ys = zip(*outline)
        lesions.append(Lesion(
            index=i, l0_outline=outline, l0_centroid=centroid,
            l0_bbox=(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)),
            l0_diameter_ends=ends, l0_diameter=l0_diam, diameter_mm=diameter_mm, area_mm2=area_mm2,
            max_probability=p_max, mean_probability=p_mean, cells=n_cells,
            size_class=classify_diameter_mm(diameter_mm), diameter_low_mm=low, diameter_high_mm=high,
        ))
    return tuple(lesions)


def _measure_component(prob: np.ndarray, labels: np.ndarray, k: int, sl: tuple[slice, slice],
                       frame: MapFrame, params: LesionParams, cache: dict):
    """(outline, diameter ends, l0 diameter, l0 area, l0 centroid, sub-cell outline?) of
    component ``k``."""
    pad = 2  # cells: room for the interpolated edge and the zero border around it
    r0, c0 = max(sl[0].start - pad, 0), max(sl[1].start - pad, 0)
    r1, c1 = min(sl[0].stop + pad, prob.shape[0]), min(sl[1].stop + pad, prob.shape[1])
    # a huge lesion (hundreds of cells across) is measured on a coarser fine raster: its
    # relative error is small anyway, and memory stays bounded
    u = max(1, min(params.upsample, int(math.sqrt(MAX_FINE_PX / ((r1 - r0) * (c1 - c0))))))
    crop = prob[r0:r1, c0:c1].copy()
    lab = labels[r0:r1, c0:c1]
    crop[(lab != 0) & (lab != k)] = 0.0  # a neighbouring lesion must not bleed into this one
    key = (crop.shape, u, crop.tobytes(), (lab == k).tobytes())
    shape_of = cache.get(key)
    if shape_of is None:
        if len(cache) >= MEASURE_CACHE_SIZE:
            cache.clear()
        shape_of = cache[key] = _measure_crop(crop, lab == k, u, frame, params)
    diam_fine, ends_fine, simplified, centroid_fine, area_count, subcell = shape_of
    fine_px_l0 = frame.l0_cell / u

    def to_l0(xy: np.ndarray) -> np.ndarray:
        out = (xy + 0.5) * fine_px_l0
        out[:, 0] += frame.l0_origin_x + c0 * frame.l0_cell
        out[:, 1] += frame.l0_origin_y + r0 * frame.l0_cell
        return out

    l0_diam = diam_fine * fine_px_l0
    (ax, ay), (bx, by) = to_l0(ends_fine)
    outline_xy = to_l0(simplified)
    outline = tuple((round(float(x), 3), round(float(y), 3)) for x, y in outline_xy)
    cx, cy = to_l0(centroid_fine)[0]
    l0_area = area_count * fine_px_l0 * fine_px_l0
    ends = ((float(ax), float(ay)), (float(bx), float(by)))
    return outline, ends, l0_diam, l0_area, (float(cx), float(cy)), subcell


def _measure_crop(crop: np.ndarray, component: np.ndarray, u: int, frame: MapFrame, params: LesionParams):
    """The fine-raster measurement of one component in its crop, in fine px of the crop:
    (diameter, its two ends, simplified outline, centroid, area in fine px, whether the
    sub-cell outline of a fraction map was used). Depends only on
    the crop's values, the component's cells, ``u``, the frame's cell and window and the
    params, so equal crops (the many lone cells of a noisy map) are measured once."""
    rows, cols = crop.shape
    # fine pixel j has its centre at cell-centre coordinate (j + 0.5) / u - 0.5
    fy = (np.arange(rows * u) + 0.5) / u - 0.5
    fx = (np.arange(cols * u) + 0.5) / u - 0.5
    yy, xx = np.meshgrid(fy, fx, indexing="ij")
    fine = ndimage.map_coordinates(crop, [yy, xx], order=1, mode="nearest")
    # a tumour-fraction raster: keep each cell's tumour area, not the 0.5 outline that cuts
    # off the ends tapering into partial cells (docstring, 5; subcell.py). A map of only 0 and
    # 1 says nothing about where inside a cell the edge lies: its outline stays the 0.5 one.
    subcell = (frame.l0_window == 0 and params.subcell_fractions
               and bool(np.any((crop > 0) & (crop < 1))))
    if subcell:
        mask = fraction_preserving_mask(crop, component, fine, u)
    else:
        mask = fine >= params.threshold
    if not mask.any():
        # a lone cell just above the threshold with lower neighbours: no fine pixel centre
        # (offset from the cell centre) reaches it; keep the cell's own fine pixels
        mask = np.kron(component, np.ones((u, u), bool))
    if params.fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    fine_px_l0 = frame.l0_cell / u
    half_window_fine = frame.l0_window / fine_px_l0 / 2.0
    if half_window_fine >= 0.5:
        padded = np.pad(mask, 1)
        depth = ndimage.distance_transform_cdt(padded, metric="chessboard")[1:-1, 1:-1]
        # chessboard depth d: a square of half-side d - 0.5 px around the pixel is inside
        eroded = depth >= half_window_fine + 0.5
        mask = eroded if eroded.any() else depth == depth.max()
    contours = measure.find_contours(np.pad(mask, 1).astype(np.float32), 0.5)
    points = np.concatenate(contours)[:, ::-1] - 1.0  # (x, y) fine px
    largest = max(contours, key=len)[:, ::-1] - 1.0
    diam = max_feret_diameter(points)
    ends = np.array(_diameter_ends(points))
    # drop the collinear run of vertices every fine-pixel edge leaves (within 0.5 fine px)
    simplified = approximate_polygon(largest, tolerance=0.5)
    if len(np.unique(simplified, axis=0)) < 3:
        # a region one fine pixel wide (a lone cell eroded by the label window): simplifying
        # its diamond-shaped contour would leave a line, which is no outline
        simplified = largest
    if len(simplified) > 1 and np.array_equal(simplified[0], simplified[-1]):
        simplified = simplified[:-1]
    ys_f, xs_f = np.nonzero(mask)
    centroid = np.array([[xs_f.mean(), ys_f.mean()]])
    return diam, ends, simplified, centroid, float(mask.sum()), subcell


def _diameter_ends(points_xy: np.ndarray) -> tuple[Point, Point]:
    """The farthest pair among the hull vertices (a hull has few vertices: brute force)."""
    hull = convex_hull(points_xy)
    if len(hull) == 1:
        p = (float(hull[0][0]), float(hull[0][1]))
        return p, p
    d = hull[:, None, :] - hull[None, :, :]
    i, j = np.unravel_index(np.argmax(np.einsum("ijk,ijk->ij", d, d)), (len(hull), len(hull)))
    return (float(hull[i][0]), float(hull[i][1])), (float(hull[j][0]), float(hull[j][1]))

