"""The one interface every patch classifier implements.

A classifier takes a batch of square RGB patches **already at its own scale**
(``InputSpec.patch_px`` pixels at ``InputSpec.mpp`` micrometres per pixel; see
``histoviewer.core.input_spec``) and returns the tumour probability of each. Resampling
from a slide or a patch file to that scale is the caller's job (``histoviewer.core.patches``), so a model never guesses a scale.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from histoviewer.core.errors import ModelError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.stain_norm import StainNormaliser

__all__ = [
    "DEMO_WARNING",
    "RESEARCH_CAVEAT",
    "VALID_AUC",
    "ModelInfo",
    "OperatingPoint",
    "PatchClassifier",
    "PatchScores",
    "check_patch_batch",
]

# Shown in GUI-made PDFs, legends and provenance too, so it names no command: the CLI appends
# its train command where it prints this (cli/hints.py).
DEMO_WARNING = (
    "demonstration model trained on synthetic phantom tissue - not for diagnosis; "
    "choose or train a model on real data (e.g. PCam patches) to analyse real slides"
)

# What every model that is not a demonstration model still is: the end of its caveat.
RESEARCH_CAVEAT = "not validated for clinical use"

# The ``ModelInfo.metrics`` key (file format) of the validation AUC that training records.
VALID_AUC = "valid_auc"

_COUNT_LOCK = threading.Lock()  # guards ``stain_unnormalised`` (see ``parallel_calls``)


@dataclass(frozen=True)
class OperatingPoint:
    """The probability threshold a model's results are read at, chosen on its validation
    part for a stated target, with what it achieved there.

    ``target``: the rule in words ("sensitivity >= 0.95"); ``sensitivity``/``specificity``:
    measured on ``n_valid`` validation patches (``data`` names them) at ``threshold``.
    """

    threshold: float
    target: str
    sensitivity: float
    specificity: float
    n_valid: int
    data: str = "validation"

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) < 1.0:
            raise ModelError(f"an operating point threshold must lie in (0, 1), got {self.threshold!r}")

    def describe(self) -> str:
        """"threshold 0.37: sensitivity 95 %, specificity 88 % on validation"."""
        return (f"threshold {self.threshold:.2f}: sensitivity {100 * self.sensitivity:.0f} %, "
                f"specificity {100 * self.specificity:.0f} % on {self.data}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatingPoint:
        return cls(threshold=float(data["threshold"]), target=str(data.get("target", "")),
                   sensitivity=float(data["sensitivity"]), specificity=float(data["specificity"]),
                   n_valid=int(data.get("n_valid", 0)), data=str(data.get("data", "validation")))


@dataclass(frozen=True)
class ModelInfo:
    """Everything a model file says about its model (stored as JSON in its header).

    ``content_hash`` is the SHA-256 of the model file's bytes (empty for an unsaved model);
    ``demonstration`` is true for models trained on synthetic phantom tissue only.
    ``caveat`` says in one sentence what the model was trained on and that it is not for
    diagnosis ("research model trained on 6,657 real PatchCamelyon patches; not validated
    for clinical use"); every front end shows it beside the model's name (see ``caution``).
    ``operating_point``: the threshold results are read at, None for a model file that
    states none (results then use ``DEFAULT_THRESHOLD``).
    """

    name: str
    kind: str  # "cnn" or "handcrafted"
    architecture: str
    input: InputSpec = field(default_factory=InputSpec)
    training_data: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    software_version: str = ""
    created: str = ""
    demonstration: bool = False
    content_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    caveat: str = ""
    operating_point: OperatingPoint | None = None

    @property
    def caution(self) -> str:
        """What to say beside this model's name wherever it is shown: the demonstration
        warning, else the model's caveat, else that it is not validated for clinical use."""
        if self.demonstration:
            return DEMO_WARNING
        return self.caveat or f"research model; {RESEARCH_CAVEAT}"

    def display_name(self) -> str:
        """The name as every front end shows it, with the demonstration warning when due."""
        label = f"{self.name} ({self.kind}, {self.architecture})"
        if self.demonstration:
            return f"{label} - DEMONSTRATION MODEL, synthetic training data, not for diagnosis"
        return label

    @property
    def valid_auc(self) -> float | None:
        """The AUC on the validation patches held out in training (``metrics["valid_auc"]``),
        or None when the file records none (a handcrafted model records ``train_auc`` only)."""
        value = self.metrics.get(VALID_AUC)
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input"] = self.input.to_dict()
        out["operating_point"] = None if self.operating_point is None else self.operating_point.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        nested = ("input", "operating_point")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k not in nested}
        point = data.get("operating_point")
        return cls(input=InputSpec.from_dict(data.get("input") or {}),
                   operating_point=None if point is None else OperatingPoint.from_dict(point), **known)


def check_patch_batch(patches: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Return ``patches`` as a C-contiguous ``(N, P, P, 3)`` uint8 array or raise ModelError."""
    arr = np.asarray(patches)
    p = spec.patch_px
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1:] != (p, p, 3):
        raise ModelError(
            f"expected patches of shape (N, {p}, {p}, 3) at {spec.mpp} um/px, got {arr.shape}"
        )
    if arr.dtype != np.uint8:
        raise ModelError(f"expected uint8 RGB patches, got {arr.dtype}")
    return np.ascontiguousarray(arr)


@dataclass(frozen=True)
class PatchScores:
    """What a classifier says about a batch of N patches.

    ``probability``: float32 ``(N,)`` calibrated tumour probability. ``domain_distance``:
    float32 ``(N,)``, how far each patch lies from the model's training tissue (larger is
    further; see ``histoviewer.core.models.domain``), None when the model has no domain
    profile.
    """

    probability: np.ndarray
    domain_distance: np.ndarray | None = None


class PatchClassifier(ABC):
    """A tumour/normal classifier of square RGB patches at a fixed scale."""

    info: ModelInfo
    # The model's ``domain.DomainProfile`` (None: the file has none, nothing is judged).
    domain: Any = None
    # Patches the model's stain normaliser could not read and left as they were (background,
    # one colour), counted over this classifier's life.
    stain_unnormalised: int = 0
    # True when ``classify``/``predict_proba`` may run on several threads at once (the
    # headless pipeline then runs a CPU model on a few threads: ``inference.pipeline``).
    parallel_calls: bool = False

    @property
    def input(self) -> InputSpec:
        return self.info.input

    def prepare_patches(self, patches: np.ndarray) -> np.ndarray:
        """Checked ``(N, P, P, 3)`` uint8 patches as the model reads them: stain-normalised when
        its file records a normaliser (``ModelInfo.extra["stain_normalisation"]``). Every
        ``predict_proba`` starts here, so evaluation, analysis, exports and the overlay all
        see what training saw."""
        arr = check_patch_batch(patches, self.input)
        normaliser = self._stain_normaliser()
        if normaliser is None or len(arr) == 0:
            return arr
        result = normaliser.apply(arr)
        with _COUNT_LOCK:  # model threads may prepare batches at once (parallel_calls)
            self.stain_unnormalised += result.n_unnormalised
        return result.patches

    def _stain_normaliser(self) -> StainNormaliser | None:
        # Parsed once per record: ``info`` may be replaced (training does), so key on it.
        record = self.info.extra.get("stain_normalisation")
        cached = getattr(self, "_stain_cache", None)
        if cached is None or cached[0] is not record:
            cached = (record, StainNormaliser.from_extra(self.info.extra))
            self._stain_cache = cached
        return cached[1]

    @abstractmethod
    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        """Tumour probability, float32 in [0, 1], for each of ``(N, P, P, 3)`` uint8 patches.

        Thread-safety: one thread at a time per classifier (the inference worker owns it).
        """

    def classify(self, patches: np.ndarray, domain_mask: np.ndarray | None = None) -> PatchScores:
        """Probability and (when the model has a domain profile) domain distance of each
        patch, in one pass. ``domain_mask`` (N,) bool: the patches whose distance is wanted
        (a model may compute it for others too when it costs nothing; the rest are NaN);
        None: all. The default has no domain profile."""
        return PatchScores(np.asarray(self.predict_proba(patches), np.float32))

    def tensors(self) -> dict[str, np.ndarray]:
        """The model's parameters as named arrays, for the model file (no code, no pickle)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release device memory; the default does nothing."""
