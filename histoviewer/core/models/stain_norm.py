"""Stain normalisation of H&E patches: Reinhard (2001) and Macenko (2009), part of a model's input.

A model trained with stain normalisation stores a ``StainNormaliser`` (the method and the
target fitted on its training patches, JSON) in ``ModelInfo.extra["stain_normalisation"]``;
every classifier applies it to each patch before anything else (``PatchClassifier.prepare_patches``),
so training, evaluation, whole-slide analysis, exports and the live overlay see the same input.

Both methods work per patch (each patch is mapped onto the target by its own statistics) and
are vectorised over a batch with float32 numpy:

- Reinhard et al. 2001 ("Color transfer between images"), in CIELAB (D65, L in 0..100) as
  torchstain and StainTools do: each channel is standardised by the patch's own mean and
  standard deviation, then given the target's.
- Macenko et al. 2009 ("A method for normalizing histology slides for quantitative analysis"):
  optical density (OD = -ln((I + 1) / 240)), pixels with OD < 0.15 in any channel are
  background, the plane of the two largest principal directions of the tissue OD, the 1st and
  99th percentile angles in that plane give the haematoxylin and eosin vectors, concentrations
  by least squares, scaled so their 99th percentile matches the target's, and the image is
  rebuilt with the target's stain vectors.

A patch the method cannot read (background, a single colour, almost no tissue, or a
non-finite intermediate) is left unnormalised and counted (``StainResult.normalised``), never
turned into NaN or a made-up colour. Why a library is not used: torchstain 1.4.1 (MIT,
numpy-only) implements both but one image at a time in Python and has no fallback for
background patches (NaN or an error); its outputs are the reference our tests compare with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from histoviewer.core.errors import ModelError

__all__ = [
    "EXTRA_KEY",
    "METHODS",
    "StainNormaliser",
    "StainResult",
    "fit_stain_normaliser",
    "macenko_parameters",
    "reinhard_parameters",
    "rgb_to_lab",
    "lab_to_rgb",
]

EXTRA_KEY = "stain_normalisation"
METHODS = ("none", "reinhard", "macenko")

# Macenko's constants (as in the published reference code and torchstain).
MACENKO_IO = 240.0          # transmitted light intensity
MACENKO_BETA = 0.15         # OD below this in any channel: background
MACENKO_ALPHA = 1.0         # percentile (per cent) of the angle distribution taken as the extremes
MACENKO_MAX_C_PERCENTILE = 99.0
# A patch whose tissue pixels (Macenko's OD rule) are fewer than this fraction is not normalised:
# its statistics would describe glass, and normalising glass to tissue would invent tissue colour.
MIN_TISSUE_FRACTION = 0.10
# Minimum angle (radians) between the two extreme stain directions: below it the patch has a
# single colour and the stain matrix is singular.
MIN_STAIN_ANGLE_RAD = 0.05
# A LAB channel with a smaller spread than this is one colour: nothing to standardise.
MIN_LAB_STD = 0.5
_CHUNK = 128  # patches per vectorised step (about 14 MB of float32 for 96 px patches)
# numpy releases the GIL in its array loops: chunks of one batch run on this many threads
# (the model's torch threads are idle meanwhile).
_THREADS = max(1, min(2, os.cpu_count() or 1))

# sRGB (D65) <-> CIE XYZ, IEC 61966-2-1.
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]], np.float64)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], np.float64)
# Folding the white point into the matrices saves a pass over the pixels.
_LIN_TO_XYZN = (_RGB_TO_XYZ / _WHITE_D65[:, None]).T.astype(np.float32)
_XYZN_TO_LIN = (_XYZ_TO_RGB * _WHITE_D65[None, :]).T.astype(np.float32)
_EPS = (6.0 / 29.0) ** 3
_KAPPA = 3.0 * (6.0 / 29.0) ** 2


def _srgb_decode_lut() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92).astype(np.float32)


# uint8 sRGB -> linear RGB is a 256-entry table; linear -> uint8 sRGB a 65536-entry one
# (the steepest step of the sRGB curve is below one table step, so it is exact to one level).
_DECODE = _srgb_decode_lut()
_ENCODE_STEPS = 65535
_lin = np.arange(_ENCODE_STEPS + 1, dtype=np.float64) / _ENCODE_STEPS
_ENCODE = np.clip(np.rint(255.0 * np.where(_lin > 0.0031308, 1.055 * _lin ** (1 / 2.4) - 0.055,
                                           12.92 * _lin)), 0, 255).astype(np.uint8)
del _lin
# Macenko's OD of each uint8 level.
_OD = (-np.log((np.arange(256, dtype=np.float64) + 1.0) / MACENKO_IO)).astype(np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB ``(..., 3)`` -> float32 CIELAB (D65; L 0..100, a and b about -128..127)."""
    xyz = _DECODE[rgb] @ _LIN_TO_XYZN
    f = np.cbrt(xyz)
    dark = xyz <= _EPS  # rare in stained tissue: patch the linear segment in place
    if dark.any():
        f[dark] = xyz[dark] / _KAPPA + 4.0 / 29.0
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """float CIELAB ``(..., 3)`` -> uint8 sRGB, out-of-gamut colours clipped."""
    lab = np.asarray(lab, np.float32)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = f * f * f
    dark = f <= 6.0 / 29.0
    if dark.any():
        xyz[dark] = _KAPPA * (f[dark] - 4.0 / 29.0)
    lin = xyz @ _XYZN_TO_LIN
    np.clip(lin, 0.0, 1.0, out=lin)
    lin *= _ENCODE_STEPS
    lin += 0.5
    return _ENCODE[lin.astype(np.int32)]


# OD >= beta  <=>  (I + 1) / Io <= exp(-beta)  <=>  I <= this level (205 for Io 240, beta 0.15).
_TISSUE_MAX_LEVEL = int(np.floor(MACENKO_IO * np.exp(-MACENKO_BETA) - 1.0))


def _tissue_mask(patches: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, H * W)`` True where every channel's OD reaches
    Macenko's beta (read on the uint8 levels directly: same rule, no logarithm)."""
    # Two pairwise maxima: a reduction over a last axis of 3 is several times slower.
    brightest = np.maximum(np.maximum(patches[..., 0], patches[..., 1]), patches[..., 2])
    return (brightest <= _TISSUE_MAX_LEVEL).reshape(len(patches), -1)


def _lab_stats(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, P, 3)`` float32 LAB -> per-patch mean and std, ``(N, 3)`` float64."""
    # Sums as batched products with a row of ones (BLAS): strided reductions are slow.
    ones = np.ones((len(lab), 1, lab.shape[1]), np.float32)
    mean = (ones @ lab)[:, 0, :].astype(np.float64) / lab.shape[1]
    centred = lab - mean[:, None, :].astype(np.float32)
    centred *= centred
    var = (ones @ centred)[:, 0, :].astype(np.float64) / lab.shape[1]
    return mean, np.sqrt(var)


# -- Reinhard ------------------------------------------------------------------------------


def reinhard_parameters(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-patch LAB mean and std, each ``(N, 3)`` float64, and a ``(N,)`` mask of the patches
    that can be normalised (enough tissue, no flat channel). ``patches``: ``(N, H, W, 3)`` uint8."""
    _lab, mean, std, ok = _reinhard_stats(patches)
    return mean, std, ok


def _reinhard_stats(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lab = rgb_to_lab(patches).reshape(len(patches), -1, 3)
    mean, std = _lab_stats(lab)
    tissue = _tissue_mask(patches).mean(axis=1)
    ok = (tissue >= MIN_TISSUE_FRACTION) & np.all(std >= MIN_LAB_STD, axis=1)
    return lab, mean, std, ok & np.all(np.isfinite(mean) & np.isfinite(std), axis=1)


def _reinhard_chunk(patches: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    flat, mean, std, ok = _reinhard_stats(patches)
    gain = np.where(ok[:, None], target_std / np.where(ok[:, None], std, 1.0), 1.0)
    shift = np.where(ok[:, None], target_mean - mean * gain, 0.0)
    out_lab = flat * gain[:, None, :].astype(np.float32) + shift[:, None, :].astype(np.float32)
    out = lab_to_rgb(out_lab).reshape(patches.shape)
    out[~ok] = patches[~ok]  # unreadable patches pass through exactly
    return out, ok


# -- Macenko -------------------------------------------------------------------------------


def _percentile_of_sorted(sorted_vals: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolation percentile ``q`` of the first ``counts[i]`` values of each sorted row."""
    # Rows with no values give inf/NaN here and are masked by the caller.
    pos = (np.maximum(counts, 1) - 1) * (q / 100.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(counts - 1, 0))
    a = np.take_along_axis(sorted_vals, lo[:, None], axis=1)[:, 0]
    b = np.take_along_axis(sorted_vals, hi[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        return a + (b - a) * (pos - lo)


def _macenko_fit_chunk(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(N, H, W, 3)`` uint8 -> per-patch OD ``(N, P, 3)``, unit stain vectors ``(N, 3, 2)``
    (haematoxylin, eosin), their least-squares unmixing ``(N, 2, 3)`` and a readable mask ``(N,)``."""
    n = len(patches)
    od = _OD[patches.reshape(n, -1, 3)]
    mask = _tissue_mask(patches)
    counts = mask.sum(axis=1)
    ok = counts >= max(3, MIN_TISSUE_FRACTION * od.shape[1])
    # Covariance of the tissue pixels' OD, per patch.
    w = mask.astype(np.float32)[:, None, :]
    denom = np.maximum(counts, 2).astype(np.float32)
    mean = (w @ od)[:, 0, :] / denom[:, None]
    centred = (od - mean[:, None, :]) * w.transpose(0, 2, 1)
    cov = (centred.transpose(0, 2, 1) @ centred).astype(np.float64) / (denom - 1)[:, None, None]
    cov[~ok] = np.eye(3)
    _, vecs = np.linalg.eigh(cov)                       # ascending eigenvalues
    plane = vecs[:, :, 1:3][:, :, ::-1]                 # (N, 3, 2): largest first
    # Point both axes into positive OD, so tissue angles stay within (-pi/2, pi/2): no wrap.
    plane = plane * np.where(plane.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)
    proj = od @ plane.astype(np.float32)
    phi = np.arctan2(proj[..., 1], proj[..., 0])
    phi = np.where(mask, phi, np.inf)
    phi.sort(axis=1)
    lo = _percentile_of_sorted(phi, counts, MACENKO_ALPHA)
    hi = _percentile_of_sorted(phi, counts, 100.0 - MACENKO_ALPHA)
    ok &= np.isfinite(lo) & np.isfinite(hi) & ((hi - lo) >= MIN_STAIN_ANGLE_RAD)
    lo, hi = np.where(ok, lo, 0.0), np.where(ok, hi, 1.0)
    v_lo = np.einsum("nck,nk->nc", plane, np.stack([np.cos(lo), np.sin(lo)], axis=1))
    v_hi = np.einsum("nck,nk->nc", plane, np.stack([np.cos(hi), np.sin(hi)], axis=1))
    # Haematoxylin absorbs red more than eosin does: the vector with the larger red OD is H.
    h_first = (v_lo[:, 0] > v_hi[:, 0])[:, None]
    stains = np.stack([np.where(h_first, v_lo, v_hi), np.where(h_first, v_hi, v_lo)], axis=2)
    stains /= np.maximum(np.linalg.norm(stains, axis=1, keepdims=True), 1e-12)
    stains[~ok] = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # well-conditioned placeholder
    unmix = np.linalg.pinv(stains)                      # (N, 2, 3)
    ok &= np.all(np.isfinite(stains), axis=(1, 2)) & np.all(np.isfinite(unmix), axis=(1, 2))
    return od, stains, unmix, ok


def _max_concentration(od: np.ndarray, unmix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conc = unmix.astype(np.float32) @ od.transpose(0, 2, 1)   # (N, 2, P)
    return conc, np.percentile(conc, MACENKO_MAX_C_PERCENTILE, axis=2).astype(np.float64)


def macenko_parameters(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-patch unit stain vectors ``(N, 3, 2)`` (columns haematoxylin, eosin; RGB OD), the
    99th-percentile concentrations ``(N, 2)`` and a ``(N,)`` mask of readable patches."""
    od, stains, unmix, ok = _macenko_fit_chunk(patches)
    _, max_c = _max_concentration(od, unmix)
    ok &= np.all(np.isfinite(max_c) & (max_c > 1e-3), axis=1)
    return stains, max_c, ok


def _macenko_chunk(patches: np.ndarray, target_stains: np.ndarray, target_max_c: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    od, _stains, unmix, ok = _macenko_fit_chunk(patches)
    conc, max_c = _max_concentration(od, unmix)
    ok &= np.all(np.isfinite(max_c) & (max_c > 1e-3), axis=1)
    scale = np.where(ok[:, None], target_max_c / np.where(ok[:, None], max_c, 1.0), 1.0)
    conc *= scale[:, :, None].astype(np.float32)
    out_od = conc.transpose(0, 2, 1) @ (-target_stains.T).astype(np.float32)   # (N, P, 3), negated
    rgb = np.exp(out_od, out=out_od)
    rgb *= MACENKO_IO
    np.clip(rgb, 0.0, 255.0, out=rgb)
    rgb += 0.5
    out = rgb.astype(np.uint8).reshape(patches.shape)
    out[~ok] = patches[~ok]
    return out, ok


# -- the model's normaliser ------------------------------------------------------------------


@dataclass(frozen=True)
class StainResult:
    """Normalised patches ``(N, H, W, 3)`` uint8 and which of them were normalised ``(N,)``
    (False: left as they were, because the method could not read them)."""

    patches: np.ndarray
    normalised: np.ndarray

    @property
    def n_unnormalised(self) -> int:
        return int(len(self.normalised) - np.count_nonzero(self.normalised))


@dataclass(frozen=True)
class StainNormaliser:
    """A fitted stain normaliser, stored as JSON in ``ModelInfo.extra["stain_normalisation"]``.

    ``method``: "reinhard" or "macenko". Reinhard's target: ``lab_mean`` and ``lab_std``
    (CIELAB L, a, b). Macenko's target: ``stain_od`` (haematoxylin then eosin, each a unit
    optical-density vector in R, G, B) and ``max_concentration`` (their 99th-percentile
    concentrations). ``n_fit``: patches the target was summarised over (median per value).
    """

    method: str
    lab_mean: tuple[float, ...] = ()
    lab_std: tuple[float, ...] = ()
    stain_od: tuple[tuple[float, ...], ...] = ()
    max_concentration: tuple[float, ...] = ()
    n_fit: int = 0

    def __post_init__(self) -> None:
        if self.method == "reinhard":
            ok = len(self.lab_mean) == 3 and len(self.lab_std) == 3 and min(self.lab_std) > 0
        elif self.method == "macenko":
            ok = (len(self.stain_od) == 2 and all(len(v) == 3 for v in self.stain_od)
                  and len(self.max_concentration) == 2 and min(self.max_concentration) > 0)
        else:
            raise ModelError(f"unknown stain normalisation {self.method!r}; expected reinhard or macenko",
                             setting="stain_norm")
        values = (*self.lab_mean, *self.lab_std, *self.max_concentration,
                  *(x for v in self.stain_od for x in v))
        if not ok or not np.all(np.isfinite(values)):
            raise ModelError(f"the {self.method} stain normalisation target is incomplete or not finite")

    def describe(self) -> str:
        """One line for the model card (``InputSpec.normalisation``)."""
        if self.method == "reinhard":
            m, s = self.lab_mean, self.lab_std
            return ("Reinhard stain normalisation per patch to CIELAB mean "
                    f"({m[0]:.1f}, {m[1]:.1f}, {m[2]:.1f}), std ({s[0]:.1f}, {s[1]:.1f}, {s[2]:.1f})")
        h, e = self.stain_od
        c = self.max_concentration
        return ("Macenko stain normalisation per patch to haematoxylin OD "
                f"({h[0]:.3f}, {h[1]:.3f}, {h[2]:.3f}), eosin OD ({e[0]:.3f}, {e[1]:.3f}, {e[2]:.3f}), "
                f"max concentrations ({c[0]:.3f}, {c[1]:.3f})")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "n_fit": self.n_fit}
        if self.method == "reinhard":
            out.update(lab_mean=list(self.lab_mean), lab_std=list(self.lab_std))
        else:
            out.update(stain_od=[list(v) for v in self.stain_od],
                       max_concentration=list(self.max_concentration))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StainNormaliser:
        try:
            return cls(method=str(data["method"]),
                       lab_mean=tuple(float(x) for x in data.get("lab_mean", ())),
                       lab_std=tuple(float(x) for x in data.get("lab_std", ())),
                       stain_od=tuple(tuple(float(x) for x in v) for v in data.get("stain_od", ())),
                       max_concentration=tuple(float(x) for x in data.get("max_concentration", ())),
                       n_fit=int(data.get("n_fit", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"unreadable stain normalisation record: {exc}") from exc

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> StainNormaliser | None:
        """The normaliser a model's ``ModelInfo.extra`` records, or None."""
        record = extra.get(EXTRA_KEY)
        return None if not record else cls.from_dict(record)

    def apply(self, patches: np.ndarray) -> StainResult:
        """Normalise ``(N, H, W, 3)`` uint8 patches (a new array; the input is not changed)."""
        arr = np.ascontiguousarray(patches)
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ModelError(f"stain normalisation needs (N, H, W, 3) uint8 patches, got {arr.shape} {arr.dtype}")
        out = np.empty_like(arr)
        done = np.zeros(len(arr), bool)
        if self.method == "reinhard":
            t_mean, t_std = np.array(self.lab_mean), np.array(self.lab_std)
        else:
            t_stains, t_max = np.array(self.stain_od).T, np.array(self.max_concentration)

        def run(start: int) -> None:
            chunk = arr[start:start + _CHUNK]
            if self.method == "reinhard":
                res, ok = _reinhard_chunk(chunk, t_mean, t_std)
            else:
                res, ok = _macenko_chunk(chunk, t_stains, t_max)
            out[start:start + len(chunk)] = res
            done[start:start + len(chunk)] = ok

        starts = range(0, len(arr), _CHUNK)
        if len(starts) < 2 or _THREADS < 2:
            for start in starts:
                run(start)
        else:
            with ThreadPoolExecutor(_THREADS, thread_name_prefix="histoviewer-stain") as pool:
                list(pool.map(run, starts))  # list(): re-raise a chunk's exception here
        return StainResult(out, done)


def fit_stain_normaliser(method: str, patches: np.ndarray) -> StainNormaliser:
    """Fit ``method``'s target to ``patches`` (a sample of the training patches, uint8
    ``(N, H, W, 3)``): the median of each per-patch value over the readable patches, which a
    few odd patches (background, pen, folds) do not move."""
    arr = np.ascontiguousarray(patches)
    if method not in ("reinhard", "macenko"):
        raise ModelError(f"unknown stain normalisation {method!r}; expected reinhard or macenko",
                         setting="stain_norm")
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(arr), _CHUNK):
        chunk = arr[start:start + _CHUNK]
        parts.append(reinhard_parameters(chunk) if method == "reinhard" else macenko_parameters(chunk))
    a, b, ok = (np.concatenate([p[i] for p in parts]) for i in range(3))
    if not ok.any():
        raise ModelError(f"no patch had enough tissue to fit {method} stain normalisation "
                         f"({len(arr)} patches)")
    a, b = a[ok], b[ok]
    if method == "reinhard":
        return StainNormaliser("reinhard", lab_mean=tuple(np.median(a, axis=0).tolist()),
                               lab_std=tuple(np.median(b, axis=0).tolist()), n_fit=int(ok.sum()))
    stains = np.median(a, axis=0)
    stains /= np.linalg.norm(stains, axis=0, keepdims=True)
    return StainNormaliser("macenko", stain_od=tuple(tuple(v) for v in stains.T.tolist()),
                           max_concentration=tuple(np.median(b, axis=0).tolist()), n_fit=int(ok.sum()))
