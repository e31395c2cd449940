"""Which probability threshold a result is read at, and where it came from.

Lesions, node labels, pN and exports read a probability map at one threshold. The rule,
the same in every front end:

1. a threshold the user set explicitly;
2. else the model's operating point (``OperatingPoint``: chosen on the model's validation
   part for a stated target, stored in the model file);
3. else ``DEFAULT_THRESHOLD`` (0.5), for a model file that states no operating point.

The choice and its source travel in ``LesionParams`` (``threshold_source``), so that
``summary.json``, the legend, the panel and the reports can say which threshold was used and
why ("threshold 0.37: sensitivity 95 %, specificity 88 % on validation (model operating point)").
"""

from __future__ import annotations

from histoviewer.core.analysis.lesions import (
    DEFAULT_THRESHOLD, THRESHOLD_FROM_DEFAULT, THRESHOLD_FROM_MODEL, THRESHOLD_SET_BY_USER, LesionParams,
)
from histoviewer.core.models.classifier import OperatingPoint

__all__ = ["choose_lesion_params", "choose_threshold", "describe_threshold"]


def choose_threshold(user_threshold: float | None, operating_point: OperatingPoint | None) -> tuple[float, str]:
    """(threshold, source) by the rule of the module docstring; ``source`` is one of
    ``THRESHOLD_SET_BY_USER``, ``THRESHOLD_FROM_MODEL``, ``THRESHOLD_FROM_DEFAULT``."""
    if user_threshold is not None:
        return float(user_threshold), THRESHOLD_SET_BY_USER
    if operating_point is not None:
        return float(operating_point.threshold), THRESHOLD_FROM_MODEL
    return DEFAULT_THRESHOLD, THRESHOLD_FROM_DEFAULT


def choose_lesion_params(user_threshold: float | None, operating_point: OperatingPoint | None,
                         **others) -> LesionParams:
    """``LesionParams`` at the chosen threshold, its source recorded (``others``: the other
    ``LesionParams`` fields). ValueError for a user threshold outside (0, 1)."""
    threshold, source = choose_threshold(user_threshold, operating_point)
    return LesionParams(threshold=threshold, threshold_source=source, **others)


def describe_threshold(threshold: float, source: str, operating_point: OperatingPoint | None) -> str:
    """One line for a legend, a panel or a report: the threshold, what it achieved on
    validation when it is the model's operating point, and where it came from."""
    if source == THRESHOLD_FROM_MODEL and operating_point is not None \
            and abs(operating_point.threshold - threshold) < 5e-4:
        return f"{operating_point.describe()} (model operating point)"
    text = f"threshold {threshold:.2f}"
    if source == THRESHOLD_SET_BY_USER and operating_point is not None:
        return f"{text} (set by user; the model's operating point is {operating_point.threshold:.2f})"
    if source:
        return f"{text} ({source})"
    return text  # an analysis written before thresholds recorded their source
