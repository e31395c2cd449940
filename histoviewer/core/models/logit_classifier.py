"""What the CNN engines share once a network has given one tumour logit a patch.

``cnn.CnnClassifier`` (torch) and ``cnn_ort.OrtCnnClassifier`` (ONNX Runtime) differ only in
how they run the network on prepared patches (``_logits_of_prepared``). Calibration, the
non-finite check and the domain distances live here once, so the two engines cannot drift
apart in what they report for the same patches.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from histoviewer.core.errors import ModelError
from histoviewer.core.models.calibration import CALIBRATION_KEY, calibrated_probability
from histoviewer.core.models.classifier import PatchClassifier, PatchScores

__all__ = ["LogitClassifier", "checked_logits", "masked_domain_distances"]


def checked_logits(logits: np.ndarray, model_name: str) -> np.ndarray:
    """``logits`` unchanged, or ``ModelError`` naming the model when any is NaN or infinite."""
    if not np.all(np.isfinite(logits)):
        raise ModelError(f"model {model_name!r} produced non-finite outputs")
    return logits


def masked_domain_distances(profile: Any, prepared: np.ndarray, domain_mask: np.ndarray | None,
                            mpp: float) -> np.ndarray:
    """``profile``'s distance of the ``domain_mask`` patches of ``prepared`` (stain-normalised,
    as the network reads them and the profile was fitted), NaN for the others."""
    distance = np.full(len(prepared), np.nan, np.float32)
    pick = np.arange(len(prepared)) if domain_mask is None else np.flatnonzero(domain_mask)
    if pick.size:
        distance[pick] = profile.patch_distance(prepared[pick], mpp)
    return distance


class LogitClassifier(PatchClassifier):
    """A patch classifier whose network gives one tumour logit a patch, read through the
    model file's calibration (``ModelInfo.extra["calibration"]``)."""

    @abstractmethod
    def _logits_of_prepared(self, arr: np.ndarray) -> np.ndarray:
        """Float32 ``(N,)`` logits of patches already through ``prepare_patches``."""

    def logits(self, patches: np.ndarray) -> np.ndarray:
        """Raw tumour logits (before calibration) of ``(N, P, P, 3)`` uint8 patches."""
        return self._logits_of_prepared(self.prepare_patches(patches))

    def _probability(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(calibrated_probability(logits, self.info.extra.get(CALIBRATION_KEY)), np.float32)

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        """Calibrated tumour probability (the model file's calibration applied to the logits)."""
        return self._probability(self.logits(patches))

    def classify(self, patches: np.ndarray, domain_mask: np.ndarray | None = None) -> PatchScores:
        """Probability of every patch; domain distance (NaN elsewhere) of the patches in
        ``domain_mask`` (all when None): the descriptor costs ~1.5-5 ms a patch, so whole-slide
        callers judge a spread sample (``PredictionGrid.domain_sample``)."""
        arr = self.prepare_patches(patches)  # once: the network and the descriptor read the same
        prob = self._probability(self._logits_of_prepared(arr))
        if self.domain is None:
            return PatchScores(prob)
        return PatchScores(prob, self.domain_distances(arr, domain_mask))

    def domain_distances(self, prepared: np.ndarray, domain_mask: np.ndarray | None) -> np.ndarray:
        """Domain distance of the ``domain_mask`` patches of ``prepared`` (NaN elsewhere)."""
        return masked_domain_distances(self.domain, prepared, domain_mask, self.info.input.mpp)
