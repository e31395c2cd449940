"""The viewport: which part of the slide is on screen, and at what zoom (pure maths, no Qt).

``l0_cx``/``l0_cy`` is the level-0 point at the centre of the view; ``scale`` is screen
pixels per level-0 pixel (1.0 shows level 0 at 1:1); ``screen_w``/``screen_h`` are the
view's size in screen pixels.
"""

from __future__ import annotations

import dataclasses

MAX_SCALE = 8.0  # 8 screen px per level-0 px: closer than any pathologist needs


@dataclasses.dataclass(frozen=True)
class Viewport:
    l0_cx: float
    l0_cy: float
    scale: float
    screen_w: int
    screen_h: int

    @property
    def l0_per_screen_px(self) -> float:
        return 1.0 / self.scale

    @property
    def l0_rect(self) -> tuple[float, float, float, float]:
        """Visible level-0 rectangle (x0, y0, x1, y1)."""
        half_w = self.screen_w / self.scale / 2.0
        half_h = self.screen_h / self.scale / 2.0
        return self.l0_cx - half_w, self.l0_cy - half_h, self.l0_cx + half_w, self.l0_cy + half_h

    @property
    def l0_xywh(self) -> tuple[float, float, float, float]:
        """Visible level-0 rectangle as (x, y, width, height)."""
        x0, y0, x1, y1 = self.l0_rect
        return x0, y0, x1 - x0, y1 - y0

    def screen_to_l0(self, sx: float, sy: float) -> tuple[float, float]:
        x0, y0, _, _ = self.l0_rect
        return x0 + sx / self.scale, y0 + sy / self.scale

    def l0_to_screen(self, l0_x: float, l0_y: float) -> tuple[float, float]:
        x0, y0, _, _ = self.l0_rect
        return (l0_x - x0) * self.scale, (l0_y - y0) * self.scale

    def resized(self, screen_w: int, screen_h: int) -> "Viewport":
        return dataclasses.replace(self, screen_w=screen_w, screen_h=screen_h)

    def panned(self, screen_dx: float, screen_dy: float) -> "Viewport":
        """Move the content by a screen-pixel drag (dragging right shows what is to the left)."""
        return dataclasses.replace(
            self, l0_cx=self.l0_cx - screen_dx / self.scale, l0_cy=self.l0_cy - screen_dy / self.scale
        )

    def zoomed(self, factor: float, anchor_sx: float, anchor_sy: float, min_scale: float) -> "Viewport":
        """Zoom by ``factor`` keeping the slide point under the anchor (the cursor) fixed."""
        new_scale = min(MAX_SCALE, max(min_scale, self.scale * factor))
        ax, ay = self.screen_to_l0(anchor_sx, anchor_sy)
        # The anchor keeps its screen position: solve for the new centre.
        cx = ax - (anchor_sx - self.screen_w / 2.0) / new_scale
        cy = ay - (anchor_sy - self.screen_h / 2.0) / new_scale
        return dataclasses.replace(self, l0_cx=cx, l0_cy=cy, scale=new_scale)

    def with_scale(self, scale: float) -> "Viewport":
        """Zoom about the centre of the view."""
        return dataclasses.replace(self, scale=min(MAX_SCALE, scale))

    def clamped(self, l0_width: int, l0_height: int) -> "Viewport":
        """Keep the slide centre within the slide so it cannot be panned out of sight."""
        return dataclasses.replace(
            self, l0_cx=min(max(self.l0_cx, 0.0), float(l0_width)), l0_cy=min(max(self.l0_cy, 0.0), float(l0_height))
        )


def fit_scale(l0_width: int, l0_height: int, screen_w: int, screen_h: int, margin: float = 0.97) -> float:
    """The scale at which the whole slide fits in the view, with a small margin."""
    return margin * min(screen_w / max(l0_width, 1), screen_h / max(l0_height, 1))


def fit_viewport(l0_width: int, l0_height: int, screen_w: int, screen_h: int) -> Viewport:
    return Viewport(l0_width / 2.0, l0_height / 2.0, fit_scale(l0_width, l0_height, screen_w, screen_h), screen_w, screen_h)


def magnification_scale(target_mag: float, base_mag: float) -> float:
    """Scale that shows the slide as under a ``target_mag`` objective when level 0 is ``base_mag``."""
    return target_mag / base_mag
