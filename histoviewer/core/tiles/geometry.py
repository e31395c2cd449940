"""Tile keys and the tiling of each pyramid level.

Frames: ``l0_`` level-0 pixels, ``lv_`` pixels of one level, ``t_`` tile indices.
"""

from __future__ import annotations

import dataclasses
import math

from histoviewer.core.slide.info import SlideInfo

DEFAULT_TILE_SIZE = 512


@dataclasses.dataclass(frozen=True, order=True)
class TileKey:
    """One tile: ``slide_id`` tells slides apart inside a shared cache."""

    slide_id: int
    level: int
    t_x: int
    t_y: int


@dataclasses.dataclass(frozen=True)
class TileRect:
    """Where a tile lies: its level-0 origin and its size in level pixels.

    Edge tiles are smaller than the tile size.
    """

    l0_x: int
    l0_y: int
    lv_width: int
    lv_height: int


class LevelTiling:
    """How every level of one slide is cut into square tiles of ``tile_size`` level pixels."""

    def __init__(self, info: SlideInfo, tile_size: int = DEFAULT_TILE_SIZE) -> None:
        if tile_size <= 0:
            raise ValueError(f"tile size must be positive, not {tile_size}")
        self.info = info
        self.tile_size = tile_size

    def grid_size(self, level: int) -> tuple[int, int]:
        """Number of tile columns and rows of ``level``."""
        lv_w, lv_h = self.info.level_dimensions[level]
        return math.ceil(lv_w / self.tile_size), math.ceil(lv_h / self.tile_size)

    def tile_rect(self, level: int, t_x: int, t_y: int) -> TileRect:
        """The region ``read_region`` must read for tile (t_x, t_y) of ``level``."""
        lv_w, lv_h = self.info.level_dimensions[level]
        ds = self.info.level_downsamples[level]
        lv_x, lv_y = t_x * self.tile_size, t_y * self.tile_size
        return TileRect(
            l0_x=round(lv_x * ds),
            l0_y=round(lv_y * ds),
            lv_width=min(self.tile_size, lv_w - lv_x),
            lv_height=min(self.tile_size, lv_h - lv_y),
        )

    def tiles_in_l0_rect(
        self, level: int, l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float
    ) -> list[tuple[int, int]]:
        """Tile indices of ``level`` that intersect a level-0 rectangle, row by row."""
        ds = self.info.level_downsamples[level]
        cols, rows = self.grid_size(level)
        span = self.tile_size * ds
        t_x0 = max(0, math.floor(l0_x0 / span))
        t_y0 = max(0, math.floor(l0_y0 / span))
        t_x1 = min(cols - 1, math.floor((l0_x1 - 1e-9) / span))
        t_y1 = min(rows - 1, math.floor((l0_y1 - 1e-9) / span))
        return [(tx, ty) for ty in range(t_y0, t_y1 + 1) for tx in range(t_x0, t_x1 + 1)]

    def best_level(self, l0_per_screen_px: float) -> int:
        """The finest level that is not finer than the screen needs (never upsample twice)."""
        best = 0
        for level, ds in enumerate(self.info.level_downsamples):
            if ds <= l0_per_screen_px * 1.01:
                best = level
        return best
