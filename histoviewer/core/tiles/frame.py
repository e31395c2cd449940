"""Frame planning: what to draw for a viewport, so the view is never blank.

For every tile of the best level that is visible: draw it if it is cached; otherwise
draw the matching part of the nearest coarser cached tile, and failing that the
thumbnail (always in memory). The plan also lists the missing tiles, nearest to the
centre of the view first, for the loader. Pure geometry: the Qt view executes the plan.

Rectangles are (x, y, w, h) tuples of floats: ``src`` in the source image's pixels
(a tile's level pixels, or thumbnail pixels), ``dst`` in screen pixels.
"""

from __future__ import annotations

import dataclasses

from histoviewer.core.tiles.cache import ByteBoundedCache
from histoviewer.core.tiles.geometry import LevelTiling, TileKey
from histoviewer.core.tiles.viewport import Viewport

Rect = tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class DrawOp:
    """Draw ``src`` of a tile (``key``) or of the thumbnail (``key is None``) into ``dst``."""

    key: TileKey | None
    src: Rect
    dst: Rect


@dataclasses.dataclass(frozen=True)
class FramePlan:
    level: int
    ops: tuple[DrawOp, ...]
    missing: tuple[TileKey, ...]  # visible tiles not cached, nearest the centre first
    prefetch: tuple[TileKey, ...]  # a ring around the view and the next coarser level
    failed: tuple[Rect, ...]  # screen rects of visible tiles whose read failed

    @property
    def complete(self) -> bool:
        """True when every visible tile is drawn at the right level."""
        return not self.missing and not self.failed


def _intersect(a: tuple[float, float, float, float], b: tuple[float, float, float, float]):
    """Intersection of two (x0, y0, x1, y1) boxes, or None."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def plan_frame(
    viewport: Viewport,
    tiling: LevelTiling,
    cache: ByteBoundedCache,
    slide_id: int,
    thumbnail_size: tuple[int, int],
    failures: dict[TileKey, str] | None = None,
) -> FramePlan:
    """Plan one frame. ``thumbnail_size`` is (width, height) of the in-memory thumbnail."""
    info = tiling.info
    failures = failures or {}
    l0_w, l0_h = info.dimensions
    view_box = viewport.l0_rect
    slide_box = _intersect(view_box, (0.0, 0.0, float(l0_w), float(l0_h)))
    level = tiling.best_level(viewport.l0_per_screen_px)
    if slide_box is None:
        return FramePlan(level, (), (), (), ())

    def to_dst(box) -> Rect:
        sx0, sy0 = viewport.l0_to_screen(box[0], box[1])
        return (sx0, sy0, (box[2] - box[0]) * viewport.scale, (box[3] - box[1]) * viewport.scale)

    def l0_box(lvl: int, t_x: int, t_y: int):
        rect = tiling.tile_rect(lvl, t_x, t_y)
        ds = info.level_downsamples[lvl]
        return (rect.l0_x, rect.l0_y, rect.l0_x + rect.lv_width * ds, rect.l0_y + rect.lv_height * ds)

    def src_in(lvl: int, tile_box, box) -> Rect:
        ds = info.level_downsamples[lvl]
        return ((box[0] - tile_box[0]) / ds, (box[1] - tile_box[1]) / ds, (box[2] - box[0]) / ds, (box[3] - box[1]) / ds)

    exact: list[DrawOp] = []
    fallback: list[DrawOp] = []
    missing: list[tuple[float, TileKey]] = []
    failed: list[Rect] = []
    cx, cy = viewport.l0_cx, viewport.l0_cy
    for t_x, t_y in tiling.tiles_in_l0_rect(level, *slide_box):
        key = TileKey(slide_id, level, t_x, t_y)
        box = l0_box(level, t_x, t_y)
        if cache.get(key) is not None:
            exact.append(DrawOp(key, (0.0, 0.0, (box[2] - box[0]) / info.level_downsamples[level],
                                      (box[3] - box[1]) / info.level_downsamples[level]), to_dst(box)))
            continue
        if key in failures:
            failed.append(to_dst(box))
        else:
            dist = ((box[0] + box[2]) / 2 - cx) ** 2 + ((box[1] + box[3]) / 2 - cy) ** 2
            missing.append((dist, key))
        fallback.extend(_fallback_ops(tiling, cache, slide_id, level, box, to_dst, l0_box, src_in, thumbnail_size))

    prefetch = _prefetch_keys(viewport, tiling, slide_id, level, slide_box)
    return FramePlan(
        level=level,
        ops=tuple(fallback + exact),
        missing=tuple(k for _, k in sorted(missing)),
        prefetch=tuple(prefetch),
        failed=tuple(failed),
    )


def _fallback_ops(tiling, cache, slide_id, level, box, to_dst, l0_box, src_in, thumbnail_size) -> list[DrawOp]:
    """Cover one missing tile's box from the nearest coarser level that is fully cached there."""
    info = tiling.info
    for coarse in range(level + 1, info.level_count):
        parts = []
        for c_x, c_y in tiling.tiles_in_l0_rect(coarse, *box):
            ckey = TileKey(slide_id, coarse, c_x, c_y)
            if cache.peek(ckey) is None:
                parts = None
                break
            cbox = l0_box(coarse, c_x, c_y)
            inter = _intersect(cbox, box)
            if inter is not None:
                parts.append(DrawOp(ckey, src_in(coarse, cbox, inter), to_dst(inter)))
        if parts:
            return parts
    l0_w, l0_h = info.dimensions
    kx, ky = thumbnail_size[0] / l0_w, thumbnail_size[1] / l0_h
    src = (box[0] * kx, box[1] * ky, (box[2] - box[0]) * kx, (box[3] - box[1]) * ky)
    return [DrawOp(None, src, to_dst(box))]


def _prefetch_keys(viewport, tiling, slide_id, level, slide_box) -> list[TileKey]:
    """Tiles one ring beyond the view at this level, then the whole view one level coarser."""
    info = tiling.info
    span = tiling.tile_size * info.level_downsamples[level]
    ring_box = (slide_box[0] - span, slide_box[1] - span, slide_box[2] + span, slide_box[3] + span)
    inner = set(tiling.tiles_in_l0_rect(level, *slide_box))
    keys = [TileKey(slide_id, level, tx, ty) for tx, ty in tiling.tiles_in_l0_rect(level, *ring_box) if (tx, ty) not in inner]
    if level + 1 < info.level_count:
        keys += [TileKey(slide_id, level + 1, tx, ty) for tx, ty in tiling.tiles_in_l0_rect(level + 1, *slide_box)]
    return keys
