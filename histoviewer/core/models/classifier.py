"""The one interface every patch classifier implements.

A classifier takes a batch of square RGB patches **already at its own scale**
(``InputSpec.patch_px`` pixels at ``InputSpec.mpp`` micrometres per pixel; see
``histoviewer.core.input_spec``) and returns the tumour probability of each. Resampling
from a slide or a patch file to that scale is the caller's job (``histoviewer.core.patches``), so a model never guesses a scale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from histoviewer.core.errors import ModelError
from histoviewer.core.input_spec import InputSpec

__all__ = [
    "DEMO_WARNING",
    "VALID_AUC",
    "ModelInfo",
    "PatchClassifier",
    "check_patch_batch",
]

# Shown in GUI-made PDFs, legends and provenance too, so it names no command: the CLI appends
# its train command where it prints this (cli/hints.py).
DEMO_WARNING = (
    "demonstration model trained on synthetic phantom tissue - not for diagnosis; "
    "choose or train a model on real data (e.g. PCam patches) to analyse real slides"
)

# The ``ModelInfo.metrics`` key (file format) of the validation AUC that training records.
VALID_AUC = "valid_auc"


@dataclass(frozen=True)
class ModelInfo:
    """Everything a model file says about its model (stored as JSON in its header).

    ``content_hash`` is the SHA-256 of the model file's bytes (empty for an unsaved model);
    ``demonstration`` is true for the default models trained on phantom tissue.
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
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "input"}
        return cls(input=InputSpec.from_dict(data.get("input") or {}), **known)


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


class PatchClassifier(ABC):
    """A tumour/normal classifier of square RGB patches at a fixed scale."""

    info: ModelInfo

    @property
    def input(self) -> InputSpec:
        return self.info.input

    @abstractmethod
    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        """Tumour probability, float32 in [0, 1], for each of ``(N, P, P, 3)`` uint8 patches.

        Thread-safety: one thread at a time per classifier (the inference worker owns it).
        """

    def tensors(self) -> dict[str, np.ndarray]:
        """The model's parameters as named arrays, for the model file (no code, no pickle)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release device memory; the default does nothing."""
