"""Deterministic procedural noise: integer hashes, value noise and periodic textures.

Everything a phantom draws is a pure function of (seed, level-0 position), so any tile can
be rendered on its own, in any order and in any process, and neighbouring tiles agree at
their borders. Randomness therefore comes from hashing integer lattice coordinates
(splitmix64), never from a stateful generator shared across tiles.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

__all__ = [
    "hash_u64",
    "hash_unit",
    "periodic_texture",
    "value_noise",
]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_KX = np.uint64(0xD6E8FEB86659FD93)
_KY = np.uint64(0xA0761D6478BD642F)
_KS = np.uint64(0xE7037ED1A0B428DB)
_INV_2_53 = 1.0 / float(1 << 53)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective avalanche on uint64 (wrap-around is intended)."""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def hash_u64(seed: int, ix: np.ndarray, iy: np.ndarray, salt: int = 0) -> np.ndarray:
    """64-bit hash of integer lattice coordinates ``(ix, iy)`` for a given seed and salt.

    ``salt`` separates independent random streams (jitter x, jitter y, sprite choice, ...).
    """
    with np.errstate(over="ignore"):
        ux = np.asarray(ix, dtype=np.int64).astype(np.uint64)
        uy = np.asarray(iy, dtype=np.int64).astype(np.uint64)
        s = np.uint64((int(seed) * 0x9E3779B1 + int(salt) * 0x85EBCA77) & 0xFFFFFFFFFFFFFFFF)
        h = _mix(ux * _KX + _GOLDEN) ^ _mix(uy * _KY + s * _KS)
        return _mix(h + s)


def hash_unit(seed: int, ix: np.ndarray, iy: np.ndarray, salt: int = 0) -> np.ndarray:
    """Uniform float64 in [0, 1) from ``hash_u64``."""
    h = hash_u64(seed, ix, iy, salt)
    return (h >> np.uint64(11)).astype(np.float64) * _INV_2_53


def value_noise(
    l0_x: np.ndarray, l0_y: np.ndarray, l0_cell: float, seed: int, salt: int = 0
) -> np.ndarray:
    """Smooth value noise in [-1, 1] at level-0 positions, with lattice spacing ``l0_cell`` px.

    Random values on an integer lattice, blended with a smoothstep: continuous, with
    features about ``l0_cell`` across. Works on any array shape.
    """
    gx = np.asarray(l0_x, dtype=np.float64) / l0_cell
    gy = np.asarray(l0_y, dtype=np.float64) / l0_cell
    ix = np.floor(gx)
    iy = np.floor(gy)
    fx = gx - ix
    fy = gy - iy
    fx = fx * fx * (3.0 - 2.0 * fx)
    fy = fy * fy * (3.0 - 2.0 * fy)
    ix = ix.astype(np.int64)
    iy = iy.astype(np.int64)
    v00 = hash_unit(seed, ix, iy, salt)
    v10 = hash_unit(seed, ix + 1, iy, salt)
    v01 = hash_unit(seed, ix, iy + 1, salt)
    v11 = hash_unit(seed, ix + 1, iy + 1, salt)
    top = v00 + (v10 - v00) * fx
    bottom = v01 + (v11 - v01) * fx
    return 2.0 * (top + (bottom - top) * fy) - 1.0


def periodic_texture(
    size: int,
    rng: np.random.Generator,
    *,
    sigma_px: float,
    anisotropy: float = 1.0,
    angle: float = 0.0,
) -> np.ndarray:
    """Seamlessly tiling float32 noise texture of shape ``(size, size)``, zero mean, unit std.

    White noise low-pass filtered in the Fourier domain, which makes it periodic for free:
    indexing it with ``(l0_y % size, l0_x % size)`` gives continuous texture across tiles.
    ``sigma_px`` is the Gaussian correlation length; ``anisotropy > 1`` stretches features
    by that factor along direction ``angle`` (radians), giving fibre-like streaks.
    """
    white = rng.standard_normal((size, size), dtype=np.float32)
    # Real FFT in single precision: a 2048^2 texture then needs ~50 MB of scratch, not 400.
    spectrum = scipy.fft.rfft2(white)
    del white
    fy = np.fft.fftfreq(size).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(size).astype(np.float32)[None, :]
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    along = fx * c + fy * s
    across = fy * c - fx * s
    sig_along = np.float32(sigma_px * anisotropy)
    sig_across = np.float32(sigma_px)
    spectrum *= np.exp(
        np.float32(-2.0 * math.pi**2) * ((along * sig_along) ** 2 + (across * sig_across) ** 2)
    )
    del along, across
    tex = scipy.fft.irfft2(spectrum, s=(size, size)).astype(np.float32)
    tex -= tex.mean()
    std = float(tex.std())
    if std > 0:
        tex /= np.float32(std)
    return tex
