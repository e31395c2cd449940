"""Where the nuclei of one tile are, and which sprite each one gets.

Nuclei live on global jittered grids (one candidate per grid cell, cell size in um); each
cell's jitter, keep/drop draw, cell type and sprite are hashes of (seed, cell index), so a
nucleus straddling a tile border is drawn identically by both tiles. Tissue fields
(depth below the capsule, follicles, sinuses, lesions) are evaluated at the nucleus centre.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from histoviewer.core.phantom.layout import PhantomLayout
from histoviewer.core.phantom.nodes import SINUS_UM
from histoviewer.core.phantom.procedural import hash_unit, value_noise
from histoviewer.core.phantom.sprites import SpriteBank, SpriteBanks

__all__ = [
    "FAT_SPACING_UM",
    "LYMPH_SPACING_UM",
    "TUMOUR_SPACING_UM",
    "MaskFn",
    "Splat",
    "TissueFields",
    "fat_seeds",
    "grid_points",
    "lymphoid_splats",
    "spindle_splats",
    "tumour_spacing_um",
    "tumour_splats",
]

# Which level-0 points lie inside a lesion: (l0_x, l0_y) -> bool array of the same shape.
MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

LYMPH_SPACING_UM = 5.6
TUMOUR_SPACING_UM = 13.0
# Lobular-type tumour cells are small and crowded: closer than ductal ones, sparser than lymphocytes.
LOBULAR_SPACING_UM = 9.0
SPINDLE_SPACING_UM = 11.0
FAT_SPACING_UM = 80.0


@dataclass(frozen=True, eq=False)
class Splat:
    """Sprites to add: bank, sprite indices, integer level-0 centres, per-nucleus gains."""

    bank: SpriteBank
    ids: np.ndarray
    l0_x: np.ndarray
    l0_y: np.ndarray
    gain_h: np.ndarray
    gain_e: np.ndarray


def grid_points(
    seed: int, salt: int, spacing_px: float, l0_x0: float, l0_y0: float, l0_x1: float,
    l0_y1: float, jitter: float = 0.8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Jittered-grid points whose cells overlap ``[x0, x1) x [y0, y1)``.

    Returns cell indices ``(ix, iy)`` (for further hashes) and level-0 positions.
    ``jitter`` is the fraction of a cell a point may move, so that the minimum spacing is
    ``(1 - jitter) * spacing``.
    """
    ix = np.arange(math.floor(l0_x0 / spacing_px), math.floor(l0_x1 / spacing_px) + 1)
    iy = np.arange(math.floor(l0_y0 / spacing_px), math.floor(l0_y1 / spacing_px) + 1)
    gx, gy = np.meshgrid(ix, iy)
    gx, gy = gx.ravel(), gy.ravel()
    jx = hash_unit(seed, gx, gy, salt) - 0.5
    jy = hash_unit(seed, gx, gy, salt + 1) - 0.5
    px = (gx + 0.5 + jitter * jx) * spacing_px
    py = (gy + 0.5 + jitter * jy) * spacing_px
    return gx, gy, px, py


def _ring(
    px: np.ndarray, py: np.ndarray, radius: float, n: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on a circle of ``radius`` px around each point, flattened."""
    ang = np.arange(n) * (2 * math.pi / n)
    return (px[:, None] + radius * np.cos(ang)).ravel(), (py[:, None] + radius * np.sin(ang)).ravel()


def _near_mask(mask_fn: MaskFn, px: np.ndarray, py: np.ndarray, radius: float) -> np.ndarray:
    """Points inside a lesion or within about ``radius`` px of one."""
    rx, ry = _ring(px, py, radius)
    return mask_fn(px, py) | mask_fn(rx, ry).reshape(len(px), -1).any(axis=1)


def _inside_mask(mask_fn: MaskFn, px: np.ndarray, py: np.ndarray, radius: float) -> np.ndarray:
    """Points inside a lesion by at least about ``radius`` px."""
    rx, ry = _ring(px, py, radius, 8)
    return mask_fn(px, py) & mask_fn(rx, ry).reshape(len(px), -1).all(axis=1)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class TissueFields:
    """Smooth anatomical fields at arbitrary level-0 points (numbers in um or 0..1)."""

    def __init__(self, layout: PhantomLayout) -> None:
        self.layout = layout
        self.tissue = layout.tissue
        self.mpp = layout.mpp
        self.seed = layout.seed

    def follicles(self, l0_x: np.ndarray, l0_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Germinal-centre and mantle-zone weights (0..1)."""
        gc = np.zeros(np.shape(l0_x))
        mantle = np.zeros(np.shape(l0_x))
        fol = self.layout.follicles
        if len(fol) == 0:
            return gc, mantle
        x0, x1 = float(np.min(l0_x)), float(np.max(l0_x))
        y0, y1 = float(np.min(l0_y)), float(np.max(l0_y))
        near = (
            (fol[:, 0] + fol[:, 2] > x0) & (fol[:, 0] - fol[:, 2] < x1)
            & (fol[:, 1] + fol[:, 2] > y0) & (fol[:, 1] - fol[:, 2] < y1)
        )
        if not near.any():
            return gc, mantle
        wob = 0.07 * value_noise(l0_x, l0_y, 40.0 / self.mpp, self.seed, salt=301)
        for fx, fy, fr in fol[near]:
            q = np.hypot(l0_x - fx, l0_y - fy) / fr + wob
            gc = np.maximum(gc, _smoothstep(0.68, 0.55, q))
            mantle = np.maximum(mantle, _smoothstep(1.0, 0.9, q) * _smoothstep(0.55, 0.68, q))
        return gc, mantle

    def medullary_sinus(self, l0_x: np.ndarray, l0_y: np.ndarray, sd_um: np.ndarray) -> np.ndarray:
        """Weight (0..1) of pale medullary sinuses, deep in large nodes only."""
        deep = _smoothstep(500.0, 900.0, sd_um)
        if not np.any(deep > 0):
            return np.zeros(np.shape(l0_x))
        deep = deep * self.tissue.medulla_weight(l0_x, l0_y)
        # Ridged noise: sinuses form a branching network of channels between the
        # medullary cords rather than round lakes.
        n = value_noise(l0_x, l0_y, 220.0 / self.mpp, self.seed, salt=302)
        n = n + 0.3 * value_noise(l0_x, l0_y, 60.0 / self.mpp, self.seed, salt=303)
        return deep * _smoothstep(0.16, 0.05, np.abs(n))

    def subcapsular_sinus(self, sd_um: np.ndarray, cap_um: np.ndarray) -> np.ndarray:
        t = (sd_um - cap_um) / SINUS_UM
        return _smoothstep(-0.1, 0.2, t) * _smoothstep(1.1, 0.75, t)


def lymphoid_splats(
    fields: TissueFields, banks: SpriteBanks, lesion_mask_fn: MaskFn, l0_x0: float, l0_y0: float,
    l0_x1: float, l0_y1: float,
) -> list[Splat]:
    """Lymphocytes, centroblasts and histiocytes of node parenchyma in a region."""
    layout = fields.layout
    mpp, seed = layout.mpp, layout.seed
    sp = LYMPH_SPACING_UM / mpp
    gx, gy, px, py = grid_points(seed, 10, sp, l0_x0, l0_y0, l0_x1, l0_y1, jitter=0.6)
    sd = fields.tissue.signed_distance_um(px, py)
    cap = fields.tissue.capsule_um(px, py)
    inside = sd > cap + 1.0
    if not inside.any():
        return []
    gx, gy, px, py, sd, cap = gx[inside], gy[inside], px[inside], py[inside], sd[inside], cap[inside]
    # Lymphocytes stop short of a lesion instead of being cut by its outline; a few
    # (tumour-infiltrating lymphocytes) stay inside and are drawn with the tumour.
    near_tumour = _near_mask(lesion_mask_fn, px, py, 4.5 / mpp)
    not_tumour = ~near_tumour
    gx, gy, px, py, sd, cap = (a[not_tumour] for a in (gx, gy, px, py, sd, cap))
    if len(px) == 0:
        return []
    gc, mantle = fields.follicles(px, py)
    med = fields.medullary_sinus(px, py, sd)
    sub = fields.subcapsular_sinus(sd, cap)
    sinus = np.maximum(med, sub)
    dens_noise = value_noise(px, py, 90.0 / mpp, seed, salt=11)
    keep_p = 0.88 + 0.08 * dens_noise
    keep_p = keep_p + (1.0 - keep_p) * mantle
    keep_p = keep_p * (1.0 - 0.3 * gc)
    keep_p = keep_p * (1.0 - 0.55 * sinus)
    keep = hash_unit(seed, gx, gy, 12) < keep_p
    u_type = hash_unit(seed, gx, gy, 13)
    p_histio = 0.035 + 0.06 * gc + 0.3 * sinus
    p_blast = 0.025 + 0.45 * gc
    is_histio = keep & (u_type < p_histio)
    is_blast = keep & ~is_histio & (u_type < p_histio + p_blast)
    is_lymph = keep & ~is_histio & ~is_blast
    u_id = hash_unit(seed, gx, gy, 14)
    u_gain = hash_unit(seed, gx, gy, 15)
    ix = np.rint(px).astype(np.int64)
    iy = np.rint(py).astype(np.int64)
    out = []
    for sel, bank, g_lo, g_hi in (
        (is_lymph, banks.lymphocyte, 0.82, 1.12),
        (is_blast, banks.centroblast, 0.85, 1.1),
        (is_histio, banks.histiocyte, 0.85, 1.1),
    ):
        if not sel.any():
            continue
        gain = g_lo + (g_hi - g_lo) * u_gain[sel]
        if bank is banks.lymphocyte:
            # Germinal-centre small lymphocytes stain a little paler; mantle ones darker.
            gain = gain * (1.0 - 0.15 * gc[sel] + 0.06 * mantle[sel])
        ids = (u_id[sel] * len(bank)).astype(np.int64)
        out.append(Splat(bank, ids, ix[sel], iy[sel], gain, np.ones_like(gain)))
    return out


def tumour_spacing_um(layout: PhantomLayout) -> float:
    """Centre-to-centre spacing of tumour cells for the layout's tumour morphology (um)."""
    return LOBULAR_SPACING_UM if layout.tumour_morphology == "lobular" else TUMOUR_SPACING_UM


def tumour_splats(
    fields: TissueFields, banks: SpriteBanks, lesion_mask_fn: MaskFn, l0_x0: float, l0_y0: float,
    l0_x1: float, l0_y1: float,
) -> tuple[list[Splat], np.ndarray, np.ndarray]:
    """Tumour nuclei whose centres lie in a lesion; also returns all tumour-grid centres
    (kept or not) near the region, the seeds of the cell-border pattern."""
    mpp, seed = fields.mpp, fields.seed
    lobular = fields.layout.tumour_morphology == "lobular"
    sp = tumour_spacing_um(fields.layout) / mpp
    gx, gy, px, py = grid_points(seed, 20, sp, l0_x0, l0_y0, l0_x1, l0_y1, jitter=0.85)
    # A nucleus must sit well inside the outline (its cytoplasm forms the lesion's edge),
    # so the drawn tumour never leaves the truth polygon and no nucleus is cut by it.
    inside = _inside_mask(lesion_mask_fn, px, py, 5.0 / mpp)
    u_kind = hash_unit(seed, gx, gy, 22)
    keep = inside & (u_kind < 0.96)
    til = inside & (u_kind >= 0.985)  # tumour-infiltrating lymphocytes
    out = []
    # lobular: small round uniform nuclei (the centroblast bank's size) instead of large pleomorphic ones
    tumour_bank = banks.centroblast if lobular else banks.tumour
    for sel, bank, lo, hi in ((keep, tumour_bank, 0.85, 1.15), (til, banks.lymphocyte, 0.9, 1.1)):
        if not sel.any():
            continue
        ids = (hash_unit(seed, gx, gy, 23)[sel] * len(bank)).astype(np.int64)
        gain = lo + (hi - lo) * hash_unit(seed, gx, gy, 24)[sel]
        out.append(Splat(bank, ids, np.rint(px[sel]).astype(np.int64),
                         np.rint(py[sel]).astype(np.int64), gain, np.ones_like(gain)))
    return out, px[inside], py[inside]


def spindle_splats(
    fields: TissueFields, banks: SpriteBanks, l0_x0: float, l0_y0: float, l0_x1: float,
    l0_y1: float,
) -> list[Splat]:
    """Fibroblast nuclei in the capsule, lying along the node outline."""
    mpp, seed = fields.mpp, fields.seed
    sp = SPINDLE_SPACING_UM / mpp
    gx, gy, px, py = grid_points(seed, 30, sp, l0_x0, l0_y0, l0_x1, l0_y1)
    tissue = fields.tissue
    sd = tissue.signed_distance_um(px, py)
    cap = tissue.capsule_um(px, py)
    sel = (sd > 1.5) & (sd < cap - 1.5) & (hash_unit(seed, gx, gy, 32) < 0.2)
    if not sel.any():
        return []
    gx, gy, px, py = gx[sel], gy[sel], px[sel], py[sel]
    # The outline's tangent is perpendicular to the gradient of the signed distance.
    eps = 2.0 / mpp
    gxd = tissue.signed_distance_um(px + eps, py) - tissue.signed_distance_um(px - eps, py)
    gyd = tissue.signed_distance_um(px, py + eps) - tissue.signed_distance_um(px, py - eps)
    tangent = np.arctan2(gyd, gxd) + 0.5 * math.pi
    tangent += 0.25 * (hash_unit(seed, gx, gy, 33) - 0.5)
    n_ang = banks.spindle_angles
    abin = np.floor(np.mod(tangent, math.pi) / math.pi * n_ang + 0.5).astype(np.int64) % n_ang
    var = (hash_unit(seed, gx, gy, 34) * banks.spindle_per_angle).astype(np.int64)
    ids = abin * banks.spindle_per_angle + var
    gain = 0.65 + 0.3 * hash_unit(seed, gx, gy, 35)
    return [Splat(banks.spindle, ids, np.rint(px).astype(np.int64),
                  np.rint(py).astype(np.int64), gain, np.ones_like(gain))]


def fat_seeds(
    fields: TissueFields, l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adipocyte centres near a region and whether each one is a fat cell."""
    mpp, seed = fields.mpp, fields.seed
    sp = FAT_SPACING_UM / mpp
    m = 1.5 * sp  # the nearest two seeds of any point lie within this margin
    gx, gy, px, py = grid_points(seed, 40, sp, l0_x0 - m, l0_y0 - m, l0_x1 + m, l0_y1 + m)
    tissue = fields.tissue
    sd = tissue.signed_distance_um(px, py)
    reach = tissue.fat_depth_um(px, py)
    edge = 0.25 * FAT_SPACING_UM * value_noise(px, py, 300.0 / mpp, seed, salt=41)
    is_fat = (sd > -reach + edge) & (sd < FAT_SPACING_UM) & (reach > 0.2 * FAT_SPACING_UM)
    return px, py, is_fat
