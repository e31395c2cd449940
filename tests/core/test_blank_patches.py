"""Damaged tiles read as glass: a tissue cell whose patch decodes blank or flat is FAILED,
never classified (``inference.blank``), on every path (headless pipeline and live worker);
glass outside the tissue mask is never marked failed."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.blank import BLANK_REASON, blank_patches
from histoviewer.core.inference.grid import CellState, PredictionGrid
from histoviewer.core.inference.pipeline import classify_cells
from histoviewer.core.inference.regions import RegionCutter
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.inference.worker import InferenceWorker, WorkerCallbacks
from histoviewer.core.slide import open_slide
from tests.core.inference_helpers import LesionFractionModel


def zero_entropy_data(jpeg: bytes) -> bytes:
    """The JPEG with its entropy-coded data (after the SOS header, before EOI) zeroed."""
    data = bytearray(jpeg)
    sos = data.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    data[start:-2] = bytes(len(data) - 2 - start)
    return bytes(data)


def textured(seed: int = 0, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 230, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.asarray(
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    )


def glass_or_fat(size: int = 96) -> np.ndarray:
    """A fat vacuole or glass inside the tissue mask: pale pink, 2 grey levels of noise."""
    rng = np.random.default_rng(7)
    base = np.array([247, 242, 246], np.float32)
    return np.clip(base + rng.normal(0, 2, (size, size, 3)), 0, 255).astype(np.uint8)


def test_flat_filled_and_zeroed_jpeg_patches_are_blank_and_textured_ones_are_not():
    tissue = textured()
    buf = io.BytesIO()
    Image.fromarray(np.tile(tissue, (3, 3, 1))).save(buf, "JPEG", quality=85)
    damaged = np.asarray(
        Image.open(io.BytesIO(zero_entropy_data(buf.getvalue()))).convert("RGB")
    )[:96, :96]
    patches = np.stack(
        [
            np.full((96, 96, 3), 128, np.uint8),  # flat grey
            np.full((96, 96, 3), 255, np.uint8),  # white fill (missing tile)
            np.zeros((96, 96, 3), np.uint8),  # black
            damaged,  # the repeated artefact of a zeroed JPEG: not flat pixel-wise, flat block-wise
            tissue,
            textured(1),
            glass_or_fat(),  # structureless but bright and noisy: legitimate, never failed
        ]
    )
    assert damaged.std() > 1.0  # pixel spread alone would not catch it
    assert blank_patches(patches).tolist() == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert blank_patches(patches[:0]).shape == (0,)
    assert blank_patches(np.full((2, 20, 20, 3), 7, np.uint8)).tolist() == [
        True,
        True,
    ]  # tiny patches


def test_real_tissue_patches_are_never_blank(cmu_small):
    with open_slide(cmu_small) as reader:
        g = GridGeometry.for_slide(reader.info.dimensions, reader.info.mpp, 0.972, 96)
        grid = PredictionGrid(g, grid_tissue(reader, g))
        times = classify_cells(
            grid, RegionCutter(reader, g), LesionFractionModel(), grid.pending()
        )
    assert times.patches > 50 and times.blank == 0 and times.failed == 0


@pytest.fixture(scope="module")
def damaged_phantom(tmp_path_factory):
    """A phantom node with a micrometastasis, and a copy whose tiles at the model's level
    under the lesion have their JPEG entropy data zeroed (they decode without an error)."""
    from histoviewer.core.phantom import write_phantom

    folder = tmp_path_factory.mktemp("damaged")
    phantom = write_phantom(
        folder / "node.tiff",
        width=6000,
        height=5000,
        mpp=0.5,
        lesions="micro:0.7",
        seed=3,
        tile_size=256,
    )
    (lesion,) = phantom.lesions
    cx, cy = lesion.l0_centroid
    r = 0.35 * 1000 / 0.5  # radius in level-0 px
    damaged = folder / "damaged.tiff"
    shutil.copyfile(phantom.slide_path, damaged)
    with tifffile.TiffFile(damaged) as tf:
        page = tf.pages[1]  # 1.0 um/px: the level a 0.972 um/px model reads
        ds = tf.pages[0].imagewidth / page.imagewidth
        across = -(-page.imagewidth // page.tilewidth)
        tiles = []
        for i, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts)):
            row, col = divmod(i, across)
            x0, y0 = col * page.tilewidth * ds, row * page.tilelength * ds
            if (
                x0 < cx + r
                and x0 + page.tilewidth * ds > cx - r
                and y0 < cy + r
                and y0 + page.tilelength * ds > cy - r
            ):
                tiles.append((offset, count))
    with open(damaged, "r+b") as f:
        for offset, count in tiles:
            f.seek(offset)
            data = zero_entropy_data(f.read(count))
            f.seek(offset)
            f.write(data)
    return phantom.slide_path, damaged, (cx, cy, r), len(tiles)


def _run(slide, *, live: bool):
    with open_slide(slide) as reader:
        g = GridGeometry.for_slide(reader.info.dimensions, reader.info.mpp, 0.972, 96)
        tissue = grid_tissue(reader, g)
        grid = PredictionGrid(g, tissue)
        failures: list[str] = []
        fast = TiffRegionSource.open(
            slide, reader
        )  # the headless path: decodes tiles without a warning
        assert fast is not None
        try:
            cutter = RegionCutter(reader, g, source=fast)
            assert cutter.level == 1
            if live:
                worker = InferenceWorker(
                    reader,
                    LesionFractionModel(),
                    grid,
                    background=True,
                    cutter=cutter,
                    callbacks=WorkerCallbacks(
                        on_failure=lambda c, m: failures.append(m)
                    ),
                )
                try:
                    worker.submit_view((0.0, 0.0, 1.0, 1.0))
                    assert worker.wait_idle(60)
                finally:
                    worker.close()
            else:
                classify_cells(
                    grid,
                    cutter,
                    LesionFractionModel(),
                    grid.pending(),
                    on_failure=lambda c, m: failures.append(m),
                )
        finally:
            fast.close()
    return g, tissue, grid, failures


@pytest.mark.parametrize("live", [False, True], ids=["pipeline", "live-worker"])
def test_tissue_cells_on_damaged_tiles_fail_and_glass_does_not(damaged_phantom, live):
    clean, damaged, (cx, cy, r), n_tiles = damaged_phantom
    assert n_tiles >= 4
    g, tissue, grid, failures = _run(clean, live=live)
    assert (
        grid.counts()["failed"] == 0 and not failures
    )  # an intact slide: nothing blank
    g, tissue, grid, failures = _run(damaged, live=live)
    state = grid.state
    x, y = g.cell_l0_xy(np.arange(g.size))
    centre = g.l0_patch / 2
    under = (np.hypot(x + centre - cx, y + centre - cy) < r * 0.8).reshape(g.shape)
    assert np.count_nonzero(under & tissue) >= 4
    assert np.all(
        state[under & tissue] == CellState.FAILED
    )  # the lesion's cells: failed, not "negative"
    assert any(m == BLANK_REASON for m in failures)
    assert np.all(state[~tissue] == CellState.BACKGROUND)  # glass is never failed
    assert np.count_nonzero(state == CellState.COMPUTED) > np.count_nonzero(
        state == CellState.FAILED
    )
    assert (
        int(np.count_nonzero(grid.encoded_map() == -2.0)) >= 4
    )  # failed cells reach the map and exports
