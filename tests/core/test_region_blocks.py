"""A cell's patch is the same whichever block of cells it is read in (issue 14: the viewer and
``analyze`` gave different sizes for one lesion, 0.59 vs 0.61 mm).

The live overlay reads the cells under the view in blocks that follow the view; ``analyze``
reads the whole slide in its own blocks. The region of a block was resampled from the block's
first level pixel, so the same cell got patches shifted by a fraction of a pixel, with the
filter clamped at the block's edge, depending on the block: on a phantom the two maps differed
by up to 0.16 in 154 of 726 cells, and the lesions by 0.009 mm.

Nor on the block's SHAPE (issue 15): blocks are resampled one row of cells at a time, across
then down, each row as two Pillow calls. Resampling a block's bounding box in one call let Pillow choose the order of its two
passes from the box's shape: a wide, short block (a slide's last row of cells, a view's
strip) went down first and its patches were a grey level apart on a quarter of their values
from the same cells read in a square block (measured on the 40,000 px phantom: the bottom
block's 19 patches, 23 % of values)."""

from __future__ import annotations

import numpy as np
import pytest

from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.regions import RegionCutter, RegionJob
from histoviewer.core.slide import open_slide


def _job(geometry: GridGeometry, r0: int, c0: int, r1: int, c1: int) -> RegionJob:
    cells = np.array([r * geometry.cols + c for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)], np.int64)
    return RegionJob(cells, r0, c0, r1, c1)


def _patch(cutter: RegionCutter, job: RegionJob, cell: int) -> np.ndarray:
    return cutter(job)[list(job.cells).index(cell)]


@pytest.mark.parametrize("model_mpp, patch_px", [
    (0.972, 96),  # PatchCamelyon scale: the 0.499 um/px slide shrunk by half (Lanczos)
    (0.47, 64),  # enlarged by 6 % (bilinear)
])
def test_a_cells_patch_does_not_depend_on_its_block(cmu_small, model_mpp, patch_px):
    with open_slide(cmu_small) as reader:
        geometry = GridGeometry.for_slide(reader.info.dimensions, reader.info.mpp, model_mpp, patch_px)
        cutter = RegionCutter(reader, geometry)
        cell = 3 * geometry.cols + 3
        whole = _patch(cutter, _job(geometry, 0, 0, 5, 5), cell)
        # the same to Pillow's fixed-point rounding: a grey level on a few values (before:
        # up to 12 grey levels on 9 % of them, a shift of part of a pixel)
        for r0, c0, r1, c1 in ((1, 1, 5, 5), (3, 3, 5, 5), (2, 0, 5, 5), (3, 1, 5, 5), (3, 3, 3, 3)):
            diff = np.abs(_patch(cutter, _job(geometry, r0, c0, r1, c1), cell).astype(int) - whole)
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (r0, c0, int(diff.max()), (diff > 0).mean())


@pytest.mark.parametrize("model_mpp, patch_px", [
    (0.972, 96),  # shrunk by half (Lanczos)
    (0.47, 64),  # enlarged by 6 % (bilinear)
])
def test_wide_tall_and_square_blocks_give_a_cell_the_same_patch(cmu_small, model_mpp, patch_px):
    with open_slide(cmu_small) as reader:
        geometry = GridGeometry.for_slide(reader.info.dimensions, reader.info.mpp, model_mpp, patch_px)
        assert geometry.cols >= 12 and geometry.rows >= 8
        cutter = RegionCutter(reader, geometry)
        r, c = 4, 5
        cell = r * geometry.cols + c
        square = _patch(cutter, _job(geometry, 1, 2, 6, 7), cell)
        for r0, c0, r1, c1 in ((r, 0, r, geometry.cols - 1), (r, c, r, c + 6), (0, c, geometry.rows - 1, c),
                               (r - 1, 0, r, geometry.cols - 1), (r, c, r + 1, geometry.cols - 1)):
            diff = np.abs(_patch(cutter, _job(geometry, r0, c0, r1, c1), cell).astype(int) - square)
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (r0, c0, r1, c1, int(diff.max()), (diff > 0).mean())


def test_a_job_of_scattered_cells_gets_each_cells_own_patch(cmu_small):
    """Rows of a job hold only some of the block's cells (tissue): each patch is the one the
    full block gives it (to the rounding of the filter weights, as above)."""
    with open_slide(cmu_small) as reader:
        geometry = GridGeometry.for_slide(reader.info.dimensions, reader.info.mpp, 0.972, 96)
        cutter = RegionCutter(reader, geometry)
        full = _job(geometry, 0, 0, 5, 5)
        picked = full.cells[[0, 7, 9, 16, 20, 35]][::-1]  # a few cells, out of order
        part = RegionJob(picked, 0, 0, 5, 5)
        whole = dict(zip(full.cells.tolist(), cutter(full)))
        for cell, patch in zip(picked.tolist(), cutter(part)):
            diff = np.abs(patch.astype(int) - whole[cell])
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (cell, int(diff.max()), (diff > 0).mean())
