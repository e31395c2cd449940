"""Which decoded level tiles the screened full pass keeps until it ends (a cache policy).

The screened pass's margin rounds (``screening.grow_cells``) read tiles its first round
decoded long before; ``margin_hold_tiles`` names the ones to hold (``TiffRegionSource.hold``)
so those reads do not decode them again. Which tiles are held never changes a pixel read.
"""

from __future__ import annotations

import numpy as np

from histoviewer.core.inference.regions import RegionCutter
from histoviewer.core.inference.tiff_regions import TiffRegionSource

__all__ = ["MARGIN_HOLD_BYTES", "margin_hold_tiles", "spread_max"]

# The margin rounds read tiles the first round decoded long before: the decoded-tile cache
# (``tiff_regions.TILE_CACHE_BYTES``, least recently used out) has let most of them go by then
# (CAMELYON-size phantom: 331 of the pass's 1,542 level-2 tile decodes were such second
# decodes, ~0.4 CPU-s). So the pass *holds* the tiles where a margin is most likely to grow,
# up to this many bytes of decoded tiles besides the cache (simulated on that phantom: 331 ->
# 35 second decodes at 256 MB, 88 at 192 MB, 181 at 128 MB), and releases them when it ends.
MARGIN_HOLD_BYTES = 256 * 1024 * 1024


def margin_hold_tiles(
    source: TiffRegionSource,
    cutter: RegionCutter,
    screen_probability: np.ndarray,
    tissue: np.ndarray,
    screen_threshold: float,
    rings: int,
    budget_bytes: int | None = None,
) -> list[int]:
    """Tile indices (of ``cutter.level``) to hold through the screened full pass: the tiles
    under tissue cells within ``rings`` of a flagged cell (where a margin can grow), the
    tiles of the highest screen scores first (the likeliest tumour, where the full model
    most likely finds a margin's seed), at most ``budget_bytes`` (default
    ``MARGIN_HOLD_BYTES``) of decoded tiles. A cache policy only: which tiles are held never
    changes a pixel read."""
    budget_bytes = MARGIN_HOLD_BYTES if budget_bytes is None else budget_bytes
    grid = source.tile_grid(cutter.level)
    if grid is None or rings <= 0 or budget_bytes <= 0:
        return []
    tile_w, tile_h, image_w, image_h = grid
    budget = int(budget_bytes) // (tile_w * tile_h * 3)
    tissue = np.asarray(tissue, bool)
    near = spread_max(np.where(tissue, np.nan_to_num(screen_probability, nan=0.0), 0.0), rings)
    cells = tissue & (near >= screen_threshold)
    if budget <= 0 or not cells.any():
        return []
    g, ds = cutter.geometry, cutter.level_ds
    # level px a read takes around a cell's patch besides the patch: the cutter's margin for
    # its resampling filter and the +2 px of its rounding (``RegionCutter.read_timed``)
    pad = cutter.resample_margin_lv_px + 2

    def spans(count: int, origin: float, size: int, tile: int) -> tuple[np.ndarray, np.ndarray]:
        """First and last tile along one axis that each row (column) of cells reads."""
        l0 = origin + np.arange(count) * g.l0_stride
        lo = np.clip(np.floor(l0 / ds) - pad, 0, size - 1)
        hi = np.clip(np.ceil((l0 + g.l0_patch) / ds) + pad, 0, size - 1)
        return (lo // tile).astype(np.int64), (hi // tile).astype(np.int64)

    tx0, tx1 = spans(g.cols, g.l0_origin_x, image_w, tile_w)
    ty0, ty1 = spans(g.rows, g.l0_origin_y, image_h, tile_h)
    across, down = -(-image_w // tile_w), -(-image_h // tile_h)
    best = np.full(across * down, -1.0)  # each tile's highest score among the cells reading it
    rows, cols = np.nonzero(cells)
    values = near[rows, cols]
    for dy in range(int((ty1 - ty0).max()) + 1):
        for dx in range(int((tx1 - tx0).max()) + 1):
            ty, tx = ty0[rows] + dy, tx0[cols] + dx
            ok = (ty <= ty1[rows]) & (tx <= tx1[cols])
            np.maximum.at(best, ty[ok] * across + tx[ok], values[ok])
    wanted = np.flatnonzero(best >= 0)
    order = np.lexsort((wanted, -best[wanted]))  # highest score first, then tile order
    return wanted[order[:budget]].tolist()


def spread_max(values: np.ndarray, rings: int) -> np.ndarray:
    """``values`` with each cell replaced by the maximum over its ``rings`` rings of
    8-neighbours (``dilate_8`` for scores)."""
    out = np.asarray(values, float).copy()
    for _ in range(max(0, int(rings))):
        grown = out.copy()
        grown[1:, :] = np.maximum(grown[1:, :], out[:-1, :])
        grown[:-1, :] = np.maximum(grown[:-1, :], out[1:, :])
        rows = grown.copy()
        rows[:, 1:] = np.maximum(rows[:, 1:], grown[:, :-1])
        rows[:, :-1] = np.maximum(rows[:, :-1], grown[:, 1:])
        out = rows
    return out
