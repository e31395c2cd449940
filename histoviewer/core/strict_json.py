"""The one JSON writer of HistoViewer: strict JSON or a clear error, never ``NaN``/``Infinity``.

Python's ``json.dumps`` writes ``NaN``, ``Infinity`` and ``-Infinity`` by default, which are
not JSON: other tools (and strict parsers) refuse the file or read garbage, and a value that
should have been "unknown" travels on as a number. Every JSON text we write or print goes
through ``strict_dumps``; a non-finite float is a bug upstream (an unknown value must be
``None``), so it raises ``NonFiniteJsonError`` naming where in the document it sits.
"""

from __future__ import annotations

import json
import math
from typing import Any

from histoviewer.core.errors import HistoViewerError

__all__ = ["NonFiniteJsonError", "strict_dumps"]


class NonFiniteJsonError(HistoViewerError, ValueError):
    """A document to be written as JSON holds NaN or an infinity."""


def _first_non_finite(obj: Any, where: str = "$", depth: int = 0) -> str | None:
    if depth > 200:  # deeper than anything we write; json.dumps would refuse it anyway
        return None
    if isinstance(obj, float):
        return f"{where} = {obj}" if not math.isfinite(obj) else None
    if isinstance(obj, dict):
        for key, value in obj.items():
            if (
                found := _first_non_finite(value, f"{where}.{key}", depth + 1)
            ) is not None:
                return found
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            if (
                found := _first_non_finite(value, f"{where}[{i}]", depth + 1)
            ) is not None:
                return found
    return None


def strict_dumps(obj: Any, *, what: str = "the JSON output", **kwargs: Any) -> str:
    """``json.dumps(obj, allow_nan=False, **kwargs)``; ``NonFiniteJsonError`` naming ``what``
    (the file or output) and the first non-finite value's place when there is one."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError as exc:
        if "JSON compliant" not in str(exc):
            raise
        where = _first_non_finite(obj) or "a value"
        raise NonFiniteJsonError(
            f"{what}: cannot be written as JSON: {where} is not a finite number "
            "(an unknown value must be written as null)"
        ) from None
