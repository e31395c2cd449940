"""Pre-rendered nucleus sprites: stain-concentration stamps for each kind of cell.

A sprite is a pair of small float32 images (haematoxylin and eosin concentration) for one
nucleus and the cytoplasm or halo right around it; tiles are rendered by adding sprites at
nucleus positions. Sizes are given in micrometres and converted with the slide's mpp, so a
lymphocyte is ~6.5 um across at any resolution. Banks are generated from a seeded
generator, identically in every worker process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["SpriteBank", "SpriteBanks", "make_sprite_banks"]


@dataclass(frozen=True, eq=False)
class SpriteBank:
    """``h`` and ``e``: ``(n, S, S)`` float32 concentrations; the nucleus centre is the
    sprite's central pixel ``(S // 2, S // 2)``. ``h4`` is ``h ** 4``: overlapping nuclei
    combine as a 4-norm (close to the darker one, not their sum), so that two touching
    lymphocytes look like two nuclei rather than a dark lens where they overlap."""

    h: np.ndarray
    e: np.ndarray
    h4: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "h", np.maximum(self.h, 0).astype(np.float32))
        object.__setattr__(self, "h4", self.h.astype(np.float32) ** 4)

    @property
    def size(self) -> int:
        return int(self.h.shape[1])

    def __len__(self) -> int:
        return int(self.h.shape[0])


@dataclass(frozen=True, eq=False)
class SpriteBanks:
    lymphocyte: SpriteBank
    centroblast: SpriteBank
    histiocyte: SpriteBank
    tumour: SpriteBank
    spindle: SpriteBank  # ordered by orientation: index = angle_bin * per_angle + variant
    spindle_angles: int
    spindle_per_angle: int


def _noise(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    g = gaussian_filter(rng.standard_normal(shape), max(sigma_px, 0.3), mode="wrap")
    return g / max(float(g.std()), 1e-9)


class _Canvas:
    """Pixel grid of one sprite, in micrometres relative to the nucleus centre."""

    def __init__(self, size: int, mpp: float, rng: np.random.Generator) -> None:
        self.size = size
        self.mpp = mpp
        c = size // 2 + rng.uniform(-0.5, 0.5, 2)  # sub-pixel position varies per sprite
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        self.x_um = (xx - c[0]) * mpp
        self.y_um = (yy - c[1]) * mpp

    def blob(
        self,
        major_um: float,
        minor_um: float,
        angle: float,
        harmonics: list[tuple[float, float]],
        dx_um: float = 0.0,
        dy_um: float = 0.0,
    ) -> np.ndarray:
        """Approximate signed distance (um, positive inside) to an irregular ellipse."""
        ca, sa = math.cos(angle), math.sin(angle)
        x = self.x_um - dx_um
        y = self.y_um - dy_um
        u = (x * ca + y * sa) / (0.5 * major_um)
        v = (-x * sa + y * ca) / (0.5 * minor_um)
        q = np.hypot(u, v)
        phi = np.arctan2(v, u)
        r = np.ones_like(q)
        for k, (amp, phase) in enumerate(harmonics, start=2):
            r += amp * np.cos(k * phi + phase)
        return (r - q) * 0.5 * math.sqrt(major_um * minor_um)

    def cover(self, s_um: np.ndarray, soft_um: float = 0.3) -> np.ndarray:
        """Anti-aliased inside-coverage from a signed distance: about one pixel or
        ``soft_um`` of optical blur, whichever is wider."""
        w = max(self.mpp, soft_um)
        return np.clip(s_um / w + 0.5, 0.0, 1.0)


def _harmonics(rng: np.random.Generator, amp: float, kmax: int = 4) -> list[tuple[float, float]]:
    return [(rng.uniform(0, amp) / (k - 1), rng.uniform(0, 2 * math.pi)) for k in range(2, kmax + 1)]


def _size_px(extent_um: float, mpp: float) -> int:
    return int(math.ceil(extent_um / mpp)) + 5


def _nucleoli(
    cv: _Canvas, rng: np.random.Generator, count: int, r_um: tuple[float, float], spread_um: float
) -> np.ndarray:
    out = np.zeros((cv.size, cv.size))
    for _ in range(count):
        ang = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0, spread_um)
        s = cv.blob(2 * rng.uniform(*r_um), 2 * rng.uniform(*r_um), 0.0, [],
                    dist * math.cos(ang), dist * math.sin(ang))
        out = np.maximum(out, cv.cover(s, 0.25))
    return out


def _lymphocyte(cv: _Canvas, rng: np.random.Generator, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    d = rng.uniform(4.8, 6.8)
    s = cv.blob(d * rng.uniform(1.0, 1.22), d, rng.uniform(0, math.pi), _harmonics(rng, 0.14, 5))
    cov = cv.cover(s, 0.4)
    tex = _noise(cv.x_um.shape, 0.35 / mpp, rng)
    clumps = np.clip(_noise(cv.x_um.shape, 0.5 / mpp, rng) - 0.2, 0, None)
    dens = rng.uniform(0.8, 1.5)
    h = cov * dens * (0.7 + 0.15 * tex + 0.3 * clumps)
    h += cov * 0.15 * np.exp(-((s - 0.3) / 0.45) ** 2)  # condensed chromatin at the rim
    # Retraction halo: some fixed lymphocytes sit in a thin clear space.
    halo = max(0.0, rng.uniform(-0.1, 0.25)) * np.exp(-((s + 0.5) / 0.45) ** 2) * (s < 0)
    e = 0.18 * cov - halo
    return h, e - 0.1 * halo

def _centroblast(cv: _Canvas, rng: np.random.Generator, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    d = rng.uniform(8.0, 10.5)
    s = cv.blob(d * rng.uniform(1.0, 1.25), d, rng.uniform(0, math.pi), _harmonics(rng, 0.08))
    cov = cv.cover(s)
    tex = _noise(cv.x_um.shape, 0.5 / mpp, rng)
    clumps = np.clip(_noise(cv.x_um.shape, 0.5 / mpp, rng) - 0.6, 0, None)
    h = cov * rng.uniform(0.6, 0.9) * (0.85 + 0.2 * tex + 0.4 * clumps)
    h += cov * 0.35 * np.exp(-((s - 0.3) / 0.4) ** 2)
    nuc = _nucleoli(cv, rng, int(rng.integers(0, 3)), (0.4, 0.65), 0.35 * d)
    h += 0.5 * nuc
    e = 0.3 * cov + 0.5 * nuc
    return h, e


def _histiocyte(cv: _Canvas, rng: np.random.Generator, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    major = rng.uniform(8.5, 12.0)
    minor = major / rng.uniform(1.25, 1.7)
    ang = rng.uniform(0, math.pi)
    s = cv.blob(major, minor, ang, _harmonics(rng, 0.12))
    cov = cv.cover(s, 0.45)
    tex = _noise(cv.x_um.shape, 0.4 / mpp, rng)
    clumps = np.clip(_noise(cv.x_um.shape, 0.5 / mpp, rng) - 0.5, 0, None)
    h = cov * rng.uniform(0.5, 0.75) * (0.8 + 0.2 * tex + 0.5 * clumps)
    h += cov * 0.15 * np.exp(-((s - 0.25) / 0.35) ** 2)
    if rng.random() < 0.25:
        h += 0.35 * _nucleoli(cv, rng, 1, (0.4, 0.6), 1.0)
    cyto = cv.cover(cv.blob(major * 1.7, minor * 2.0, ang, _harmonics(rng, 0.15)), 1.5)
    foam = _noise(cv.x_um.shape, 0.8 / mpp, rng)
    e = 0.25 * cov + (cyto - cov).clip(0) * (0.12 + 0.04 * foam)
    return h, e


def _tumour(cv: _Canvas, rng: np.random.Generator, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    major = rng.uniform(10.0, 16.5)
    minor = major / rng.uniform(1.05, 1.5)
    s = cv.blob(major, minor, rng.uniform(0, math.pi), _harmonics(rng, 0.13, 5))
    cov = cv.cover(s, 0.4)
    tex = _noise(cv.x_um.shape, 0.3 / mpp, rng)
    clumps = np.clip(_noise(cv.x_um.shape, 0.45 / mpp, rng) - 0.45, 0, None)
    if rng.random() < 0.18:  # hyperchromatic
        base = rng.uniform(0.8, 1.1)
        vesicular = 0.15
    else:  # pale, open (vesicular) chromatin
        base = rng.uniform(0.3, 0.5)
        vesicular = 0.35
    depth = np.clip(s / (0.25 * minor), 0, 1)  # 0 at the membrane, 1 at the centre
    h = cov * base * (1.0 - vesicular * depth + 0.25 * tex) + cov * 0.5 * clumps
    h += cov * rng.uniform(0.35, 0.55) * np.exp(-((s - 0.25) / 0.25) ** 2)  # nuclear membrane
    counts = rng.choice([0, 1, 2, 3], p=[0.15, 0.55, 0.24, 0.06])
    nuc = _nucleoli(cv, rng, int(counts), (0.5, 1.1), 0.22 * minor)
    h += 0.6 * nuc
    e = 0.2 * cov + 0.6 * nuc
    # A thin perinuclear clearing, as in formalin-fixed tumour cells.
    e -= 0.1 * np.exp(-((s + 0.6) / 0.45) ** 2) * (s < 0)
    return h, e


def _spindle(
    cv: _Canvas, rng: np.random.Generator, mpp: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    length = rng.uniform(10.0, 18.0)
    width = rng.uniform(1.6, 2.8)
    s = cv.blob(length, width, angle + rng.uniform(-0.12, 0.12), _harmonics(rng, 0.03))
    s = np.minimum(s, 1.2 * width)  # cap so the long axis does not dominate the blur
    cov = cv.cover(s, 0.25)
    tex = _noise(cv.x_um.shape, 0.4 / mpp, rng)
    h = cov * rng.uniform(1.1, 1.6) * (0.9 + 0.12 * tex)
    return h, 0.3 * cov


def _bank(
    n: int, extent_um: float, mpp: float, rng: np.random.Generator, make, *args
) -> SpriteBank:
    size = _size_px(extent_um, mpp)
    h = np.empty((n, size, size), np.float32)
    e = np.empty((n, size, size), np.float32)
    for i in range(n):
        cv = _Canvas(size, mpp, rng)
        hi, ei = make(cv, rng, mpp, *args)
        h[i], e[i] = hi, ei
    return SpriteBank(h, e)


def _count(n: int, mpp: float) -> int:
    """Fewer variants when sprites are large (fine mpp), so a bank stays under ~50 MB."""
    return max(24, int(n * min(1.0, (mpp / 0.25) ** 2)))


def make_sprite_banks(mpp: float, seed: int) -> SpriteBanks:
    """All sprite banks for a slide at ``mpp`` um/px, deterministic in ``seed``."""
    rng = np.random.default_rng([int(seed), 0x5B17E])
    angles, per_angle = 16, 10
    spindle_h, spindle_e = [], []
    size = _size_px(20.0, mpp)
    for a in range(angles):
        for _ in range(per_angle):
            cv = _Canvas(size, mpp, rng)
            hi, ei = _spindle(cv, rng, mpp, math.pi * a / angles)
            spindle_h.append(hi)
            spindle_e.append(ei)
    return SpriteBanks(
        lymphocyte=_bank(_count(192, mpp), 9.5, mpp, rng, _lymphocyte),
        centroblast=_bank(_count(96, mpp), 13.0, mpp, rng, _centroblast),
        histiocyte=_bank(_count(96, mpp), 22.0, mpp, rng, _histiocyte),
        tumour=_bank(_count(256, mpp), 21.0, mpp, rng, _tumour),
        spindle=SpriteBank(
            np.asarray(spindle_h, np.float32), np.asarray(spindle_e, np.float32)
        ),
        spindle_angles=angles,
        spindle_per_angle=per_angle,
    )
