"""Slide metadata as a frozen dataclass (what ``histoviewer info`` prints)."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class SlideInfo:
    """Geometry and scale of one slide.

    ``level_dimensions`` are (width, height) in each level's own pixels; ``level_downsamples``
    map level pixels to level-0 pixels. ``mpp_x``/``mpp_y`` are microns per level-0 pixel, or
    ``None`` when the file does not say: callers must then report the scale as unknown
    instead of inventing one. ``associated_images`` lists names only (label and macro images
    can carry patient identifiers and are read only on explicit request).
    """

    path: Path
    backend: str
    vendor: str | None
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp_x: float | None
    mpp_y: float | None
    objective_power: float | None
    associated_images: tuple[str, ...]
    properties: dict[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def mpp(self) -> float | None:
        """Mean microns per level-0 pixel, or ``None`` when the scale is unknown."""
        if self.mpp_x is None or self.mpp_y is None:
            return None
        return (self.mpp_x + self.mpp_y) / 2.0

    @property
    def base_magnification(self) -> float | None:
        """Objective power of level 0, from the header or, failing that, from the mpp.

        The mpp estimate uses the usual convention 10 um/px / mpp (0.25 um/px ~ 40x).
        ``None`` when neither is known.
        """
        if self.objective_power:
            return self.objective_power
        if self.mpp:
            return 10.0 / self.mpp
        return None

    def to_dict(self, include_properties: bool = False) -> dict:
        """JSON-ready dictionary; the mpp stays ``null`` when unknown."""
        out = {
            "path": str(self.path),
            "backend": self.backend,
            "vendor": self.vendor,
            "width": self.dimensions[0],
            "height": self.dimensions[1],
            "level_count": self.level_count,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": list(self.level_downsamples),
            "mpp_x": self.mpp_x,
            "mpp_y": self.mpp_y,
            "mpp_known": self.mpp is not None,
            "objective_power": self.objective_power,
            "associated_images": list(self.associated_images),
        }
        if include_properties:
            out["properties"] = dict(self.properties)
        return out
