"""Patches that came back without content: the one check every classification path runs.

A damaged tile can decode without any error: JPEG tiles whose entropy-coded data was
zeroed (a bad disk block, a truncated copy, a scanner fault) decode through libjpeg-turbo
(tifffile/imagecodecs, Pillow) as a flat grey plane carrying one repeated 8x8 artefact,
and a missing tile reads as a uniform white fill. Classified, such a patch is "no tumour":
a metastasis under damaged tiles would be reported negative. A tissue cell (the tissue
mask comes from a coarser level, so it still sees the tissue) whose patch is blank is
therefore marked FAILED, never classified.

The test: the spread of the patch's mean luminance over blocks of ``BLOCK_PX`` model
pixels. Any H&E tissue has structure (nuclei, stroma, fat) at that scale: measured on
CMU-1-Small-Region and on the phantoms, the lowest spread of a tissue patch is 6.7-8.6
grey levels (median 13-31). A zeroed-entropy tile gives 0.03-0.13 (its artefact repeats
every JPEG block, so block means are all equal), a uniform fill gives 0. Glass also gives
a low spread, and the tissue mask (from a coarse level) still counts some of it as
tissue: fat vacuoles, sinuses and glass at the edge of a section (one such patch on a clean
2.7 x 2.2 mm phantom: luminance 245, block spread < 1). So a structureless patch is blank
only when it is also either darker than glass (``GLASS_LUMINANCE``: the zeroed-JPEG plane
is mid-grey, ~128) or without any pixel noise (``MIN_PIXEL_SPREAD``: a uniform fill, white
255 or black 0; a real scan of glass has sensor and JPEG noise of 1-3 grey levels). The
check runs only on cells the tissue mask calls tissue (the callers never read background
cells). A patch only partly on a damaged tile keeps the spread of its readable part and is
classified from it; only patches that are blank as a whole are caught here. A damaged tile
that decodes as a bright, noisy, structureless plane cannot be told from glass by its
pixels and is not caught.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BLANK_REASON",
    "BLOCK_PX",
    "GLASS_LUMINANCE",
    "MIN_BLOCK_SPREAD",
    "MIN_PIXEL_SPREAD",
    "blank_by_luminance",
    "blank_patches",
]

BLOCK_PX = 16  # two JPEG MCUs of 4:2:0 chroma at most; small next to a 96-px patch
# grey levels; tissue >= 6.7, damaged or filled <= 0.13 (see above)
MIN_BLOCK_SPREAD = 1.0
# mean grey level; glass and fat in H&E scans are brighter (~230-250)
GLASS_LUMINANCE = 200.0
# grey levels; a scan of glass has 1-3 of noise, a uniform fill 0
MIN_PIXEL_SPREAD = 0.5
BLANK_REASON = (
    "the patch is blank or flat although the tissue mask shows tissue there "
    "(damaged or missing tile data that decoded without an error)"
)


# A patch whose exactly computed block spread is at least this much above MIN_BLOCK_SPREAD is
# not blank, decided without the float32 arithmetic below: that arithmetic's rounding moves a
# spread by well under 0.001 grey levels (block means of 256 float32 luminances near 255), so
# with this margin both give the same verdict; closer patches (glass, damaged tiles: a few
# per slide) are judged by the float32 path itself
_EXACT_MARGIN = 0.05


def blank_patches(patches: np.ndarray) -> np.ndarray:
    """Boolean (n,): which of ``patches`` ((n, P, P, 3) uint8) carry no image content
    (see the module docstring).

    Most patches are tissue, with a block spread far above ``MIN_BLOCK_SPREAD``: that is
    decided from exact integer block sums (``_exact_block_spread``, 20x cheaper: it was a
    quarter of the reader thread's time in ``analyze``); only the rest go through
    ``blank_by_luminance``, so the verdicts are that function's for every patch
    (tests/core/test_fast_paths.py checks it on real, phantom and near-threshold patches).
    """
    patches = np.asarray(patches)
    n = patches.shape[0]
    if n == 0:
        return np.zeros(0, bool)
    spread = _exact_block_spread(patches)
    if spread is None:  # a patch too small for blocks
        return blank_by_luminance(patches)
    blank = np.zeros(n, bool)
    maybe = np.flatnonzero(spread < MIN_BLOCK_SPREAD + _EXACT_MARGIN)
    if maybe.size:
        blank[maybe] = blank_by_luminance(patches[maybe])
    return blank


def _exact_block_spread(patches: np.ndarray) -> np.ndarray | None:
    """(n,) float64: the standard deviation of the mean luminance over ``BLOCK_PX`` blocks,
    from exact integer sums (R + G + B over each block); None for patches with fewer than 4
    blocks."""
    n, rows, cols = patches.shape[:3]
    k_r, k_c = rows // BLOCK_PX, cols // BLOCK_PX
    if k_r * k_c < 4:
        return None
    inner = patches[:, : k_r * BLOCK_PX, : k_c * BLOCK_PX]
    # down each block's rows first (uint16 holds BLOCK_PX x 255), then across its pixels and
    # channels, which lie side by side in a row: (n, k_r, k_c) sums, exact
    down = np.add.reduce(
        inner.reshape(n, k_r, BLOCK_PX, k_c * BLOCK_PX * 3), axis=2, dtype=np.uint16
    )
    sums = (
        down.reshape(n, k_r, k_c, BLOCK_PX * 3)
        .sum(axis=3, dtype=np.int64)
        .reshape(n, -1)
    )
    k = k_r * k_c
    # variance of the block means (sum / (3 BLOCK_PX^2)) as an exact integer ratio
    numerator = k * np.einsum("ij,ij->i", sums, sums) - sums.sum(axis=1) ** 2
    return np.sqrt(numerator.astype(np.float64)) / (k * 3 * BLOCK_PX * BLOCK_PX)


def blank_by_luminance(patches: np.ndarray) -> np.ndarray:
    """``blank_patches`` in float32 over the (n, P, P) luminance, the definition the
    thresholds were measured with."""
    n = patches.shape[0]
    # (n, P, P): the float32 mean of the three channels, bit for bit; summed as integers
    # first because numpy's mean over a last axis of 3 is 15x slower (0.8 s of the reader
    # thread's time on 3,000 patches)
    luminance = _channel_sum(patches).astype(np.float32) / 3
    rows, cols = luminance.shape[1:3]
    k_r, k_c = rows // BLOCK_PX, cols // BLOCK_PX
    pixels = luminance.reshape(n, -1)
    pixel_spread = pixels.std(axis=1)
    not_glass = (pixels.mean(axis=1) < GLASS_LUMINANCE) | (
        pixel_spread < MIN_PIXEL_SPREAD
    )
    if k_r * k_c < 4:  # a patch too small for blocks: its pixels' own spread
        return (pixel_spread < MIN_BLOCK_SPREAD) & not_glass
    blocks = luminance[:, : k_r * BLOCK_PX, : k_c * BLOCK_PX].reshape(
        n, k_r, BLOCK_PX, k_c, BLOCK_PX
    )
    means = blocks.mean(axis=(2, 4)).reshape(n, -1)
    return (means.std(axis=1) < MIN_BLOCK_SPREAD) & not_glass


def _channel_sum(patches: np.ndarray) -> np.ndarray:
    """R + G + B of ``(n, P, P, 3)`` uint8 patches, uint16 ``(n, P, P)`` (exact)."""
    total = patches[..., 0].astype(np.uint16)
    total += patches[..., 1]
    total += patches[..., 2]
    return total
