"""The screening model: a small CNN that looks at each patch of the 10x grid at 2.5x.

A screening model is an ordinary model file (``model_file``: safetensors, verified header,
content hash, calibration, operating point) of kind ``cnn`` and architecture ``screen-cnn``
whose patches are ``SCREEN_INPUT``: 24 px at 3.888 um/px, the *same field* (93.3 um) as a
PatchCamelyon patch at 10x, seen with 16x fewer pixels. So its training data are the patch
models' own data downsampled 4x (the Kaggle PatchCamelyon patches, phantom slides read at
2.5x), with the same labels (tumour in the central third), and on a slide it scores exactly
the cells of the full model's grid, read from a pyramid level 16x cheaper to decode.

Its ``extra["screening"]`` record marks it as a screen (a patch-model slot refuses it) and
states the safety margin. Its operating point is the screening threshold: the highest
threshold with validation sensitivity >= the stated target (0.99 by default), chosen after
calibration. A cell the screen scores below it, and that is farther than ``margin_patches``
cells from every cell at or above it, is *screened negative* (``inference.screening``).

Why per patch and not per 4 x 4 block: a 4 x 4 block at 2.5x is 96 px, but the only real
labelled patches we have are single PatchCamelyon fields (24 px at 2.5x); a block model
would have to be trained on mosaics that never occur on a slide. Scoring each 24 px field
costs about a twentieth of the full model per patch, and the margin restores the context.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.input_spec import PCAM_MPP_UM, PCAM_PATCH_PX, InputSpec
from histoviewer.core.models.classifier import ModelInfo, PatchClassifier
from histoviewer.core.models.model_file import load_model, read_model_info
from histoviewer.core.paths import bundled_resources_dir, user_models_dir

__all__ = [
    "DEFAULT_SCREEN_FILE",
    "DEFAULT_SCREEN_MARGIN",
    "DEFAULT_SCREEN_TARGET",
    "SCREENING_KEY",
    "SCREEN_ARCHITECTURE",
    "SCREEN_DOWNSAMPLE",
    "SCREEN_INPUT",
    "ScreenSettings",
    "mark_screening",
    "open_screen_model",
    "resolve_screen_model_path",
    "screen_settings",
]

# 10x (PatchCamelyon, 0.972 um/px) -> 2.5x: each side 4x coarser, 16x fewer pixels.
SCREEN_DOWNSAMPLE = 4
SCREEN_INPUT = InputSpec(
    patch_px=PCAM_PATCH_PX // SCREEN_DOWNSAMPLE, mpp=PCAM_MPP_UM * SCREEN_DOWNSAMPLE
)
SCREEN_ARCHITECTURE = "screen-cnn"
SCREENING_KEY = "screening"  # ModelInfo.extra key that makes a model file a screen
# Validation sensitivity the screening threshold is chosen for (patch level).
DEFAULT_SCREEN_TARGET = 0.99
# The safety margin: rings of 8-neighbours (93 um each) the full model classifies around every
# cell where it finds possible tumour (P >= half the lesion threshold), again and again until
# no new cell qualifies: a lesion's whole border and halo come from full-model values, so its
# outline and diameter are those of an exhaustive run, however little of it the screen flagged.
DEFAULT_SCREEN_MARGIN = 1
MAX_SCREEN_MARGIN = 8
DEFAULT_SCREEN_FILE = "screen-pcam.safetensors"
DEFAULT_SCREEN_NAME = "screen"


@dataclass(frozen=True)
class ScreenSettings:
    """How a screening model screens: ``threshold`` (calibrated probability; a cell at or
    above it is flagged), ``margin_patches`` (rings of neighbouring cells classified in full
    around each flagged cell), and what the threshold achieved on validation."""

    threshold: float
    margin_patches: int
    target: str
    sensitivity: float
    specificity: float
    n_valid: int
    data: str

    def describe(self) -> str:
        """ "threshold 0.03 (sensitivity >= 0.99: 99.1 % sensitivity, 41 % specificity on 1,427
        validation patches), margin 1 patch"."""
        return (
            f"threshold {self.threshold:.3g} ({self.target}: {100 * self.sensitivity:.1f} % sensitivity, "
            f"{100 * self.specificity:.0f} % specificity on {self.n_valid:,} {self.data} patches), "
            f"margin {self.margin_patches} patch{'es' if self.margin_patches != 1 else ''}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "margin_patches": self.margin_patches,
            "target": self.target,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "n_valid": self.n_valid,
            "data": self.data,
        }


def mark_screening(
    info: ModelInfo, margin_patches: int = DEFAULT_SCREEN_MARGIN
) -> ModelInfo:
    """``info`` stated as a screening model (before it is saved: the hash covers it)."""
    if not 0 <= int(margin_patches) <= MAX_SCREEN_MARGIN:
        raise ModelLoadError(
            f"a screening margin is 0..{MAX_SCREEN_MARGIN} patches, got {margin_patches}"
        )
    record = {
        "margin_patches": int(margin_patches),
        "downsample": SCREEN_DOWNSAMPLE,
        "field_um": round(info.input.field_um, 4),
    }
    return replace(info, extra={**info.extra, SCREENING_KEY: record})


def is_screening_model(info: ModelInfo) -> bool:
    return isinstance(info.extra.get(SCREENING_KEY), dict)


def screen_settings(
    info: ModelInfo, source: str | os.PathLike[str] = ""
) -> ScreenSettings:
    """The settings a screening model file states; ``ModelLoadError`` naming ``source`` for a
    file that is not a screen or states no threshold."""
    name = str(source or info.name)
    record = info.extra.get(SCREENING_KEY)
    if not isinstance(record, dict):
        raise ModelLoadError(
            f"{name}: not a screening model (its description has no "
            f"{SCREENING_KEY!r} record); train one with the screen kind"
        )
    point = info.operating_point
    if point is None:
        raise ModelLoadError(
            f"{name}: a screening model must state its screening threshold "
            "(an operating point chosen on validation)"
        )
    margin = record.get("margin_patches", DEFAULT_SCREEN_MARGIN)
    if (
        isinstance(margin, bool)
        or not isinstance(margin, int)
        or not 0 <= margin <= MAX_SCREEN_MARGIN
    ):
        raise ModelLoadError(
            f"{name}: screening margin must be a whole number 0..{MAX_SCREEN_MARGIN}, "
            f"got {margin!r}"
        )
    return ScreenSettings(
        threshold=float(point.threshold),
        margin_patches=margin,
        target=point.target,
        sensitivity=float(point.sensitivity),
        specificity=float(point.specificity),
        n_valid=int(point.n_valid),
        data=point.data,
    )


def check_screen_fits(screen: InputSpec, patch: InputSpec) -> None:
    """A screen scores the full model's cells: its patch must cover the same field."""
    if not math.isclose(screen.field_um, patch.field_um, rel_tol=1e-3):
        raise ModelLoadError(
            f"the screening model's patch covers {screen.field_um:.1f} um, the patch model's "
            f"{patch.field_um:.1f} um; a screen must see the same field as the model it screens for",
            setting="screen_model",
        )


def resolve_screen_model_path(spec: str | os.PathLike[str]) -> Path:
    """``screen`` -> the bundled screening model; an existing path -> itself; a bare name ->
    the user's models folder. ``ModelLoadError`` names what was tried."""
    text = str(spec)
    if text == DEFAULT_SCREEN_NAME:
        path = bundled_resources_dir() / "models" / DEFAULT_SCREEN_FILE
        if not path.exists():
            raise ModelLoadError(
                f"the default screening model is missing ({path}); rebuild it with "
                "scripts/train_default_models.sh",
                setting="screen_model",
            )
        return path
    path = Path(text).expanduser()
    if path.exists():
        return path
    for candidate in (
        user_models_dir() / text,
        user_models_dir() / (text + ".safetensors"),
    ):
        if path.parent == Path(".") and candidate.exists():
            return candidate
    raise ModelLoadError(
        f"screening model {text!r} not found (use 'screen' or a model file)",
        setting="screen_model",
    )


def read_screen_info(spec: str | os.PathLike[str]) -> tuple[ModelInfo, ScreenSettings]:
    """Header and settings of a screening model file, verified, without building it."""
    path = resolve_screen_model_path(spec)
    info = read_model_info(path)
    return info, screen_settings(info, path)


def open_screen_model(
    spec: str | os.PathLike[str], device: str = "auto"
) -> tuple[PatchClassifier, ScreenSettings]:
    """Load a screening model file (verified like every model file) and its settings."""
    path = resolve_screen_model_path(spec)
    model = load_model(path, device=device)
    try:
        return model, screen_settings(model.info, path)
    except ModelLoadError:
        model.close()
        raise
