"""One model file format for both classifiers: safetensors with a JSON header.

A model file is a ``.safetensors`` file: named numeric arrays (CNN weights, or the
handcrafted model's scaler and coefficients) plus a string metadata map whose
``histoviewer.model`` entry is the ``ModelInfo`` as JSON (the model's *description*).
safetensors holds data only, so loading never executes code from the file (no pickle
anywhere); before the library sees the file we check that it is a regular file, its 8-byte
header length, the header's JSON (``safe_input``: bounded size, depth and numbers) and the
description's types ourselves, so that a wrong, truncated or hostile file gets a clear
message naming it.

``content_hash`` (format ``histoviewer-model/2``) is the SHA-256 over the description and
the arrays (``model_hash``), stored in the header and **required**: a file without a valid
one is refused. It covers every entry of the description but itself and the held-out
evaluations recorded after training (``record_evaluation``), so editing the header alone
(the demonstration flag, the caveat, the calibration, the architecture settings) is caught
as an edited file, and caches keyed by the hash never serve results of another calibration.
Format ``/1`` files hashed the arrays only; they are refused with the way out
(``restamp_model``, after the user has checked the description). An unkeyed hash cannot stop
someone who recomputes it, so the shipped weights' caution is also pinned by their array
digest (``shipped.check_shipped_caution``): no header can present them as more than they are.

Reading and verifying a file live in ``model_verify`` (no torch, no domain or feature code,
so the model's child process can use them alone); this module re-exports them and builds
the classifier on the engine ``model_engine`` chooses (onnxruntime or torch).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save

from histoviewer import __version__
from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.errors import ModelError, ModelLoadError
from histoviewer.core.models.calibration import CALIBRATION_KEY, Calibration
from histoviewer.core.models.classifier import ModelInfo, PatchClassifier
from histoviewer.core.models.domain import EXTRA_KEY as DOMAIN_KEY
from histoviewer.core.models.domain import split_domain_tensors
from histoviewer.core.models.handcrafted import HandcraftedClassifier
from histoviewer.core.models.model_engine import build_cnn
from histoviewer.core.models.model_header import check_description
from histoviewer.core.models.model_verify import (
    _ARRAYS_ONLY_FORMAT,
    _EDITED,
    _FORMAT_KEY,
    _META_KEY,
    EVALUATIONS_KEY,
    FORMAT_NAME,
    MAX_MODEL_BYTES,
    _description_of,
    _info_of,
    _load_arrays,
    _read_header,
    model_hash,
    read_model_info_unverified,
    read_verified,
    tensors_hash,
)
from histoviewer.core.models.shipped import check_shipped_caution
from histoviewer.core.models.stain_norm import StainNormaliser

__all__ = [
    "EVALUATIONS_KEY",
    "FORMAT_NAME",
    "MAX_MODEL_BYTES",
    "load_model",
    "model_hash",
    "read_model_info",
    "read_model_info_unverified",
    "record_evaluation",
    "restamp_model",
    "save_model",
    "tensors_hash",
    "verified_arrays",
]

def _finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (iterative: no recursion limit)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, (dict, list, tuple)):
        return value
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        item, parent, key = stack.pop()
        if isinstance(item, dict):
            copy: Any = {}
            stack.extend((v, copy, k) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            copy = [None] * len(item)
            stack.extend((v, copy, i) for i, v in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            copy = None
        else:
            copy = item
        parent[key] = copy
    return root[0]


def _write(path: Path, description: dict[str, Any], tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Stamp ``description`` with its hash and write the file atomically; the stamped
    description (as JSON would read it back) is returned."""
    # JSON round trip first: the hash covers what a reader will parse (tuples become lists).
    # A NaN or infinite number (a metric that could not be computed) is written as null:
    # "unknown", which JSON can say and every reader of ours accepts.
    description = json.loads(json.dumps(_finite_or_none(description), allow_nan=False))
    description["content_hash"] = model_hash(description, tensors_hash(tensors))
    meta = {_FORMAT_KEY: FORMAT_NAME, _META_KEY: json.dumps(description, sort_keys=True, allow_nan=False)}
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return description


def save_model(path: str | Path, classifier: PatchClassifier) -> ModelInfo:
    """Write ``classifier`` atomically; return its info with ``content_hash`` filled in."""
    tensors = {k: np.ascontiguousarray(v) for k, v in classifier.tensors().items()}
    # The domain profile (when the classifier has one) travels as ``domain.*`` arrays + JSON.
    domain = getattr(classifier, "domain", None)
    extra = {k: v for k, v in classifier.info.extra.items() if k != DOMAIN_KEY}
    if domain is not None:
        tensors.update({k: np.ascontiguousarray(v) for k, v in domain.tensors().items()})
        extra[DOMAIN_KEY] = domain.to_json()
    info = replace(
        classifier.info,
        extra=extra,
        software_version=classifier.info.software_version or __version__,
        created=classifier.info.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    stamped = _write(Path(path), info.to_dict(), tensors)
    info = replace(info, content_hash=stamped["content_hash"])
    classifier.info = info
    return info


def record_evaluation(path: str | Path, name: str, result: dict[str, Any]) -> ModelInfo:
    """Store ``result`` (an evaluation's numbers and the data they come from) in the model
    file's header as ``extra["evaluations"][name]``, replacing an earlier one of that name.

    The arrays and the rest of the description are written back unchanged, so the content
    hash (the model's identity in caches and reports) stays the same; the file is replaced
    atomically.
    """
    p = Path(path)
    description, tensors, _ = read_verified(p)
    extra = description.setdefault("extra", {})
    extra[EVALUATIONS_KEY] = {**(extra.get(EVALUATIONS_KEY) or {}), name: result}
    stamped = _write(p, description, tensors)
    return _info_of(p, stamped)


def restamp_model(path: str | Path) -> ModelInfo:
    """Rewrite a format ``/1`` file (its hash covered the arrays only) as format ``/2``, the
    arrays byte for byte unchanged. The arrays must still match the old hash; the
    description is taken as it stands, so call this only for a file whose description the
    user has checked (its demonstration flag and caveat above all)."""
    p = Path(path)
    header = _read_header(p)
    meta = header.get("__metadata__") or {}
    if meta.get(_FORMAT_KEY) == FORMAT_NAME:
        read_verified(p)  # already current: only check it
        return read_model_info(p)
    if meta.get(_FORMAT_KEY) != _ARRAYS_ONLY_FORMAT or _META_KEY not in meta:
        raise ModelLoadError(f"{p}: not a HistoViewer model file of an older format; nothing to re-stamp")
    description = _description_of(p, meta)
    tensors = _load_arrays(p)
    stated = description.get("content_hash")
    if not isinstance(stated, str) or not stated:
        raise ModelLoadError(f"{p}: has no integrity hash, so its weights cannot be checked; "
                             "it cannot be re-stamped (train the model again)")
    if tensors_hash(tensors) != stated:
        raise ModelLoadError(f"{p}: weights do not match the hash in the header {_EDITED}; not re-stamped")
    check_description(p, description)
    check_shipped_caution(p, description, stated)
    return _info_of(p, _write(p, description, tensors))


def verified_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a model file, after every check ``load_model`` makes (for initial
    weights: the arrays without building the classifier)."""
    _, tensors, _ = read_verified(Path(path))
    return tensors


def read_model_info(path: str | Path) -> ModelInfo:
    """The model's description, verified against its hash with every array (for lists,
    menus, caches and provenance: what they show of a model, its caution above all, is what
    ``load_model`` would load; the arrays are bounded by the checks, ~1 MB for the shipped
    models), without building the classifier."""
    p = Path(path)
    description, _, _ = read_verified(p)
    return _info_of(p, description)


def load_model(path: str | Path, device: str = "auto", engine: str | None = None) -> PatchClassifier:
    """Load a model file, verify its hash, and build the matching classifier: a CNN on the
    engine ``model_engine.choose_engine`` picks (``engine``: "auto", "torch" or
    "onnxruntime"; None: the ``HISTOVIEWER_INFERENCE_ENGINE`` setting). Every refusal names
    the file (never only the name its header gives the model)."""
    p = Path(path)
    description, tensors, _ = read_verified(p)
    info = _info_of(p, description)
    # Split off the domain profile before the network's strict load (old files have none).
    try:
        tensors, domain = split_domain_tensors(tensors, info.extra)
        classifier = build_classifier(info, tensors, device, engine)
        check_extras(info)
    except (ModelLoadError, ModelError) as exc:
        if str(exc).startswith(str(p)):
            raise
        raise ModelLoadError(f"{p}: {exc}", setting=exc.setting) from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{p}: model description is invalid ({type(exc).__name__}: {exc})") from exc
    classifier.domain = domain
    return classifier


def build_classifier(info: ModelInfo, tensors: dict[str, np.ndarray], device: str = "auto",
                     engine: str | None = None) -> PatchClassifier:
    """The classifier of verified ``info`` and its arrays (the domain profile's split off)."""
    if info.kind != "cnn":
        return HandcraftedClassifier.from_tensors(info, tensors)
    return build_cnn(info, tensors, device, engine)


def check_extras(info: ModelInfo) -> None:
    """Read now what predictions read later (calibration, stain normaliser), so a bad entry
    is refused at load, naming the file (the caller adds the path)."""
    if info.extra.get(CALIBRATION_KEY):
        Calibration.from_dict(info.extra[CALIBRATION_KEY]).apply(np.zeros(2, np.float32))
    StainNormaliser.from_extra(info.extra)
