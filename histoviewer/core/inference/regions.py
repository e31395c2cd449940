"""Patches for many cells from one region read: read once, resample once, cut.

A ``RegionJob`` is a block of cells (at most ``block x block`` of them). ``RegionCutter``
reads the level-0 rectangle that block's patches span from one pyramid level, resizes it to
the model's scale one row of the job's cells at a time (across, then down: two Pillow calls a
row; ``RegionCutter._resize_rows``), and slices the patches out. Reading
one patch at a time instead costs a decode of each overlapping tile per patch and one
resize call per patch (the "naive loop" of ``benchmarks/bench_analyze.py``).

Level choice: the coarsest level whose scale is at most ``LEVEL_TOLERANCE`` (5 %) coarser
than the model's. A 0.25 um/px slide is read at its 1.0 um/px level for a 0.972 um/px
(PatchCamelyon, 10x) model and upsampled by 2.8 %: that is how PatchCamelyon itself was
cut (CAMELYON level 2), and it decodes 4x fewer pixels than the 0.5 um/px level. Strictly
finer levels would only be downsampled again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.slide.reader import SlideReader

__all__ = ["LEVEL_TOLERANCE", "RegionCutter", "RegionJob", "RegionSource", "plan_regions"]

LEVEL_TOLERANCE = 0.05
_NO_RESIZE = 1e-4  # scale factors this close to 1 are exact (no resampling)
# Pillow's ``reducing_gap``: shrinking by 2x this or more pre-reduces by whole pixel blocks
# aligned to the box, which a row-by-row resample would change; below it, rows are resampled
_REDUCING_GAP = 2.0


class RegionSource(Protocol):
    """Anything with ``SlideReader.read_region``'s contract (level-0 origin, level size)."""

    def read_region(self, l0_x: int, l0_y: int, level: int, lv_width: int, lv_height: int) -> np.ndarray: ...


@dataclass(frozen=True)
class RegionJob:
    """Cells (flat indices, priority order) inside rows ``r0..r1`` x cols ``c0..c1`` (inclusive)."""

    cells: np.ndarray
    r0: int
    c0: int
    r1: int
    c1: int

    def __len__(self) -> int:
        return len(self.cells)


def plan_regions(geometry: GridGeometry, cells: Iterable[int] | np.ndarray, block: int = 16) -> list[RegionJob]:
    """Group ``cells`` (in priority order) into square blocks of ``block`` cells a side.

    Jobs come in the order of their most urgent cell, and cells keep their order within a
    job, so a view's centre is still classified first.
    """
    cells = np.asarray(cells, np.int64)
    if cells.size == 0:
        return []
    rows, cols = np.divmod(cells, geometry.cols)
    n_bc = math.ceil(geometry.cols / block)
    keys = (rows // block) * n_bc + cols // block
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    jobs = []
    for k in np.argsort(first, kind="stable"):  # blocks by their first (most urgent) cell
        sel = np.flatnonzero(inverse == k)
        r, c = rows[sel], cols[sel]
        jobs.append(RegionJob(cells[sel], int(r.min()), int(c.min()), int(r.max()), int(c.max())))
    return jobs


def choose_level(reader: SlideReader, geometry: GridGeometry) -> int:
    """Coarsest level no more than ``LEVEL_TOLERANCE`` coarser than the model's scale."""
    best = 0
    limit = geometry.model_mpp * (1 + LEVEL_TOLERANCE)
    for level, ds in enumerate(reader.info.level_downsamples):
        if geometry.slide_mpp * ds <= limit:
            best = level
    return best


class RegionCutter:
    """Reads a ``RegionJob``'s patches, ``(n, P, P, 3)`` uint8 at the model's scale.

    Thread-safe as far as the reader is (one reader may serve several threads). The
    ``read_s``/``resize_s`` of the last call are returned by ``read_timed``.
    """

    def __init__(self, reader: SlideReader, geometry: GridGeometry, level: int | None = None,
                 source: RegionSource | None = None) -> None:
        self.reader = reader
        # where pixels come from: the reader, or a faster source with the same read_region
        # contract (``tiff_regions.TiffRegionSource``)
        self.source: RegionSource = source if source is not None else reader
        self.geometry = geometry
        self.level = choose_level(reader, geometry) if level is None else level
        self.level_ds = float(reader.info.level_downsamples[self.level])
        # level px -> model px
        self.scale = geometry.slide_mpp * self.level_ds / geometry.model_mpp

    @property
    def resamples(self) -> bool:
        """Whether the level's pixels are resampled to the model's scale."""
        return abs(self.scale - 1.0) > _NO_RESIZE

    @property
    def resample_margin_lv_px(self) -> int:
        """Level px read beyond a block's cells on each side when resampling: the filter's
        support (Lanczos: 3 output px) and rounding; 0 when nothing is resampled."""
        return math.ceil(3.0 / min(self.scale, 1.0)) + 2 if self.resamples else 0

    def __call__(self, job: RegionJob) -> np.ndarray:
        return self.read_timed(job)[0]

    def read_timed(self, job: RegionJob) -> tuple[np.ndarray, float, float]:
        """``(patches, read_s, resize_s)``; raises what the reader raises."""
        g, ds = self.geometry, self.level_ds
        l0pm = g.l0_per_model_px
        l0_x0 = g.l0_origin_x + job.c0 * g.l0_stride
        l0_y0 = g.l0_origin_y + job.r0 * g.l0_stride
        l0_x1 = g.l0_origin_x + job.c1 * g.l0_stride + g.l0_patch
        l0_y1 = g.l0_origin_y + job.r1 * g.l0_stride + g.l0_patch
        resize = self.resamples
        # A cell's patch must not depend on the block it is read in (the live overlay's blocks
        # follow the view, analyze's the whole slide): when resampling, the output grid starts
        # at the block's first cell exactly (a fractional box), and a margin of level px keeps
        # the filter's support (Lanczos: 3 output px) inside the region read.
        margin = self.resample_margin_lv_px
        lv_x0, lv_y0 = math.floor(l0_x0 / ds) - margin, math.floor(l0_y0 / ds) - margin
        # +2 level px: rounding of the resize and of patch offsets never runs off the edge
        lv_w = math.ceil(l0_x1 / ds) - lv_x0 + 2 + margin
        lv_h = math.ceil(l0_y1 / ds) - lv_y0 + 2 + margin
        read_l0_x, read_l0_y = int(round(lv_x0 * ds)), int(round(lv_y0 * ds))
        t0 = time.perf_counter()
        region = self.source.read_region(read_l0_x, read_l0_y, self.level, lv_w, lv_h)
        t1 = time.perf_counter()
        p, step = g.patch_px, g.stride_px
        rows, cols = np.divmod(job.cells, g.cols)
        if resize:
            bx, by = l0_x0 / ds - lv_x0, l0_y0 / ds - lv_y0  # the block's origin, fractional level px
            # Shrinking: Lanczos after a box pre-reduction (anti-aliased, fast); a few per cent
            # of enlargement: bilinear is as good and 3x faster.
            resample = Image.Resampling.LANCZOS if self.scale < 1 else Image.Resampling.BILINEAR
            if 1.0 / self.scale < 2 * _REDUCING_GAP:  # Pillow's pre-reduction is a no-op here
                out = self._resize_rows(region, job, rows, cols, bx, by, resample)
                return out, t1 - t0, time.perf_counter() - t1
            out_w = math.ceil((l0_x1 - l0_x0) / l0pm) + 1
            out_h = math.ceil((l0_y1 - l0_y0) / l0pm) + 1
            box = (bx, by, bx + out_w / self.scale, by + out_h / self.scale)
            region = np.asarray(
                Image.fromarray(region).resize((out_w, out_h), resample, box=box, reducing_gap=_REDUCING_GAP)
            )
            ox = oy = 0  # the output starts at cell (r0, c0)
        else:
            # model-px offset of cell (r0, c0) in the region; later cells step by whole strides
            ox = int(round((l0_x0 - read_l0_x) / l0pm))
            oy = int(round((l0_y0 - read_l0_y) / l0pm))
        ys = oy + (rows - job.r0) * step
        xs = ox + (cols - job.c0) * step
        need_h, need_w = int(ys.max()) + p, int(xs.max()) + p
        if need_h > region.shape[0] or need_w > region.shape[1]:  # guard against rounding
            region = np.pad(region, ((0, max(0, need_h - region.shape[0])),
                                     (0, max(0, need_w - region.shape[1])), (0, 0)), mode="edge")
        out = np.empty((len(job.cells), p, p, 3), np.uint8)
        for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
            out[i] = region[y : y + p, x : x + p]
        return out, t1 - t0, time.perf_counter() - t1

    def _resize_rows(self, region: np.ndarray, job: RegionJob, rows: np.ndarray, cols: np.ndarray,
                     bx: float, by: float, resample: Image.Resampling) -> np.ndarray:
        """The job's patches resampled one row of cells at a time, each row from its first to
        its last cell of the job, not the block's whole bounding box (a block along a tissue
        edge holds few cells). Output pixel ``j`` of the block (model px from cell ``(r0, c0)``)
        samples level position ``b + (j + 0.5) / scale`` in either case, and the two passes
        run in the block-wide resize's order, across then down, as two calls (Pillow chooses
        the order itself from an image's shape, and a row's strip would go down first: a
        grey level apart on a quarter of the values); so a patch is the block-wide resize's
        to the rounding of the filter weights (measured: a grey level on < 0.1 % of values).
        Each row's band of ``region`` (level px) becomes a Pillow image of its own: the same
        pixels as cropping one image of the whole region, without converting (and first
        clearing) the whole region once more."""
        g, scale = self.geometry, self.scale
        p, step = g.patch_px, g.stride_px
        margin = self.resample_margin_lv_px  # level rows of the filter's support, and rounding
        out = np.empty((len(job.cells), p, p, 3), np.uint8)
        order = np.lexsort((cols, rows))
        bounds = np.flatnonzero(np.diff(rows[order])) + 1
        for members in np.split(order, bounds):
            row = int(rows[members[0]])
            first, last = int(cols[members].min()), int(cols[members].max())
            x0, y0 = (first - job.c0) * step, (row - job.r0) * step  # model px from the block's origin
            width = (last - first) * step + p
            top = max(0, math.floor(by + y0 / scale) - margin)
            bottom = min(region.shape[0], math.ceil(by + (y0 + p) / scale) + margin)
            across = Image.fromarray(region[top:bottom]).resize(
                (width, bottom - top), resample, box=(bx + x0 / scale, 0, bx + (x0 + width) / scale, bottom - top))
            strip = np.asarray(across.resize(
                (width, p), resample, box=(0, by + y0 / scale - top, width, by + (y0 + p) / scale - top)))
            for i in members.tolist():
                x = (int(cols[i]) - first) * step
                out[i] = strip[:, x : x + p]
        return out
