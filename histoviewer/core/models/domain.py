"""How far tissue lies from what a model learned: the domain profile and the slide verdict.

Every patch gets a *tissue descriptor*: the handcrafted features (``models.features``:
stain, nuclei, texture and colour statistics) without the local-binary-pattern histogram,
which follows JPEG artefacts and scanner sharpness more than tissue (benchmarks/bench_domain.py:
with it, real lymph-node tiles from other CAMELYON17 centres sat at the flagging limit). The
model's own pooled CNN features were tried first and rejected on the numbers: they flagged
four of the five centre tiles (stain shift) and not the skin slide.

A ``DomainProfile`` describes a model's training tissue as one Gaussian of those
descriptors: standardised (the profile's own mean and scale), then a Ledoit-Wolf shrunk
covariance, fitted on a sample of the training patches. The distance of a patch is its
Mahalanobis distance to that Gaussian (dimensionless).

Thresholds come from held-out in-domain patches (the validation part): a patch is *beyond*
the profile when its distance exceeds ``patch_threshold``, the ``patch_percentile``
percentile of the held-out distances (about 1 % of in-domain patches are beyond it). A
slide is *out of domain* when the share of its judged tissue patches beyond
``patch_threshold`` reaches ``slide_share_threshold`` (``DomainVerdict``); the slide rule
needs a shift of a large part of the tissue, not a few odd patches (folds, pen, fat).

Stored in the model file: ``domain.mean``, ``domain.scale`` ``(D,)`` and ``domain.precision``
``(D, D)`` arrays (split off before the network's strict load) plus
``ModelInfo.extra["domain"]`` (JSON: descriptor names, thresholds, how it was fitted).
Fitting uses scikit-learn; prediction is numpy. A model file without a profile, or with one
made for other descriptor features, gives ``DomainVerdict.not_assessed`` (never "in domain").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from histoviewer.core.errors import ModelError, ModelLoadError
from histoviewer.core.models.features import (
    FEATURE_NAMES,
    FEATURE_NAMES_WITHOUT_LBP,
    FEATURE_VERSION,
    extract_features_without_lbp,
)
from histoviewer.core.models.model_verify import (
    DOMAIN_PREFIX,  # a profile's arrays' names: the file format's
)

__all__ = [
    "DESCRIPTOR_NAMES",
    "DOMAIN_PREFIX",
    "DOMAIN_VERSION",
    "MIN_PATCHES_TO_JUDGE",
    "OUT_OF_DOMAIN_REASON",
    "SLIDE_SHARE_THRESHOLD",
    "DomainLimits",
    "DomainProfile",
    "DomainVerdict",
    "descriptor_of_features",
    "fit_domain_profile",
    "judge_slide",
    "split_domain_tensors",
    "tissue_descriptor",
]

log = logging.getLogger(__name__)

DOMAIN_VERSION = 1
EXTRA_KEY = "domain"
# Said wherever a result is shown for an out-of-domain slide (panel, CLI, reports, case view).
OUT_OF_DOMAIN_REASON = "AI result unreliable on this slide: tissue unlike the model's training data"
PATCH_PERCENTILE = 99.0
# Share of a slide's tissue patches beyond the per-patch threshold that makes it out of
# domain: most of the tissue. Chosen on benchmarks/bench_domain.py (docs/benchmarks.md) with
# the shipped models: held-out patches, phantoms and real lymph node from four of the five
# CAMELYON17 centres stay at or below 0.03, the fifth centre (a stain shift) reaches 0.29;
# skin (CMU-1) 0.80 and the synthetic boxes 1.0. 0.5 lies between; no separate held-out set
# of out-of-domain slides exists, so this margin is measured on the slides it was set on.
SLIDE_SHARE_THRESHOLD = 0.5
# The descriptor: the handcrafted features without the LBP histogram (module docstring).
DESCRIPTOR_NAMES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if not n.startswith("lbp_"))
_DESCRIPTOR_INDEX = np.array([FEATURE_NAMES.index(n) for n in DESCRIPTOR_NAMES])
if DESCRIPTOR_NAMES != FEATURE_NAMES_WITHOUT_LBP:  # tissue_descriptor relies on the same columns
    raise RuntimeError("the tissue descriptor's columns differ from extract_features_without_lbp's")
DESCRIPTOR_FEATURE = "tissue-descriptor"
# Fewer classified tissue patches than this (unless that is all the tissue) are too few to judge.
MIN_PATCHES_TO_JUDGE = 64


def descriptor_of_features(features: np.ndarray) -> np.ndarray:
    """The descriptor ``(N, D)`` from ``extract_features``' ``(N, F)`` output."""
    return np.asarray(features, np.float64)[:, _DESCRIPTOR_INDEX]


def tissue_descriptor(patches: np.ndarray, mpp: float) -> np.ndarray:
    """The descriptor ``(N, D)`` of ``(N, P, P, 3)`` uint8 patches at ``mpp`` um/px.

    Computed without the LBP histogram it drops (bit-identical to ``descriptor_of_features``
    of ``extract_features``; tests/core/test_features_fast.py checks it).
    """
    return np.asarray(extract_features_without_lbp(patches, mpp), np.float64)


@dataclass(frozen=True)
class DomainLimits:
    """The two thresholds a verdict needs (``DomainProfile``'s, also readable from a model's
    header alone: ``of_info``), so a front end holding only ``ModelInfo`` can judge a grid."""

    patch_threshold: float
    slide_share_threshold: float = SLIDE_SHARE_THRESHOLD

    @classmethod
    def of_info(cls, info: Any) -> DomainLimits | None:
        """From ``ModelInfo.extra["domain"]``; None when the model has no (valid) profile."""
        meta = (getattr(info, "extra", None) or {}).get(EXTRA_KEY)
        if not meta or not DomainProfile.matches_descriptor(meta):
            return None
        try:
            return cls(float(meta["patch_threshold"]),
                       float(meta.get("slide_share_threshold", SLIDE_SHARE_THRESHOLD)))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class DomainProfile:
    """A Gaussian of the training tissue's features (see the module docstring).

    ``feature``: which features (``DESCRIPTOR_FEATURE``: the tissue descriptor);
    ``patch_threshold``: Mahalanobis distance beyond which a patch is unlike the training
    tissue; ``slide_share_threshold``: share of a slide's patches beyond it that makes the
    slide out of domain; ``heldout_share_beyond``: that share on the held-out patches.
    """

    mean: np.ndarray  # (D,) float64, of the raw descriptors
    scale: np.ndarray  # (D,) float64: z = (x - mean) / scale
    precision: np.ndarray  # (D, D) float64, inverse of the shrunk covariance of z
    feature: str
    patch_threshold: float
    patch_percentile: float = PATCH_PERCENTILE
    slide_share_threshold: float = SLIDE_SHARE_THRESHOLD
    n_fit: int = 0
    n_heldout: int = 0
    shrinkage: float = 0.0
    heldout_median: float = 0.0
    heldout_share_beyond: float = 0.0
    data: str = ""

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, np.float64)
        scale = np.asarray(self.scale, np.float64)
        prec = np.asarray(self.precision, np.float64)
        if mean.ndim != 1 or scale.shape != mean.shape or prec.shape != (mean.size, mean.size):
            raise ModelError(f"domain profile: mean {mean.shape}, scale {scale.shape} and precision "
                             f"{prec.shape} do not fit")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(prec)) and np.all(np.isfinite(scale))):
            raise ModelError("domain profile holds NaN or infinity")
        if np.any(scale <= 0):
            raise ModelError("domain profile: scales must be positive")
        object.__setattr__(self, "scale", scale)
        if not (np.isfinite(self.patch_threshold) and self.patch_threshold > 0):
            raise ModelError(f"domain profile: bad patch threshold {self.patch_threshold!r}")
        if not 0.0 < self.slide_share_threshold <= 1.0:
            raise ModelError(f"domain profile: bad slide share threshold {self.slide_share_threshold!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "precision", prec)

    @property
    def dim(self) -> int:
        return int(self.mean.size)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance, float32 ``(N,)``, of ``(N, D)`` features (row by row, so a
        patch's distance does not depend on its batch)."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ModelError(f"domain profile: expected features (N, {self.dim}), got {x.shape}")
        d = (x - self.mean) / self.scale
        sq = np.einsum("ij,jk,ik->i", d, self.precision, d)
        return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)

    def patch_distance(self, patches: np.ndarray, mpp: float) -> np.ndarray:
        """``distance`` of the tissue descriptors of ``(N, P, P, 3)`` uint8 patches (as the
        network reads them: stain-normalised) at ``mpp`` um/px."""
        return self.distance(tissue_descriptor(patches, mpp))

    # -- model file ------------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        return {f"{DOMAIN_PREFIX}mean": self.mean.astype(np.float64),
                f"{DOMAIN_PREFIX}scale": self.scale.astype(np.float64),
                f"{DOMAIN_PREFIX}precision": self.precision.astype(np.float64)}

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("mean", "scale", "precision")}
        return {"version": DOMAIN_VERSION, "dim": self.dim, "feature_version": FEATURE_VERSION,
                "feature_names": list(DESCRIPTOR_NAMES) if self.feature == DESCRIPTOR_FEATURE else None, **out}

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> DomainProfile:
        """From ``ModelInfo.extra["domain"]`` and the ``domain.*`` arrays; ModelLoadError when
        they do not fit (a damaged or newer file)."""
        try:
            if int(meta.get("version", 0)) != DOMAIN_VERSION:
                raise ModelLoadError(f"domain profile version {meta.get('version')!r} is not {DOMAIN_VERSION}")
            return cls(mean=np.asarray(tensors[f"{DOMAIN_PREFIX}mean"]),
                       scale=np.asarray(tensors[f"{DOMAIN_PREFIX}scale"]),
                       precision=np.asarray(tensors[f"{DOMAIN_PREFIX}precision"]),
                       feature=str(meta["feature"]), patch_threshold=float(meta["patch_threshold"]),
                       patch_percentile=float(meta.get("patch_percentile", PATCH_PERCENTILE)),
                       slide_share_threshold=float(meta.get("slide_share_threshold", SLIDE_SHARE_THRESHOLD)),
                       n_fit=int(meta.get("n_fit", 0)), n_heldout=int(meta.get("n_heldout", 0)),
                       shrinkage=float(meta.get("shrinkage", 0.0)),
                       heldout_median=float(meta.get("heldout_median", 0.0)),
                       heldout_share_beyond=float(meta.get("heldout_share_beyond", 0.0)),
                       data=str(meta.get("data", "")))
        except (KeyError, TypeError, ValueError, ModelError) as exc:
            raise ModelLoadError(f"the model's domain profile is invalid: {exc}") from exc

    def with_slide_share_threshold(self, share: float) -> DomainProfile:
        return DomainProfile(**{**self.__dict__, "slide_share_threshold": float(share)})

    @staticmethod
    def matches_descriptor(meta: Mapping[str, Any]) -> bool:
        """True when a stored profile was made for this version's descriptor (else its
        distances would be silently wrong: the profile is dropped and nothing is judged)."""
        return (meta.get("feature") == DESCRIPTOR_FEATURE and meta.get("feature_version") == FEATURE_VERSION
                and tuple(meta.get("feature_names") or ()) == DESCRIPTOR_NAMES)


def split_domain_tensors(
    tensors: Mapping[str, np.ndarray], extra: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], DomainProfile | None]:
    """(the network's own arrays, the profile or None) from a model file's arrays and
    ``ModelInfo.extra``: ``domain.*`` arrays never reach a strict ``load_state_dict``."""
    own = {k: v for k, v in tensors.items() if not k.startswith(DOMAIN_PREFIX)}
    mine = {k: v for k, v in tensors.items() if k.startswith(DOMAIN_PREFIX)}
    meta = extra.get(EXTRA_KEY)
    if meta is None and not mine:
        return own, None
    if meta is None or not mine:
        raise ModelLoadError("the model's domain profile is incomplete (arrays or description missing)")
    if not DomainProfile.matches_descriptor(meta):
        log.warning("the model's domain profile was made for other descriptor features; slides are not "
                    "judged against it (add a new profile)")
        return own, None
    return own, DomainProfile.from_parts(meta, mine)


def fit_domain_profile(
    fit_features: np.ndarray,
    heldout_features: np.ndarray,
    *,
    feature: str = DESCRIPTOR_FEATURE,
    data: str = "",
    patch_percentile: float = PATCH_PERCENTILE,
    slide_share_threshold: float = SLIDE_SHARE_THRESHOLD,
) -> DomainProfile:
    """Fit the Gaussian on ``fit_features`` (N, D) (training patches' descriptors) and the
    per-patch threshold on ``heldout_features`` (M, D) (validation patches, never fitted on)."""
    # Lazy: scikit-learn takes ~0.5 s to import and only fitting needs it.
    from sklearn.covariance import LedoitWolf

    x = np.asarray(fit_features, np.float64)
    h = np.asarray(heldout_features, np.float64)
    if x.ndim != 2 or h.ndim != 2 or x.shape[1] != h.shape[1]:
        raise ModelError(f"domain profile: features {x.shape} and held-out {h.shape} do not fit")
    if len(x) < 10 or len(h) < 10:
        raise ModelError(f"domain profile needs at least 10 fitting and 10 held-out patches, "
                         f"got {len(x)} and {len(h)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(h))):
        raise ModelError("domain profile: features contain NaN or infinity")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    # a feature constant over the training patches carries nothing; scale 1 keeps it harmless
    scale = np.where(scale > 1e-12 * np.maximum(np.abs(mean), 1.0), scale, 1.0)
    lw = LedoitWolf(assume_centered=True).fit((x - mean) / scale)
    prec = np.linalg.pinv(lw.covariance_, hermitian=True)
    prec = 0.5 * (prec + prec.T)
    draft = DomainProfile(mean=mean, scale=scale, precision=prec, feature=feature, patch_threshold=1.0)
    d_held = draft.distance(h).astype(np.float64)
    threshold = float(np.percentile(d_held, patch_percentile))
    return DomainProfile(
        mean=mean, scale=scale, precision=prec, feature=feature, patch_threshold=threshold,
        patch_percentile=float(patch_percentile), slide_share_threshold=float(slide_share_threshold),
        n_fit=len(x), n_heldout=len(h), shrinkage=float(lw.shrinkage_),
        heldout_median=float(np.median(d_held)),
        heldout_share_beyond=float(np.mean(d_held > threshold)), data=data)


@dataclass(frozen=True)
class DomainVerdict:
    """Whether a slide's tissue lies inside what the model learned.

    ``assessed``: False when the model has no domain profile, or too few patches were
    classified to judge (``reason`` says which); then ``out_of_domain`` is False and
    nothing may be read as "in domain". ``score``: the share (0..1) of the classified
    tissue patches whose distance exceeds ``patch_threshold``; ``out_of_domain`` when it
    reaches ``share_threshold``. ``median_distance``: of those patches (Mahalanobis).
    """

    assessed: bool
    out_of_domain: bool = False
    score: float | None = None
    patch_threshold: float | None = None
    share_threshold: float | None = None
    patches: int = 0
    median_distance: float | None = None
    reason: str = ""

    @classmethod
    def not_assessed(cls, reason: str = "the model has no domain profile") -> DomainVerdict:
        return cls(assessed=False, reason=reason)

    @property
    def status(self) -> str:
        """"out of domain", "in domain" or "not assessed" (for tables and the CLI)."""
        if not self.assessed:
            return "not assessed"
        return "out of domain" if self.out_of_domain else "in domain"

    def evidence(self) -> str:
        """What the verdict rests on: "52 % of 81 judged tissue patches unlike it, limit 25 %"."""
        if not self.assessed:
            return f"not assessed ({self.reason})"
        return (f"{100 * (self.score or 0):.0f} % of {self.patches} judged tissue patches unlike it, "
                f"limit {100 * (self.share_threshold or 0):.0f} %")

    def describe(self) -> str:
        """One line for the CLI and reports."""
        if not self.assessed:
            return f"Tissue vs the model's training data: {self.evidence()}"
        if self.out_of_domain:
            return f"{OUT_OF_DOMAIN_REASON} ({self.evidence()})"
        return f"Tissue like the model's training data ({self.evidence()})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DomainVerdict:
        """From ``to_dict``; None (a summary written before profiles existed) is not assessed."""
        if not data:
            return cls.not_assessed("the analysis predates domain checks")

        def opt(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(assessed=bool(data.get("assessed", False)), out_of_domain=bool(data.get("out_of_domain", False)),
                   score=opt("score"), patch_threshold=opt("patch_threshold"),
                   share_threshold=opt("share_threshold"), patches=int(data.get("patches", 0)),
                   median_distance=opt("median_distance"), reason=str(data.get("reason", "")))


def judge_slide(distances: np.ndarray, profile: DomainProfile | DomainLimits | None, *, complete: bool = False,
                min_patches: int = MIN_PATCHES_TO_JUDGE) -> DomainVerdict:
    """The verdict on a slide from the distances of its judged tissue patches (NaN entries:
    not classified, or not in the judged sample, are ignored). ``complete``: all the
    slide's tissue is classified, so a small slide is judged even below ``min_patches``."""
    if profile is None:
        return DomainVerdict.not_assessed()
    d = np.asarray(distances, np.float64).reshape(-1)
    d = d[np.isfinite(d)]
    enough = len(d) >= min_patches or (complete and len(d) > 0)
    if not enough:
        return DomainVerdict(assessed=False, patches=len(d), patch_threshold=profile.patch_threshold,
                             share_threshold=profile.slide_share_threshold,
                             reason=f"{len(d)} tissue patches judged so far, too few")
    share = float(np.mean(d > profile.patch_threshold))
    return DomainVerdict(assessed=True, out_of_domain=share >= profile.slide_share_threshold,
                         score=round(share, 6), patch_threshold=round(profile.patch_threshold, 6),
                         share_threshold=profile.slide_share_threshold, patches=len(d),
                         median_distance=round(float(np.median(d)), 6))
