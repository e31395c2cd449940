"""Why the handcrafted model called a patch what it did: each feature's term of its logit.

The handcrafted model is additive (``models.handcrafted``): its raw log-odds are
``sum_f c_f(z_f) + intercept`` with ``z_f`` the standardised feature and ``c_f`` a piecewise
linear function (coefficient x standardised feature, plus hinge terms). So the terms are the
exact explanation, not an approximation: they add up to the logit.

They are given in **calibrated** log-odds, the units of the probability every front end shows:
temperature (``z / T``) and Platt (``a z + b``) calibrations are linear in the logit, so each
term is scaled by ``1 / T`` or ``a`` and the offset ``b`` joins the intercept; then
``sum(contribution) + intercept == logit(P)``. An isotonic calibration is not linear; the
terms then stay in raw log-odds (``units`` says so) and still add up to the raw logit.

Features are grouped into what a pathologist looks at (``FEATURE_GROUPS``: nuclear size,
cellularity, nuclear staining...); a group's share is the sum of its features' terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histoviewer.core.errors import ModelError
from histoviewer.core.models.calibration import CALIBRATION_KEY, calibrated_probability
from histoviewer.core.models.features import FEATURE_DESCRIPTIONS, FEATURE_NAMES
from histoviewer.core.models.handcrafted import HandcraftedClassifier

__all__ = [
    "CALIBRATED_UNITS",
    "FEATURE_GROUPS",
    "PatchContributions",
    "feature_contributions",
    "group_of",
]

CALIBRATED_UNITS = "calibrated log-odds"
RAW_UNITS = "raw log-odds (the model's isotonic calibration is not additive)"

# group -> feature-name prefixes (first match wins, in this order)
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "nuclear size and pleomorphism": (
        "nuclei_area_",
        "nuclei_large_fraction",
        "h_blob_energy_",
    ),
    "cellularity and crowding": (
        "nuclei_density",
        "nuclei_area_fraction",
        "nuclei_neighbour_",
    ),
    "nuclear shape": ("nuclei_eccentricity", "nuclei_contour_"),
    "nuclear staining and chromatin": (
        "nuclei_h_od_",
        "nuclei_chromatin",
        "nuclei_h_threshold",
    ),
    "haematoxylin (nuclear stain) amount": ("h_od_",),
    "eosin (cytoplasm and stroma)": ("e_od_",),
    "tissue texture": ("glcm_", "lbp_"),
    "glass, fat and debris": ("white_fraction", "black_fraction"),
    "colour and brightness": (
        "red_",
        "green_",
        "blue_",
        "saturation_",
        "value_",
        "mean_colour_",
    ),
}


def group_of(name: str) -> str:
    """The ``FEATURE_GROUPS`` group a feature belongs to."""
    for group, prefixes in FEATURE_GROUPS.items():
        if name.startswith(prefixes):
            return group
    raise ModelError(f"feature {name!r} belongs to no explanation group")


@dataclass(frozen=True)
class PatchContributions:
    """One patch's logit, term by term (see the module docstring).

    ``names``/``descriptions``: the features, in ``FEATURE_NAMES`` order; ``values``: the raw
    feature values; ``z``: standardised (0 = the training mean, 1 = one training SD);
    ``contribution``: each feature's term, in ``units``; ``intercept``: the constant term (in
    the same units); ``logit``: their sum; ``probability``: the calibrated P the model gives.
    """

    names: tuple[str, ...]
    descriptions: tuple[str, ...]
    values: np.ndarray
    z: np.ndarray
    contribution: np.ndarray
    intercept: float
    logit: float
    probability: float
    units: str

    def groups(self) -> list[tuple[str, float]]:
        """``(group, summed contribution)`` for every group, largest effect first."""
        sums: dict[str, float] = dict.fromkeys(FEATURE_GROUPS, 0.0)
        for name, c in zip(self.names, self.contribution.tolist(), strict=True):
            sums[group_of(name)] += c
        return sorted(sums.items(), key=lambda kv: -abs(kv[1]))

    def top(self, k: int = 8) -> list[tuple[str, str, float, float]]:
        """The ``k`` features with the largest terms: ``(name, description, z, contribution)``."""
        order = np.argsort(-np.abs(self.contribution), kind="stable")[:k]
        return [
            (
                self.names[i],
                self.descriptions[i],
                float(self.z[i]),
                float(self.contribution[i]),
            )
            for i in order
        ]


def _linear_calibration(calibration: dict | None) -> tuple[float, float] | None:
    """``(scale, offset)`` of a calibration linear in the logit; None for isotonic."""
    if not calibration or calibration.get("method") == "none":
        return 1.0, 0.0
    method = calibration.get("method")
    if method == "temperature":
        return 1.0 / float(calibration["temperature"]), 0.0
    if method == "platt":
        return float(calibration["a"]), float(calibration["b"])
    return None


def feature_contributions(
    classifier: HandcraftedClassifier, patches: np.ndarray
) -> list[PatchContributions]:
    """Every patch's feature terms, for ``(N, P, P, 3)`` uint8 patches at the model's scale
    (stain-normalised first when the model says so, as in prediction)."""
    if not isinstance(classifier, HandcraftedClassifier):
        raise ModelError(
            f"feature contributions need the handcrafted model; model "
            f"{classifier.info.name!r} is a {classifier.info.kind}"
        )
    features = classifier.features_of(patches)
    raw = classifier.contributions(features)
    z = classifier.embed_features(features)
    calibration = classifier.info.extra.get(CALIBRATION_KEY)
    prob = np.asarray(
        calibrated_probability(raw.sum(axis=1) + classifier.intercept, calibration),
        np.float64,
    )
    linear = _linear_calibration(calibration)
    scale, offset = linear if linear is not None else (1.0, 0.0)
    units = CALIBRATED_UNITS if linear is not None else RAW_UNITS
    descriptions = tuple(FEATURE_DESCRIPTIONS.get(n, n) for n in FEATURE_NAMES)
    out = []
    for i in range(len(features)):
        terms = raw[i] * scale
        intercept = classifier.intercept * scale + offset
        out.append(
            PatchContributions(
                names=FEATURE_NAMES,
                descriptions=descriptions,
                values=np.asarray(features[i], np.float64),
                z=z[i],
                contribution=terms,
                intercept=float(intercept),
                logit=float(terms.sum() + intercept),
                probability=float(prob[i]),
                units=units,
            )
        )
    return out
