"""Type checks of a model file's description (``ModelInfo`` as JSON) before anything uses it.

``ModelInfo.from_dict`` converts with ``str``/``bool``/``float``, which accepts what it
should refuse: ``"demonstration": "false"`` is a non-empty string and so *true* to
``bool``, a list for ``name`` prints as a list, ``"metrics": [..]`` fails deep inside a
front end. ``check_description`` refuses such a file first, naming the file and the field.
Numbers are finite already (``safe_input.parse_json``); bounds are ``ModelInfo``'s own.
"""

from __future__ import annotations

import os
from typing import Any

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.safe_input import JsonFields

__all__ = ["KINDS", "check_description"]

KINDS = ("cnn", "handcrafted")
_TEXT = 10_000  # a caveat or a training-data line is a sentence or two


def check_description(path: str | os.PathLike[str], description: Any) -> None:
    """Raise ``ModelLoadError`` naming ``path`` and the field for a description entry of the
    wrong type (or a model kind we do not know); return quietly otherwise."""
    top = JsonFields(description, path, ModelLoadError, "model description")
    top.str("name", max_len=200)
    kind = top.str("kind", max_len=50)
    if kind not in KINDS:
        raise ModelLoadError(f"{path}: unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    top.str("architecture", max_len=200)
    for key in ("training_data", "software_version", "created", "caveat", "content_hash"):
        top.str(key, "", max_len=_TEXT)
    top.bool("demonstration", False)
    metrics = top.obj("metrics", None)
    if metrics is not None:
        for key in metrics.data:
            metrics.float(key, None)  # null: a metric that could not be computed
    spec = top.obj("input", None)
    if spec is not None:
        spec.int("patch_px", None, low=8, high=4096)
        spec.float("mpp_um", None, low=0.05, high=64)
        spec.str("normalisation", None, max_len=_TEXT)
        names = spec.list("class_names", None, max_len=2)
        if names is not None and not all(isinstance(n, str) for n in names):
            raise ModelLoadError(f"{path}: 'model description.input.class_names' must be a list of strings")
    point = top.obj("operating_point", None)
    if point is not None:
        point.float("threshold", low=0.0, high=1.0)
        point.float("sensitivity", low=0.0, high=1.0)
        point.float("specificity", low=0.0, high=1.0)
        point.int("n_valid", 0, low=0)
        point.str("target", "", max_len=_TEXT)
        point.str("data", "", max_len=_TEXT)
    extra = top.obj("extra", None)
    if extra is not None:
        extra.obj("arch_config", None)
        extra.obj("calibration", None)
        extra.obj("evaluations", None)
