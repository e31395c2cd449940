"""Render phantom tiles as H&E stain densities and convert them to RGB (Beer-Lambert).

Each tile is built as two concentration maps, haematoxylin (nuclei, blue-purple) and eosin
(cytoplasm, collagen, pink), from smooth anatomical fields, periodic textures indexed by
level-0 position, and nucleus sprites. Colour comes only from the optical densities:
``RGB = 255 * exp(-(c_H * OD_H + c_E * OD_E + OD_glass))`` with measured H and E stain
vectors, so stain intensity, mixing and JPEG behave like a real scan. Tiles are a pure
function of (layout, level-0 position): any tile can be drawn alone, in any process.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.spatial import cKDTree

from histoviewer.core.phantom.cells import (
    FAT_SPACING_UM,
    TUMOUR_SPACING_UM,
    Splat,
    TissueFields,
    fat_seeds,
    lymphoid_splats,
    spindle_splats,
    tumour_spacing_um,
    tumour_splats,
)
from histoviewer.core.phantom.layout import PhantomLayout
from histoviewer.core.phantom.nodes import CAPSULE_MAX_UM
from histoviewer.core.phantom.procedural import periodic_texture, value_noise
from histoviewer.core.phantom.sprites import SpriteBanks, make_sprite_banks

__all__ = ["STAIN_E", "STAIN_H", "TileRenderer"]

# Stain optical-density vectors (R, G, B), unit length: the H&E reference matrix of
# Macenko et al. (2009) as used by common stain-normalisation code (HERef). It matches the
# purple nuclei and pink-lavender eosin of CAMELYON scans better than the Ruifrok &
# Johnston vectors (0.65, 0.70, 0.29) / (0.07, 0.99, 0.11), whose haematoxylin is too blue.
# Concentrations below are in units of natural-log optical density.
STAIN_H = np.array([0.5626, 0.7201, 0.4062])
STAIN_E = np.array([0.2159, 0.8012, 0.5581])
# Clean glass with mounting medium is not perfectly white (about 245, 242, 244).
GLASS_OD = np.array([0.035, 0.05, 0.04])
COARSE_STEP = 8  # level-0 px between samples of the smooth fields
TEXTURE_UM = 512.0  # physical period of the tiling textures


def _upsample(coarse: np.ndarray, step: int) -> np.ndarray:
    """Bilinear interpolation from samples at every ``step``-th pixel (plus one past the
    end) to the full ``(n - 1) * step`` square: pixel ``i`` sits at sample ``i / step``."""
    c = coarse.astype(np.float32)
    n = c.shape[0] - 1
    t = (np.arange(step, dtype=np.float32) / step)[None, None, :]
    # Along x: (n+1, n, step) -> (n+1, n*step); then the same along y.
    x = (c[:, :-1, None] * (1 - t) + c[:, 1:, None] * t).reshape(n + 1, n * step)
    ty = t.reshape(1, step, 1)
    y = x[:-1, None, :] * (1 - ty) + x[1:, None, :] * ty
    return y.reshape(n * step, n * step)


def _two_nearest(
    gx: np.ndarray, gy: np.ndarray, sx: np.ndarray, sy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distances to and indices of the nearest and second-nearest seed at each grid point
    (the Voronoi structure of cell borders and fat membranes)."""
    shape = gx.shape
    if len(sx) < 2:  # no border anywhere: the second seed is infinitely far away
        far = np.full(shape, 1e9)
        idx = np.zeros(shape, np.int64)
        d1 = np.hypot(gx - sx[0], gy - sy[0]) if len(sx) else np.zeros(shape)
        return d1, far, idx, idx
    tree = cKDTree(np.column_stack([sx, sy]))
    d, i = tree.query(np.column_stack([gx.ravel(), gy.ravel()]), k=2)
    return (d[:, 0].reshape(shape), d[:, 1].reshape(shape),
            i[:, 0].reshape(shape), i[:, 1].reshape(shape))


# Collagen streaks at four orientations, blended to run along the node outline.
FIBRE_ANGLES = np.arange(4) * (math.pi / 4)


@functools.lru_cache(maxsize=2)
def _assets(mpp: float, seed: int, period: int) -> tuple[SpriteBanks, tuple[np.ndarray, ...]]:
    """Sprite banks and tiling textures (a few seconds to make, ~150 MB): cached, so that
    writing several phantoms in one process pays once. Arrays are read-only."""
    banks = make_sprite_banks(mpp, seed)
    rng = np.random.default_rng([seed, 0x7E47])
    textures = [
        periodic_texture(period, rng, sigma_px=0.45 / mpp),  # staining grain
        periodic_texture(period, rng, sigma_px=2.2 / mpp),  # cell-scale mottling
    ] + [
        periodic_texture(period, rng, sigma_px=0.55 / mpp, anisotropy=10, angle=float(a))
        for a in FIBRE_ANGLES
    ]
    for t in textures:
        t.flags.writeable = False
    return banks, tuple(textures)


class TileRenderer:
    """Renders ``tile_size`` x ``tile_size`` RGB tiles of a phantom at level 0."""

    def __init__(self, layout: PhantomLayout, tile_size: int) -> None:
        self.layout = layout
        self.ts = tile_size
        self.mpp = mpp = layout.mpp
        self.fields = TissueFields(layout)
        # The texture period is a multiple of the tile size so a tile is a plain slice.
        self.period = tile_size * max(1, math.ceil(TEXTURE_UM / mpp / tile_size))
        self.banks, textures = _assets(mpp, int(layout.seed), self.period)
        self.tex_fine, self.tex_mid = textures[0], textures[1]
        self.fibre_angles = FIBRE_ANGLES
        self.tex_fibre = list(textures[2:])
        # A sprite that touches the tile may reach a whole sprite width beyond it.
        self.pad = max(self.banks.histiocyte.size, self.banks.tumour.size,
                       self.banks.spindle.size) + 2
        self._glass: dict[tuple[int, int], np.ndarray] = {}

    # -- helpers -------------------------------------------------------------------------
    def _tex(self, tex: np.ndarray, l0_x0: int, l0_y0: int) -> np.ndarray:
        """The tile's window of a tiling texture: a view for tile-aligned positions."""
        ox, oy = l0_x0 % self.period, l0_y0 % self.period
        if ox + self.ts <= self.period and oy + self.ts <= self.period:
            return tex[oy : oy + self.ts, ox : ox + self.ts]
        idx_y = (oy + np.arange(self.ts)) % self.period
        idx_x = (ox + np.arange(self.ts)) % self.period
        return tex[np.ix_(idx_y, idx_x)]

    def _coarse(self, l0_x0: int, l0_y0: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 centres of the pixels at every ``step``-th row and column (and one past
        the tile's edge), the samples that ``_up`` interpolates between."""
        c = np.arange(self.ts // step + 1) * step + 0.5
        return np.meshgrid(l0_x0 + c, l0_y0 + c)

    def _up(self, coarse: np.ndarray, step: int = COARSE_STEP) -> np.ndarray:
        return _upsample(coarse, step)

    def _lesion_mask_fn(self, l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float):
        near = [
            les for les in self.layout.lesions
            if les.l0_bbox[0] < l0_x1 and les.l0_bbox[2] > l0_x0
            and les.l0_bbox[1] < l0_y1 and les.l0_bbox[3] > l0_y0
        ]

        def fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            out = np.zeros(np.shape(x), bool)
            for les in near:
                out |= les.contains(x, y)
            return out

        return fn, near

    def _splat(self, splats: list[Splat], l0_x0: int, l0_y0: int) -> tuple[np.ndarray, np.ndarray]:
        """Add sprites into H and E maps of this tile (float32, tile-sized).

        A plain loop of slice-adds: each sprite is a contiguous block, which numpy adds
        several times faster than a scatter (``np.bincount``/``np.add.at``) of the same data.
        """
        pad, ts = self.pad, self.ts
        wc = ts + 2 * pad
        h4 = np.zeros((wc, wc), np.float32)
        e = np.zeros((wc, wc), np.float32)
        for s in splats:
            size = s.bank.size
            half = size // 2
            x = s.l0_x - l0_x0 + pad - half  # top-left corner of each sprite in the canvas
            y = s.l0_y - l0_y0 + pad - half
            vis = (x + size > pad) & (x < pad + ts) & (y + size > pad) & (y < pad + ts)
            if not vis.any():
                continue
            g4 = (s.gain_h[vis] ** 4).astype(np.float32)[:, None, None]
            hs = s.bank.h4[s.ids[vis]] * g4
            es = s.bank.e[s.ids[vis]] * s.gain_e[vis].astype(np.float32)[:, None, None]
            for i, (yy, xx) in enumerate(zip(y[vis].tolist(), x[vis].tolist())):
                h4[yy : yy + size, xx : xx + size] += hs[i]
                e[yy : yy + size, xx : xx + size] += es[i]
        crop = (slice(pad, pad + ts), slice(pad, pad + ts))
        return np.sqrt(np.sqrt(h4[crop])), e[crop].copy()

    def _to_rgb(self, h: np.ndarray, e: np.ndarray, fine: np.ndarray) -> np.ndarray:
        out = np.empty((self.ts, self.ts, 3), np.uint8)
        grain = 0.008 * fine
        for c in range(3):
            od = h * np.float32(STAIN_H[c]) + e * np.float32(STAIN_E[c])
            od += np.float32(GLASS_OD[c]) + grain
            out[..., c] = np.clip(255.0 * np.exp(-od) + 0.5, 0, 255)
        return out

    # -- public --------------------------------------------------------------------------
    @staticmethod
    def glass_rgb() -> tuple[int, int, int]:
        """Mean colour of empty glass (used to pad tiles beyond the slide's edge)."""
        rgb = np.clip(255.0 * np.exp(-GLASS_OD) + 0.5, 0, 255).astype(int)
        return int(rgb[0]), int(rgb[1]), int(rgb[2])

    def is_glass(self, l0_x0: int, l0_y0: int) -> bool:
        """True when the tile holds no tissue at all (cheap: coarse samples only)."""
        x, y = self._coarse(l0_x0, l0_y0, 4 * COARSE_STEP)
        tissue = self.layout.tissue
        sd = tissue.signed_distance_um(x, y)
        reach = tissue.fat_depth_um(x, y) + 2.5 * FAT_SPACING_UM + 4 * COARSE_STEP * self.mpp
        return not bool(np.any(sd > -reach))

    def glass_tile(self, l0_x0: int, l0_y0: int) -> np.ndarray:
        key = (l0_x0 % self.period, l0_y0 % self.period)
        tile = self._glass.get(key)
        if tile is None:
            z = np.zeros((self.ts, self.ts), np.float32)
            tile = self._to_rgb(z, z, self._tex(self.tex_fine, l0_x0, l0_y0))
            self._glass[key] = tile
        return tile

    def render(self, l0_x0: int, l0_y0: int) -> np.ndarray:
        """RGB uint8 tile with its top-left corner at level-0 ``(l0_x0, l0_y0)``."""
        if self.is_glass(l0_x0, l0_y0):
            return self.glass_tile(l0_x0, l0_y0)
        ts, mpp = self.ts, self.mpp
        tissue = self.layout.tissue
        fine = self._tex(self.tex_fine, l0_x0, l0_y0)
        mid = self._tex(self.tex_mid, l0_x0, l0_y0)
        cx, cy = self._coarse(l0_x0, l0_y0, COARSE_STEP)
        sd_c = tissue.signed_distance_um(cx, cy)
        h = np.zeros((ts, ts), np.float32)
        e = np.zeros((ts, ts), np.float32)
        nh = np.zeros((ts, ts), np.float32)
        ne = np.zeros((ts, ts), np.float32)
        node_w = np.zeros((ts, ts), np.float32)
        near_lesions: list = []
        mask_fn = None
        if float(sd_c.max()) > -1.0:  # some node tissue (its nuclei sit well inside)
            node_w, h, e, nh, ne, mask_fn, near_lesions = self._node(
                sd_c, cx, cy, fine, mid, l0_x0, l0_y0
            )
        if float(sd_c.min()) < 0:
            # Perinodal fat: large empty adipocytes with thin pink membranes.
            self._add_fat(h, e, node_w, l0_x0, l0_y0)
        if near_lesions:
            h, e, nh, ne = self._add_tumour(h, e, nh, ne, mid, fine, mask_fn, l0_x0, l0_y0)
        # Staining intensity drifts over millimetres: a bilinear ramp between the tile's
        # corners is exact enough and costs nothing.
        corners_x, corners_y = np.meshgrid([l0_x0, l0_x0 + ts], [l0_y0, l0_y0 + ts])
        vh = value_noise(corners_x, corners_y, 1500.0 / mpp, self.layout.seed, salt=501)
        ve = value_noise(corners_x, corners_y, 1100.0 / mpp, self.layout.seed, salt=502)
        h = (h + nh) * (1.0 + 0.1 * _upsample(vh, ts))
        e = (e + ne) * (1.0 + 0.12 * _upsample(ve, ts))
        return self._to_rgb(np.maximum(h, 0), np.maximum(e, 0), fine)

    def _node(self, sd_c, cx, cy, fine, mid, l0_x0: int, l0_y0: int):
        """Node parenchyma, capsule and their nuclei for a tile that touches the node."""
        ts, mpp = self.ts, self.mpp
        tissue, fields = self.layout.tissue, self.fields
        cap_c = tissue.capsule_um(cx, cy)
        gc_c, _ = fields.follicles(cx, cy)
        sinus_c = np.maximum(fields.medullary_sinus(cx, cy, sd_c), fields.subcapsular_sinus(sd_c, cap_c))
        sd = self._up(sd_c)
        cap = self._up(cap_c)
        gc = self._up(gc_c) if gc_c.any() else 0.0
        sinus = self._up(sinus_c) if sinus_c.any() else 0.0
        node_w = np.clip(sd / mpp + 0.5, 0.0, 1.0)
        caps_w = node_w * np.clip((cap - sd) / 1.5 + 0.5, 0.0, 1.0)
        inner_w = node_w - caps_w

        # Parenchyma between the nuclei: faint lavender reticulin/cytoplasm with clefts.
        pale = 1.0 - 0.3 * sinus
        stroma_e = (0.2 + 0.025 * mid + 0.05 * fine - 0.05 * gc) * pale
        stroma_h = (0.21 + 0.02 * mid + 0.03 * gc) * pale
        h = inner_w * stroma_h
        e = inner_w * stroma_e
        has_capsule = float(sd_c.min()) < CAPSULE_MAX_UM + 5
        if has_capsule:
            # Capsule: dense collagen bundles running along the outline, eosinophilic.
            fibre = self._fibre(sd_c, l0_x0, l0_y0)
            h += caps_w * (0.05 + 0.03 * fibre)
            e += caps_w * (0.5 + 0.65 * fibre + 0.06 * fine)

        pad = self.pad
        rx0, ry0, rx1, ry1 = l0_x0 - pad, l0_y0 - pad, l0_x0 + ts + pad, l0_y0 + ts + pad
        m = 3 * TUMOUR_SPACING_UM / mpp
        mask_fn, near_lesions = self._lesion_mask_fn(rx0 - m, ry0 - m, rx1 + m, ry1 + m)
        splats = lymphoid_splats(fields, self.banks, mask_fn, rx0, ry0, rx1, ry1)
        if has_capsule:
            splats += spindle_splats(fields, self.banks, rx0, ry0, rx1, ry1)
        nh, ne = self._splat(splats, l0_x0, l0_y0)
        return node_w, h.astype(np.float32), e.astype(np.float32), nh, ne, mask_fn, near_lesions

    def _fibre(self, sd_c: np.ndarray, l0_x0: int, l0_y0: int) -> np.ndarray:
        """Collagen texture (0..1) whose streaks follow the tangent of the node outline."""
        gy, gx = np.gradient(sd_c)
        tangent = np.arctan2(gy, gx) + 0.5 * math.pi
        fibre = np.zeros((self.ts, self.ts), np.float32)
        weights = [np.maximum(np.cos(2 * (tangent - a)), 0.0) ** 2 for a in self.fibre_angles]
        total = np.maximum(sum(weights), 1e-6)
        for w, tex in zip(weights, self.tex_fibre):
            ridge = (1.0 - np.minimum(np.abs(self._tex(tex, l0_x0, l0_y0)), 1.0)) ** 3
            fibre += self._up(w / total) * ridge
        return fibre

    def _add_fat(self, h: np.ndarray, e: np.ndarray, node_w: np.ndarray, l0_x0: int, l0_y0: int) -> None:
        ts = self.ts
        sx, sy, is_fat = fat_seeds(self.fields, l0_x0, l0_y0, l0_x0 + ts, l0_y0 + ts)
        if not is_fat.any():
            return
        gx, gy = self._coarse(l0_x0, l0_y0, 4)
        # Domain warp (a few micrometres, smooth): membranes bend like real adipocyte
        # walls instead of running as ruled straight lines between Voronoi vertices.
        seed, warp_cell = self.layout.seed, 45.0 / self.mpp
        amp = 4.0 / self.mpp
        wx = gx + amp * value_noise(gx, gy, warp_cell, seed, salt=601)
        wy = gy + amp * value_noise(gx, gy, warp_cell, seed, salt=602)
        d1, d2, i1, i2 = _two_nearest(wx, wy, sx, sy)
        f1, f2 = is_fat[i1], is_fat[i2]
        membrane_um = 1.1
        gap = self._up((d2 - d1) * self.mpp, 4)
        line = np.clip(1.0 - gap / (2 * membrane_um), 0.0, 1.0)
        near_fat = self._up((f1 | f2).astype(np.float32), 4)
        line = line * np.clip(2 * near_fat, 0, 1)
        outside = 1.0 - node_w
        e += outside * (0.7 * line + 0.015 * self._up(f1.astype(np.float32), 4))
        h += outside * 0.05 * line

    def _add_tumour(self, h, e, nh, ne, mid, fine, mask_fn, l0_x0: int, l0_y0: int):
        ts, mpp = self.ts, self.mpp
        yy, xx = np.mgrid[0:ts, 0:ts]
        mask = mask_fn(xx + (l0_x0 + 0.5), yy + (l0_y0 + 0.5))
        if not mask.any():
            return h, e, nh, ne
        m = 2.5 * tumour_spacing_um(self.layout) / mpp
        splats, sx, sy = tumour_splats(
            self.fields, self.banks, mask_fn, l0_x0 - m, l0_y0 - m, l0_x0 + ts + m, l0_y0 + ts + m
        )
        th, te = self._splat(splats, l0_x0, l0_y0)
        # Cell borders: the Voronoi edges between neighbouring tumour-cell centres.
        gx, gy = self._coarse(l0_x0, l0_y0, 4)
        d1, d2, _, _ = _two_nearest(gx, gy, sx, sy)
        gap = self._up((d2 - d1) * mpp, 4)
        border = np.clip(1.0 - gap / 1.6, 0.0, 1.0)
        # Abundant, slightly amphophilic cytoplasm: pinker and denser than lymphoid stroma.
        # Retraction clefts: irregular clear spaces between groups of tumour cells.
        cleft = 1.0 - 0.75 * np.clip((mid - 1.4) / 0.6, 0.0, 1.0)
        tum_e = (0.5 + 0.1 * mid + 0.07 * fine - 0.15 * border) * cleft
        tum_h = (0.12 + 0.03 * mid + 0.02 * fine - 0.04 * border) * cleft
        if self.layout.tumour_morphology == "lobular":
            # Scant pale cytoplasm, no clefts, no cohesive borders: the cells lie packed like the
            # lymphocytes around them (lobular metastases are the classic miss in lymph nodes).
            tum_e = 0.25 + 0.06 * mid + 0.05 * fine
            tum_h = 0.08 + 0.02 * mid
        h = np.where(mask, tum_h, h)
        e = np.where(mask, tum_e, e)
        nh = np.where(mask, th, nh)
        ne = np.where(mask, te, ne)
        return h, e, nh, ne
