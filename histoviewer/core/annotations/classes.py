"""Annotation classes: a name, a colour and whether it is tumour (sized as a metastasis).

QuPath spells its default class "Tumor"; the defaults here use QuPath's names and colours
so that files exchanged with it keep their look. CAMELYON16/17 ASAP files use the group
names ``_0`` and ``_1`` for metastases and ``_2`` for normal islands cut out of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AnnotationClass",
    "DEFAULT_CLASSES",
    "default_class_for",
    "merge_classes",
    "parse_color",
    "rgb_to_hex",
]

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class AnnotationClass:
    """One class. ``is_tumour`` classes get a largest diameter and a size class."""

    name: str
    rgb: RGB
    is_tumour: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("a class needs a non-empty name")
        rgb = tuple(int(c) for c in self.rgb)
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ValueError(f"class {self.name!r}: colour must be three values 0-255, got {self.rgb!r}")
        object.__setattr__(self, "rgb", rgb)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "color": list(self.rgb), "is_tumour": self.is_tumour}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnnotationClass:
        return cls(str(d["name"]), parse_color(d["color"]), bool(d.get("is_tumour", False)))


DEFAULT_CLASSES: tuple[AnnotationClass, ...] = (
    AnnotationClass("Tumor", (200, 0, 0), is_tumour=True),
    AnnotationClass("Suspect", (255, 165, 0)),
    AnnotationClass("Normal", (0, 160, 0)),
    AnnotationClass("Other", (0, 110, 255)),
)

# Names from other tools that mean tumour / not tumour (lower case).
_TUMOUR_NAMES = frozenset({"tumor", "tumour", "metastases", "metastasis", "_0", "_1", "carcinoma"})
_FALLBACK_COLORS: tuple[RGB, ...] = (
    (155, 89, 182), (26, 188, 156), (241, 196, 15), (127, 140, 141), (231, 76, 60), (52, 152, 219),
)


def default_class_for(name: str, rgb: RGB | None = None) -> AnnotationClass:
    """A class for a name met in a file: the default of that name, else a new one whose
    tumour flag follows the CAMELYON/QuPath naming conventions."""
    for cls in DEFAULT_CLASSES:
        if cls.name == name:
            return cls if rgb is None else AnnotationClass(name, rgb, cls.is_tumour)
    if rgb is None:
        rgb = _FALLBACK_COLORS[sum(map(ord, name)) % len(_FALLBACK_COLORS)]
    return AnnotationClass(name, rgb, name.strip().lower() in _TUMOUR_NAMES)


def merge_classes(base: Sequence[AnnotationClass], extra: Iterable[AnnotationClass]) -> tuple[AnnotationClass, ...]:
    """``base`` plus the classes of ``extra`` whose names are new (first one wins)."""
    out = {c.name: c for c in base}
    for c in extra:
        out.setdefault(c.name, c)
    return tuple(out.values())


_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_color(value: Any) -> RGB:
    """``[r, g, b]`` (QuPath GeoJSON), ``"#rrggbb"`` (ASAP) or a packed int (QuPath's older
    ``colorRGB``, ARGB, possibly negative) as an ``(r, g, b)`` tuple; ``ValueError`` otherwise."""
    if isinstance(value, str):
        m = _HEX.match(value.strip())
        if not m:
            raise ValueError(f"colour {value!r} is not #rrggbb")
        v = int(m.group(1), 16)
        return (v >> 16) & 255, (v >> 8) & 255, v & 255
    if isinstance(value, bool):
        raise ValueError(f"colour {value!r} is not a colour")
    if isinstance(value, int):
        v = value & 0xFFFFFF
        return (v >> 16) & 255, (v >> 8) & 255, v & 255
    if isinstance(value, (list, tuple)) and len(value) in (3, 4):
        rgb = tuple(value[:3])
        if all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgb):
            return rgb  # type: ignore[return-value]
    raise ValueError(f"colour {value!r} is not [r, g, b] with values 0-255")


def rgb_to_hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)
