"""Features of one slide's probability map for a learned node classifier.

The features are computed from the same lesions the rules use (``lesions.find_lesions``
through ``node_label.analyse_map``: the same threshold, window correction and Feret
diameters), plus what the lesions alone do not say (how graded the map is, how much of
the tissue is above the threshold, how many lone specks it holds). Every feature has a
name and a unit (``FEATURES``); a classifier file stores the list it was trained on and is
refused when it differs from this one (a forest fed features in another order would
answer nonsense).

Units: diameters in mm (maximum Feret, window-corrected), areas in mm^2, fractions of the
slide's *classified tissue cells* (0..1), probabilities 0..1, counts of lesions or map
cells. A map with no classified tissue has fractions 0 and probabilities 0.

Map values are encoded as ``lesions.py`` says (probability 0..1, -1 background, -2 failed,
NaN not computed); only classified cells (0..1) enter the probability statistics.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from histoviewer.core.analysis.node_label import SlideLesions

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "HISTOGRAM_EDGES",
    "FeatureSpec",
    "node_features",
]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    unit: str
    description: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "unit": self.unit, "description": self.description}


# Probability histogram of the classified tissue cells: the fraction of them in each bin.
# The bins are finer at the top, where tumour and false-positive specks differ.
HISTOGRAM_EDGES = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97, 1.0)
SMALL_LESION_CELLS = 2  # a lesion of 1-2 map cells: an ITC or a false-positive speck

_BASE = (
    FeatureSpec(
        "largest_diameter_mm",
        "mm",
        "largest lesion's maximum Feret diameter (window-corrected), 0 without lesions",
    ),
    FeatureSpec(
        "largest_diameter_low_mm",
        "mm",
        "low end of the largest lesion's diameter interval (diameter - 1 map cell)",
    ),
    FeatureSpec(
        "largest_diameter_high_mm",
        "mm",
        "high end of the largest lesion's diameter interval (diameter + 1.5 cells)",
    ),
    FeatureSpec(
        "largest_area_mm2", "mm^2", "largest lesion's area (window-corrected outline)"
    ),
    FeatureSpec(
        "largest_cells",
        "map cells",
        "map cells above the threshold in the largest lesion",
    ),
    FeatureSpec(
        "largest_max_probability",
        "probability 0..1",
        "largest lesion's highest cell probability",
    ),
    FeatureSpec(
        "largest_mean_probability",
        "probability 0..1",
        "largest lesion's mean cell probability",
    ),
    FeatureSpec(
        "second_diameter_mm",
        "mm",
        "second-largest lesion's diameter, 0 with fewer than two lesions",
    ),
    FeatureSpec(
        "lesion_count",
        "lesions",
        "lesions (8-connected components above the threshold)",
    ),
    FeatureSpec(
        "small_lesion_count",
        "lesions",
        f"lesions of at most {SMALL_LESION_CELLS} map cells (ITC or speck)",
    ),
    FeatureSpec("total_lesion_area_mm2", "mm^2", "summed area of all lesions"),
    FeatureSpec(
        "tumour_area_fraction",
        "fraction of classified tissue cells",
        "classified tissue cells at or above the threshold",
    ),
    FeatureSpec(
        "max_probability",
        "probability 0..1",
        "highest probability of any classified tissue cell",
    ),
    FeatureSpec(
        "mean_probability",
        "probability 0..1",
        "mean probability over the classified tissue cells",
    ),
    FeatureSpec(
        "tissue_area_mm2", "mm^2", "classified tissue area (cells x cell area)"
    ),
    FeatureSpec("map_cell_mm", "mm", "side of one map cell on the slide"),
)
_HIST = tuple(
    FeatureSpec(
        f"hist_{lo:g}_{hi:g}",
        "fraction of classified tissue cells",
        f"classified tissue cells with probability in [{lo:g}, {hi:g}{']' if hi == 1.0 else ')'}",
    )
    for lo, hi in itertools.pairwise(HISTOGRAM_EDGES)
)
FEATURES: tuple[FeatureSpec, ...] = _BASE + _HIST
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


def node_features(encoded: np.ndarray, found: SlideLesions) -> np.ndarray:
    """The ``FEATURES`` of one map (float64, in ``FEATURE_NAMES`` order). ``found`` is
    ``analyse_map(encoded, frame, params)`` of the same map; its frame must have a scale
    (without one no size is known and no learned label either)."""
    frame = found.frame
    if frame.um_per_cell is None:
        raise ValueError("node features need the slide's scale (microns per pixel)")
    cell_mm = frame.um_per_cell / 1000.0
    values = np.asarray(encoded, np.float64)
    probs = values[np.isfinite(values) & (values >= 0.0)]
    lesions = found.lesions
    largest = lesions[0] if lesions else None

    def size(value: float | None) -> float:
        return 0.0 if value is None else float(value)

    base = [
        size(largest.diameter_mm) if largest else 0.0,
        size(largest.diameter_low_mm) if largest else 0.0,
        size(largest.diameter_high_mm) if largest else 0.0,
        size(largest.area_mm2) if largest else 0.0,
        float(largest.cells) if largest else 0.0,
        largest.max_probability if largest else 0.0,
        largest.mean_probability if largest else 0.0,
        size(lesions[1].diameter_mm) if len(lesions) > 1 else 0.0,
        float(len(lesions)),
        float(sum(les.cells <= SMALL_LESION_CELLS for les in lesions)),
        float(sum(size(les.area_mm2) for les in lesions)),
        float(np.mean(probs >= found.params.threshold)) if probs.size else 0.0,
        float(probs.max()) if probs.size else 0.0,
        float(probs.mean()) if probs.size else 0.0,
        probs.size * cell_mm * cell_mm,
        cell_mm,
    ]
    counts, _ = np.histogram(probs, bins=np.asarray(HISTOGRAM_EDGES))
    hist = counts / probs.size if probs.size else np.zeros(len(HISTOGRAM_EDGES) - 1)
    return np.asarray(base + list(hist), np.float64)
