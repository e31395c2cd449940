"""Physical units in one place: level-0 pixels to micrometres and millimetres, scale bars.

One vocabulary: ``mpp`` is micrometres per level-0 pixel of a slide (or per pixel of the
image named in the parameter, e.g. a model's input). An unknown scale is ``None``, never 0
or NaN; every conversion here returns ``None`` for it, so "unknown" travels to the end
(a size class ``unknown``, a table cell ``unknown``) instead of turning into a number.
"""

from __future__ import annotations

import math

__all__ = [
    "MPP_MAX",
    "MPP_MIN",
    "UM_PER_MM",
    "format_length_um",
    "l0_area_to_mm2",
    "l0_area_to_um2",
    "l0_px_to_mm",
    "l0_px_to_um",
    "mm_to_um",
    "mpp_problem",
    "plausible_mpp",
    "scale_bar_length_um",
    "um_to_l0_px",
    "um_to_mm",
]

UM_PER_MM = 1000.0

# The plausible scale of a microscope image, um per pixel: the one sanity range every scale
# read (slide properties, TIFF resolution tags, map files, analysis folders) or typed (the
# pixel size a user states) passes. Why these bounds: a 100x oil objective on a modern
# scanner gives ~0.1 um/px and optical resolution ends near 0.2 um, so below 0.05 um/px
# nothing is a light-microscope pixel (1e-300 or 0 are unit or parsing errors); at the
# other end a 1x macro overview is ~10-20 um/px and a whole-slide thumbnail stored as a
# slide ~50 um/px, so beyond 100 um/px (1e6, inf) a "slide" is no longer microscopy.
# Outside the range the scale is unknown, with the reason, never a size computed from it.
MPP_MIN = 0.05
MPP_MAX = 100.0


def mpp_problem(mpp: object) -> str | None:
    """Why ``mpp`` (um per pixel, any type) is not a usable microscope scale, or None when
    it is: a real number in ``MPP_MIN``..``MPP_MAX`` (see above). None itself: "not stated"."""
    if mpp is None:
        return "no pixel size is stated"
    if isinstance(mpp, bool):
        return f"the pixel size {mpp!r} is not a number"
    try:
        value = float(mpp)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return f"the pixel size {str(mpp)[:40]!r} is not a number"
    if not math.isfinite(value):
        return f"the pixel size {value} um/px is not a finite number"
    if not MPP_MIN <= value <= MPP_MAX:
        return (f"the pixel size {value:g} um/px is outside the plausible range for microscopy "
                f"({MPP_MIN:g}-{MPP_MAX:g} um/px)")
    return None


def plausible_mpp(mpp: object) -> float | None:
    """``mpp`` as a float when it passes ``mpp_problem``, else None (an unknown scale)."""
    return None if mpp_problem(mpp) is not None else float(mpp)  # type: ignore[arg-type]


def format_length_um(length_um: float) -> str:
    """'250 \u00b5m', '1.5 mm': micrometres below 1 mm, millimetres from there."""
    if length_um >= UM_PER_MM:
        return f"{length_um / UM_PER_MM:.3g} mm"
    return f"{length_um:.3g} \u00b5m"


def scale_bar_length_um(um_per_screen_px: float, max_screen_px: float) -> float:
    """Largest 1-2-5 length (um) whose bar fits in ``max_screen_px`` screen pixels."""
    if um_per_screen_px <= 0 or max_screen_px <= 0:
        raise ValueError("scale and bar width must be positive")
    limit_um = um_per_screen_px * max_screen_px
    decade = 10.0 ** math.floor(math.log10(limit_um))
    return next(step * decade for step in (5, 2, 1) if step * decade <= limit_um)


def um_to_mm(length_um: float) -> float:
    return length_um / UM_PER_MM


def mm_to_um(length_mm: float) -> float:
    return length_mm * UM_PER_MM


def l0_px_to_um(l0_px: float, mpp: float | None) -> float | None:
    """A level-0 pixel distance in micrometres, or None when the scale is unknown."""
    return None if mpp is None else l0_px * mpp


def l0_px_to_mm(l0_px: float, mpp: float | None) -> float | None:
    """A level-0 pixel distance in millimetres, or None when the scale is unknown."""
    return None if mpp is None else l0_px * mpp / UM_PER_MM


def l0_area_to_um2(l0_px2: float, mpp: float | None) -> float | None:
    """A level-0 pixel area (px^2) in square micrometres, or None when the scale is unknown."""
    return None if mpp is None else l0_px2 * mpp * mpp


def l0_area_to_mm2(l0_px2: float, mpp: float | None) -> float | None:
    """A level-0 pixel area (px^2) in square millimetres, or None when the scale is unknown."""
    return None if mpp is None else l0_px2 * (mpp / UM_PER_MM) ** 2


def um_to_l0_px(length_um: float, mpp: float | None) -> float | None:
    """A length in micrometres as level-0 pixels, or None when the scale is unknown."""
    return None if mpp is None else length_um / mpp
