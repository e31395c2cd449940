"""One model file format for both classifiers: safetensors with a JSON header.

A model file is a ``.safetensors`` file: named numeric arrays (CNN weights, or the
handcrafted model's scaler and coefficients) plus a string metadata map whose
``histoviewer.model`` entry is the ``ModelInfo`` as JSON. safetensors holds data only, so
loading never executes code from the file (no pickle anywhere); before the library sees the
file we check its 8-byte header length and JSON ourselves so that a wrong, truncated or
hostile file gets a clear message.

``content_hash`` is the SHA-256 over the arrays (names, dtypes, shapes, bytes in name
order). It is stored in the header and checked on load, so corrupted weights are refused,
and it is what caches and reports use to name the exact model.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from histoviewer import __version__
from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.errors import HistoViewerError, ModelLoadError
from histoviewer.core.models.classifier import ModelInfo, PatchClassifier
from histoviewer.core.models.domain import EXTRA_KEY as DOMAIN_KEY
from histoviewer.core.models.domain import split_domain_tensors
from histoviewer.core.models.handcrafted import HandcraftedClassifier
from histoviewer.core.strict_json import strict_dumps

__all__ = [
    "FORMAT_NAME",
    "MAX_MODEL_BYTES",
    "load_model",
    "read_model_info",
    "record_evaluation",
    "save_model",
    "tensors_hash",
]

FORMAT_NAME = "histoviewer-model/1"
_META_KEY = "histoviewer.model"
_FORMAT_KEY = "format"
MAX_MODEL_BYTES = 2 * 1024**3  # a patch classifier bigger than this is not ours
_MAX_HEADER_BYTES = 16 * 1024**2
_ALLOWED_DTYPES = {"F16", "BF16", "F32", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"}


def tensors_hash(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 hex digest over names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype).encode())
        digest.update(repr(tuple(arr.shape)).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


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
        content_hash=tensors_hash(tensors),
        software_version=classifier.info.software_version or __version__,
        created=classifier.info.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    meta = {_FORMAT_KEY: FORMAT_NAME, _META_KEY: strict_dumps(info.to_dict(), sort_keys=True)}
    atomic_write_bytes(Path(path), save(tensors, metadata=meta))
    classifier.info = info
    return info


# ``ModelInfo.extra`` key of the held-out evaluations recorded in a model file's header.
EVALUATIONS_KEY = "evaluations"


def record_evaluation(path: str | Path, name: str, result: dict[str, Any]) -> ModelInfo:
    """Store ``result`` (an evaluation's numbers and the data they come from) in the model
    file's header as ``extra["evaluations"][name]``, replacing an earlier one of that name.

    The arrays are written back unchanged, so the content hash (the model's identity in
    caches and reports) stays the same; the file is replaced atomically.
    """
    p = Path(path)
    info, tensors = _read_verified(p)
    evaluations = {**(info.extra.get(EVALUATIONS_KEY) or {}), name: result}
    info = replace(info, extra={**info.extra, EVALUATIONS_KEY: evaluations})
    meta = {_FORMAT_KEY: FORMAT_NAME, _META_KEY: strict_dumps(info.to_dict(), sort_keys=True)}
    atomic_write_bytes(p, save(tensors, metadata=meta))
    return info


def _read_header(path: Path) -> dict[str, Any]:
    """Parse and sanity-check the safetensors header without trusting the file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: model file not found") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read model file: {exc.strerror}") from exc
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, not a model file")
    if size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{path}: {size} bytes is too large for a patch classifier file")
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelLoadError(f"{path}: truncated ({size} bytes), not a model file")
            (n_header,) = struct.unpack("<Q", head)
            # The first 8 bytes are a little-endian length, so any byte can start a valid
            # file: only once the length is implausible do we guess what the file is instead.
            if n_header == 0 or n_header > min(_MAX_HEADER_BYTES, size - 8):
                if head[:2] == b"PK" or head[:1] == b"\x80":
                    raise ModelLoadError(
                        f"{path}: looks like a pickle or torch checkpoint; HistoViewer never "
                        "loads pickles (they can run code). Train the model again, or re-save "
                        "the weights as a HistoViewer safetensors model file"
                    )
                raise ModelLoadError(
                    f"{path}: not a HistoViewer model file (bad or truncated safetensors header)"
                )
            raw = fh.read(n_header)
            if raw[:1] != b"{":
                raise ModelLoadError(
                    f"{path}: not a HistoViewer model file (header is not JSON)"
                )
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read model file: {exc.strerror}") from exc
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelLoadError(f"{path}: not a HistoViewer model file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: not a HistoViewer model file (header is not a map)")
    data_bytes = size - 8 - n_header
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in _ALLOWED_DTYPES:
            raise ModelLoadError(f"{path}: tensor {name!r} has an unsupported type")
        offsets = entry.get("data_offsets")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and 0 <= o <= data_bytes for o in offsets)
        ):
            raise ModelLoadError(f"{path}: tensor {name!r} lies outside the file (truncated?)")
    return header


def _info_from_header(path: Path, header: dict[str, Any]) -> ModelInfo:
    meta = header.get("__metadata__") or {}
    if meta.get(_FORMAT_KEY) != FORMAT_NAME or _META_KEY not in meta:
        raise ModelLoadError(
            f"{path}: a safetensors file, but not a HistoViewer model (no {FORMAT_NAME} header)"
        )
    try:
        info = ModelInfo.from_dict(json.loads(meta[_META_KEY]))
    except (json.JSONDecodeError, TypeError, ValueError, HistoViewerError) as exc:
        raise ModelLoadError(f"{path}: model description is invalid: {exc}") from exc
    if info.kind not in ("cnn", "handcrafted"):
        raise ModelLoadError(f"{path}: unknown model kind {info.kind!r}")
    return info


def _read_verified(p: Path) -> tuple[ModelInfo, dict[str, np.ndarray]]:
    """The header and every array of a model file, the arrays checked against the header's
    hash (``content_hash`` filled in for a file that states none)."""
    info = _info_from_header(p, _read_header(p))
    try:
        tensors = load(p.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{p}: model weights are unreadable: {exc}") from exc
    actual = tensors_hash(tensors)
    if info.content_hash and actual != info.content_hash:
        raise ModelLoadError(f"{p}: weights do not match the hash in the header (file corrupted or edited)")
    return replace(info, content_hash=actual), tensors


def read_model_info(path: str | Path) -> ModelInfo:
    """The model's description from its header only (cheap: for lists and menus)."""
    p = Path(path)
    return _info_from_header(p, _read_header(p))


def load_model(path: str | Path, device: str = "auto") -> PatchClassifier:
    """Load a model file, verify its hash, and build the matching classifier."""
    p = Path(path)
    info, tensors = _read_verified(p)
    # Split off the domain profile before the network's strict load (old files have none).
    tensors, domain = split_domain_tensors(tensors, info.extra)
    classifier: PatchClassifier
    if info.kind == "cnn":
        # Lazy: models.cnn imports torch (seconds of start-up) and a handcrafted model never needs it.
        from histoviewer.core.models.cnn import CnnClassifier

        classifier = CnnClassifier.from_tensors(info, tensors, device=device)
    else:
        classifier = HandcraftedClassifier.from_tensors(info, tensors)
    classifier.domain = domain
    return classifier
