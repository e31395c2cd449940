"""Test-time augmentation (TTA): a patch model's answer under the 8 dihedral views of a patch.

Tissue on a slide has no "up": a patch turned by 90 degrees or mirrored is the same tissue,
and a trustworthy decision does not change with it. We run each patch through the model's
ordinary predict path (``PatchClassifier.predict_proba``: stain normalisation and calibration
included) in all 8 views of the dihedral group D4 (4 rotations x optional mirror) and report
how far the 8 calibrated probabilities disagree.

Why this measure (Ayhan & Berens 2018; Wang et al. 2019, "Aleatoric uncertainty estimation
with test-time augmentation"): the spread of a model's outputs over label-preserving
transformations is a cheap, model-agnostic estimate of predictive uncertainty that needs no
retraining, works for every model we ship (CNNs and the handcrafted model) and is computed
from calibrated probabilities, so its unit is the same as the map's. Two numbers are given:

- ``uncertainty``: the standard deviation of the 8 calibrated probabilities (population,
  ``ddof=0``), in probability units, from 0 (every view agrees exactly) to 0.5 (half the views
  say 0, half say 1). Continuous, so it ranks patches; the uncertainty map shows it.
- ``disagreement``: the share of the 8 views whose decision at the operating threshold is
  the other side of the decision of the mean probability (0, 1/8, ..., 7/8): how many
  orientations would have flipped the call. 0 means every view gives the same call.

A patch that is itself unchanged by rotations and mirrors gives identical views, hence zero
uncertainty for any model. The cost is 8 model passes per patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histoviewer.core.analysis.lesions import DEFAULT_THRESHOLD
from histoviewer.core.errors import ModelError
from histoviewer.core.models.classifier import PatchClassifier, check_patch_batch

__all__ = [
    "N_VIEWS",
    "TTA_CHUNK_PATCHES",
    "VIEW_NAMES",
    "TTAResult",
    "dihedral_views",
    "model_threshold",
    "tta_predict",
]

# View v (0..7) = rotation by 90 * (v % 4) degrees counter-clockwise, then a left-right
# mirror when v >= 4. View 0 is the patch as it is (the plain map's answer).
VIEW_NAMES = (
    "as is",
    "rotated 90",
    "rotated 180",
    "rotated 270",
    "mirrored",
    "mirrored, rotated 90",
    "mirrored, rotated 180",
    "mirrored, rotated 270",
)
N_VIEWS = len(VIEW_NAMES)
# Patches per model call (each call then classifies 8x as many views): bounds the memory of
# the view batch (256 PCam patches: 8 x 256 x 27 KB = 57 MB) while keeping batches large.
TTA_CHUNK_PATCHES = 256


@dataclass(frozen=True)
class TTAResult:
    """A model's answers for N patches under the 8 dihedral views.

    ``view_probability``: float32 ``(8, N)``, calibrated tumour probability of each view
    (row v is view ``VIEW_NAMES[v]``; row 0 is the plain, un-augmented answer).
    ``mean_probability``: float32 ``(N,)``, the mean over the 8 views.
    ``uncertainty``: float32 ``(N,)``, the standard deviation over the 8 views (probability
    units, 0..0.5; see the module docstring). ``disagreement``: float32 ``(N,)``, the share of
    views whose call at ``threshold`` differs from the mean's call (0..7/8).
    ``threshold``: the operating threshold the calls were made at.
    """

    view_probability: np.ndarray
    mean_probability: np.ndarray
    uncertainty: np.ndarray
    disagreement: np.ndarray
    threshold: float

    @property
    def n_patches(self) -> int:
        return int(self.view_probability.shape[1])

    @property
    def plain_probability(self) -> np.ndarray:
        """The un-augmented answer (view 0), what the plain probability map holds."""
        return self.view_probability[0]

    @classmethod
    def from_view_probability(
        cls, view_probability: np.ndarray, threshold: float
    ) -> TTAResult:
        """The result of ``(8, N)`` view probabilities already computed (e.g. in a batch
        shared with other work)."""
        views = np.asarray(view_probability, np.float32)
        if views.ndim != 2 or views.shape[0] != N_VIEWS:
            raise ModelError(
                f"expected ({N_VIEWS}, N) view probabilities, got shape {views.shape}"
            )
        mean = views.mean(axis=0, dtype=np.float64)
        call = mean >= threshold
        disagree = ((views >= threshold) != call[None, :]).mean(axis=0)
        return cls(
            view_probability=views,
            mean_probability=mean.astype(np.float32),
            uncertainty=views.std(axis=0, dtype=np.float64).astype(np.float32),
            disagreement=disagree.astype(np.float32),
            threshold=float(threshold),
        )


def dihedral_views(patches: np.ndarray) -> np.ndarray:
    """The 8 views of ``(N, P, P, 3)`` patches as one ``(8, N, P, P, 3)`` array (order of
    ``VIEW_NAMES``; each view C-contiguous)."""
    arr = np.asarray(patches)
    if arr.ndim != 4 or arr.shape[1] != arr.shape[2]:
        raise ModelError(
            f"expected square patches of shape (N, P, P, C), got {arr.shape}"
        )
    out = np.empty((N_VIEWS, *arr.shape), arr.dtype)
    for v in range(N_VIEWS):
        view = (
            arr[:, :, ::-1] if v >= 4 else arr
        )  # axis 2: columns, a left-right mirror
        out[v] = np.rot90(view, v % 4, axes=(1, 2))
    return out


def model_threshold(classifier: PatchClassifier) -> float:
    """The model's operating threshold (its file's operating point, else ``DEFAULT_THRESHOLD``)."""
    point = classifier.info.operating_point
    return DEFAULT_THRESHOLD if point is None else float(point.threshold)


def tta_predict(
    classifier: PatchClassifier,
    patches: np.ndarray,
    threshold: float | None = None,
    chunk_patches: int = TTA_CHUNK_PATCHES,
) -> TTAResult:
    """Calibrated probabilities of ``(N, P, P, 3)`` uint8 patches (at the model's scale) in all
    8 dihedral views, through ``classifier.predict_proba``; ``threshold``: the operating
    threshold for ``disagreement`` (None: ``model_threshold(classifier)``). The views of
    ``chunk_patches`` patches go to the model in one call (8 x as many patches)."""
    arr = check_patch_batch(patches, classifier.input)
    if chunk_patches < 1:
        raise ModelError(f"chunk_patches must be at least 1, got {chunk_patches}")
    thr = model_threshold(classifier) if threshold is None else float(threshold)
    n = len(arr)
    views = np.empty((N_VIEWS, n), np.float32)
    for start in range(0, n, chunk_patches):
        chunk = dihedral_views(arr[start : start + chunk_patches])
        m = chunk.shape[1]
        prob = np.asarray(
            classifier.predict_proba(chunk.reshape(N_VIEWS * m, *chunk.shape[2:])),
            np.float32,
        )
        if prob.shape != (N_VIEWS * m,):
            raise ModelError(
                f"model {classifier.info.name!r} returned {prob.shape} probabilities "
                f"for {N_VIEWS * m} patch views"
            )
        views[:, start : start + m] = prob.reshape(N_VIEWS, m)
    return TTAResult.from_view_probability(views, thr)
