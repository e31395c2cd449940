"""The vocabulary of nodal staging: metastasis size classes and lymph node labels.

Size classes follow AJCC 8th edition, as used by CAMELYON17. ITC: largest diameter
<= 0.2 mm; micrometastasis: > 0.2 mm and <= 2.0 mm; macrometastasis: > 2.0 mm. The largest
diameter is the maximum Feret diameter in mm.

A node's label is the size class of its largest lesion (CAMELYON17), or ``negative``.

A leaf module (it imports nothing of ours): the AI lesions (``analysis``), the
pathologist's annotations (``annotations``), the phantom's ground truth, exports and
reports all speak these terms, so none of them has to import another for them.
"""

from __future__ import annotations

import enum
import math

__all__ = [
    "ITC_MAX_MM",
    "MICRO_MAX_MM",
    "SIZE_CLASS_NAMES",
    "SIZE_CLASS_RGB",
    "NodeLabel",
    "SizeClass",
    "classify_diameter_mm",
]

ITC_MAX_MM = 0.2
MICRO_MAX_MM = 2.0


class SizeClass(str, enum.Enum):
    """Size class of one lesion; ``UNKNOWN`` when the slide has no physical scale."""

    ITC = "itc"
    MICRO = "micro"
    MACRO = "macro"
    UNKNOWN = "unknown"


# One palette for lesions wherever they are drawn (viewer, exports, reports, GeoJSON):
# distinct from each other and from the heatmap colour maps' blends.
SIZE_CLASS_RGB: dict[SizeClass, tuple[int, int, int]] = {
    SizeClass.ITC: (0, 220, 255),  # cyan
    SizeClass.MICRO: (255, 160, 0),  # orange
    SizeClass.MACRO: (255, 40, 150),  # magenta-red
    SizeClass.UNKNOWN: (150, 150, 150),
}
# How the classes are written for people (the enum values are the machine-readable form).
SIZE_CLASS_NAMES: dict[SizeClass, str] = {
    SizeClass.ITC: "ITC", SizeClass.MICRO: "micro", SizeClass.MACRO: "macro", SizeClass.UNKNOWN: "size unknown",
}


def classify_diameter_mm(diameter_mm: float | None) -> SizeClass:
    """Size class of a lesion from its largest diameter in millimetres.

    ``None`` or NaN (no microns-per-pixel on the slide) gives ``SizeClass.UNKNOWN``
    rather than a guess.
    """
    if diameter_mm is None or math.isnan(diameter_mm):
        return SizeClass.UNKNOWN
    if diameter_mm < 0:
        raise ValueError(f"a lesion diameter cannot be negative: {diameter_mm} mm")
    if diameter_mm <= ITC_MAX_MM:
        return SizeClass.ITC
    if diameter_mm <= MICRO_MAX_MM:
        return SizeClass.MICRO
    return SizeClass.MACRO


class NodeLabel(str, enum.Enum):
    """CAMELYON17 slide label (the strings are the challenge's): ``negative`` with no lesion,
    else the size class of the largest lesion; ``unknown`` when the slide has no scale."""

    NEGATIVE = "negative"
    ITC = "itc"
    MICRO = "micro"
    MACRO = "macro"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, text: str) -> NodeLabel:
        """Case-insensitive; ``ValueError`` listing the allowed labels otherwise."""
        key = text.strip().lower()
        for label in cls:
            if label.value == key:
                return label
        allowed = ", ".join(lbl.value for lbl in cls if lbl is not cls.UNKNOWN)
        raise ValueError(f"unknown node label {text.strip()!r} (expected one of {allowed})")

    @property
    def is_metastasis(self) -> bool:
        """Micro or macro: a positive node for pN (ITC-only nodes are not)."""
        return self in (NodeLabel.MICRO, NodeLabel.MACRO)
