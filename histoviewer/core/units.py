"""Physical units in one place: level-0 pixels to micrometres and millimetres, scale bars."""

from __future__ import annotations

import math

def format_length_um(length_um: float) -> str:
    """'250 \u00b5m', '1.5 mm': micrometres below 1 mm, millimetres from there."""
    if length_um >= 1000:
        return f"{length_um / 1000:.3g} mm"
    return f"{length_um:.3g} \u00b5m"


def scale_bar_length_um(um_per_screen_px: float, max_screen_px: float) -> float:
    """Largest 1-2-5 length (um) whose bar fits in ``max_screen_px`` screen pixels."""
    if um_per_screen_px <= 0 or max_screen_px <= 0:
        raise ValueError("scale and bar width must be positive")
    limit_um = um_per_screen_px * max_screen_px
    decade = 10.0 ** math.floor(math.log10(limit_um))
    return next(step * decade for step in (5, 2, 1) if step * decade <= limit_um)


def l0_px_to_mm(l0_px: float, mpp: float | None) -> float | None:
    """A level-0 pixel distance in millimetres, or None when the scale is unknown."""
    return None if mpp is None else l0_px * mpp / 1000.0
