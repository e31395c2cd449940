"""Slide metadata as a frozen dataclass (what ``histoviewer info`` prints)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from histoviewer.core.units import mpp_problem

# x and y pixel sizes of one scan differ by a fraction of a per cent; beyond this ratio the
# header is wrong somewhere and no mean of the two is a scale to measure with.
MAX_MPP_XY_RATIO = 1.1
# Objective powers of real scanners: 1.25x-100x; outside this, "unknown" rather than a number.
OBJECTIVE_POWER_RANGE = (0.5, 200.0)

MPP_FROM_SLIDE = "slide"
MPP_FROM_USER = "user"


def checked_mpp(mpp_x: object, mpp_y: object) -> tuple[float | None, float | None, str | None]:
    """``(mpp_x, mpp_y, None)`` when both are a plausible microscope scale
    (``units.mpp_problem``) and agree, else ``(None, None, why)``: the one check of a
    scale a slide file states."""
    for value in (mpp_x, mpp_y):
        if (problem := mpp_problem(value)) is not None:
            return None, None, problem
    x, y = float(mpp_x), float(mpp_y)  # type: ignore[arg-type]
    if max(x, y) / min(x, y) > MAX_MPP_XY_RATIO:
        return None, None, f"the pixel width ({x:g} um) and height ({y:g} um) disagree"
    return x, y, None


def checked_objective_power(power: float | None) -> float | None:
    """The objective power when plausible (``OBJECTIVE_POWER_RANGE``), else None."""
    if power is None or not math.isfinite(power):
        return None
    lo, hi = OBJECTIVE_POWER_RANGE
    return float(power) if lo <= power <= hi else None


@dataclasses.dataclass(frozen=True)
class SlideInfo:
    """Geometry and scale of one slide.

    ``level_dimensions`` are (width, height) in each level's own pixels; ``level_downsamples``
    map level pixels to level-0 pixels. ``mpp_x``/``mpp_y`` are microns per level-0 pixel, or
    ``None`` when the file does not say or says something implausible (``checked_mpp``;
    ``mpp_note`` then says why): callers must then report the scale as unknown instead of
    inventing one. ``mpp_source``: ``"slide"`` (the file states it), ``"user"`` (the user
    stated it for a slide that has none, ``with_user_mpp``) or None (unknown). ``associated_images`` lists names only (label and macro images
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
    mpp_source: str | None = None
    mpp_note: str | None = None

    def __post_init__(self) -> None:
        # One gate for every backend: a scale is known only when plausible, and then its source is set.
        mpp_x, mpp_y, problem = checked_mpp(self.mpp_x, self.mpp_y)
        if self.mpp_x is None and self.mpp_y is None:
            problem = None
        object.__setattr__(self, "mpp_x", mpp_x)
        object.__setattr__(self, "mpp_y", mpp_y)
        if mpp_x is None:
            object.__setattr__(self, "mpp_source", None)
            if self.mpp_note is None:
                object.__setattr__(self, "mpp_note", problem or "the slide does not state its pixel size")
        else:
            object.__setattr__(self, "mpp_source", self.mpp_source or MPP_FROM_SLIDE)
            object.__setattr__(self, "mpp_note", None)
        object.__setattr__(self, "objective_power", checked_objective_power(self.objective_power))

    @property
    def mpp_user_set(self) -> bool:
        """The scale is the one the user stated (mark every size and magnification from it)."""
        return self.mpp_source == MPP_FROM_USER

    def with_user_mpp(self, mpp: float) -> SlideInfo:
        """This slide with the pixel size the user stated (``ValueError`` naming why when
        ``mpp`` is not plausible). The caller decides whether a slide's own scale may be
        overridden; the objective power is dropped then (the header's no longer fits)."""
        if (problem := mpp_problem(mpp)) is not None:
            raise ValueError(problem)
        return dataclasses.replace(self, mpp_x=float(mpp), mpp_y=float(mpp), mpp_source=MPP_FROM_USER,
                                   mpp_note=None, objective_power=None)

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
            "mpp_source": self.mpp_source,
            "mpp_note": self.mpp_note,
            "objective_power": self.objective_power,
            "associated_images": list(self.associated_images),
        }
        if include_properties:
            out["properties"] = dict(self.properties)
        return out
