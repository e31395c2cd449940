"""Lesion requests for phantom slides: ``"macro:3.0,micro:0.8,itc:0.15"``.

A request is a comma-separated list of ``kind:diameter_mm`` tokens, where ``kind`` is one of
``itc``, ``micro`` or ``macro`` and the diameter is the lesion's largest (maximum Feret)
diameter in millimetres. A bare number (``"0.8"``) takes its kind from the diameter. An
empty string asks for no lesions (a negative node).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from histoviewer.core.errors import PhantomSpecError
from histoviewer.core.staging_terms import (
    ITC_MAX_MM,
    MICRO_MAX_MM,
    SizeClass,
    classify_diameter_mm,
)

__all__ = ["DEFAULT_LESIONS", "MAX_LESIONS", "LesionSpec", "parse_lesion_specs"]

DEFAULT_LESIONS = "macro:3.0,micro:0.8,itc:0.15"
# Smallest lesion that still holds a few tumour cells; below it the "lesion" would be a
# fragment of one nucleus and its measured diameter meaningless.
MIN_DIAMETER_MM = 0.03
MAX_LESIONS = 100

_KINDS = {
    "itc": SizeClass.ITC,
    "micro": SizeClass.MICRO,
    "macro": SizeClass.MACRO,
}
_RANGES = {
    SizeClass.ITC: f"{MIN_DIAMETER_MM} to {ITC_MAX_MM} mm",
    SizeClass.MICRO: f"more than {ITC_MAX_MM} and at most {MICRO_MAX_MM} mm",
    SizeClass.MACRO: f"more than {MICRO_MAX_MM} mm",
}


@dataclass(frozen=True)
class LesionSpec:
    """One requested metastasis: its size class and largest diameter in millimetres."""

    kind: SizeClass
    diameter_mm: float

    def __post_init__(self) -> None:
        try:
            kind = SizeClass(self.kind)
        except ValueError:
            raise PhantomSpecError(
                f"unknown lesion kind {self.kind!r}: use itc, micro or macro"
            ) from None
        if kind is SizeClass.UNKNOWN:
            raise PhantomSpecError("a phantom lesion needs a size class: itc, micro or macro")
        object.__setattr__(self, "kind", kind)
        d = self.diameter_mm
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d):
            raise PhantomSpecError(f"lesion diameter must be a finite number of mm, got {d!r}")
        object.__setattr__(self, "diameter_mm", float(d))
        if d < MIN_DIAMETER_MM:
            raise PhantomSpecError(
                f"lesion diameter {d:g} mm is too small: the smallest phantom lesion is "
                f"{MIN_DIAMETER_MM} mm"
            )
        if classify_diameter_mm(d) is not kind:
            raise PhantomSpecError(
                f"a {kind.value} lesion of {d:g} mm is inconsistent: {kind.value} diameters are "
                f"{_RANGES[kind]} (a {d:g} mm lesion is {classify_diameter_mm(d).value})"
            )

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.diameter_mm:g}"


def _parse_token(token: str, index: int) -> LesionSpec:
    text = token.strip()
    where = f"lesion {index + 1} ({text!r})"
    if not text:
        raise PhantomSpecError(
            f"lesion {index + 1} is empty: remove the stray comma (example: {DEFAULT_LESIONS})"
        )
    if ":" in text:
        kind_text, _, number_text = text.partition(":")
        kind_key = kind_text.strip().lower()
        if kind_key not in _KINDS:
            raise PhantomSpecError(
                f"{where}: unknown kind {kind_text.strip()!r}; use itc, micro or macro "
                f"(example: {DEFAULT_LESIONS})"
            )
        kind: SizeClass | None = _KINDS[kind_key]
    else:
        kind, number_text = None, text
    try:
        diameter = float(number_text.strip())
    except ValueError:
        raise PhantomSpecError(
            f"{where}: {number_text.strip()!r} is not a diameter in mm "
            f"(expected kind:diameter_mm, for example micro:0.8)"
        ) from None
    if not math.isfinite(diameter) or diameter <= 0:
        raise PhantomSpecError(f"{where}: the diameter must be a positive number of mm")
    if kind is None:
        kind = classify_diameter_mm(diameter)
    try:
        return LesionSpec(kind, diameter)
    except PhantomSpecError as exc:
        raise PhantomSpecError(f"{where}: {exc}") from None


def parse_lesion_specs(
    lesions: str | Iterable[LesionSpec | str] | None,
) -> tuple[LesionSpec, ...]:
    """Parse a lesion request into ``LesionSpec`` values, in the order given.

    Accepts the comma-separated text form, an iterable of ``LesionSpec`` (or of single
    tokens), or ``None``/``""`` for no lesions. Raises ``PhantomSpecError`` naming the bad
    token and the allowed range of its kind.
    """
    if lesions is None:
        return ()
    if isinstance(lesions, str):
        if not lesions.strip():
            return ()
        tokens: Sequence[LesionSpec | str] = lesions.split(",")
    else:
        tokens = list(lesions)
    specs: list[LesionSpec] = []
    for i, token in enumerate(tokens):
        if isinstance(token, LesionSpec):
            specs.append(token)
        elif isinstance(token, str):
            specs.append(_parse_token(token, i))
        else:
            raise PhantomSpecError(
                f"lesion {i + 1}: expected a LesionSpec or a 'kind:diameter_mm' string, "
                f"got {type(token).__name__}"
            )
    if len(specs) > MAX_LESIONS:
        raise PhantomSpecError(f"too many lesions ({len(specs)}); at most {MAX_LESIONS}")
    return tuple(specs)
