"""Reading and verifying a model file (``model_file``'s format), without building a classifier.

Everything here imports numpy, safetensors and our small header checks only: no torch, no
domain or feature code (scipy.ndimage). The model's child process (``inference.model_process``)
verifies and loads a CNN with this and ``cnn_ort`` alone, so a cold ``analyze`` child
starts in a fraction of a second (issue 15). ``model_file`` re-exports every public name.

A CNN's arrays are checked against the network its description asks for before any array
is read: the chain architectures (``cnn_chain``) without torch, the residual ones with
torch's shapes-only "meta" device (``cnn_arch.expected_shapes``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load

from histoviewer.core.errors import HistoViewerError, ModelLoadError
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn_chain import (
    CHAIN_ARCHITECTURES,
    array_mismatch,
    chain_shapes,
)
from histoviewer.core.models.model_header import check_description
from histoviewer.core.models.shipped import check_shipped_caution
from histoviewer.core.safe_input import parse_json, require_regular_file

__all__ = [
    "DOMAIN_PREFIX",
    "EVALUATIONS_KEY",
    "FORMAT_NAME",
    "MAX_MODEL_BYTES",
    "model_hash",
    "read_model_info_unverified",
    "read_verified",
    "tensors_hash",
]

# The name prefix of a domain profile's arrays in a model file (``domain`` uses this one):
# bounded here before any array is read.
DOMAIN_PREFIX = "domain."

FORMAT_NAME = "histoviewer-model/2"
# Hashed the arrays only: the header could be edited unnoticed (see the module docstring).
_ARRAYS_ONLY_FORMAT = "histoviewer-model/1"
_META_KEY = "histoviewer.model"
_FORMAT_KEY = "format"
MAX_MODEL_BYTES = 2 * 1024**3  # a patch classifier bigger than this is not ours
_MAX_HEADER_BYTES = 16 * 1024**2
_ALLOWED_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                   "U8": 1, "BOOL": 1}
# ``ModelInfo.extra`` key of the held-out evaluations recorded in a model file's header.
EVALUATIONS_KEY = "evaluations"
# Bounds on what a file may declare beside a CNN's own arrays (``_check_declared_bytes``).
_MAX_DOMAIN_BYTES = 16 * 1024**2
_MAX_HANDCRAFTED_BYTES = 4 * 1024**2
# Where the description is not to be trusted, say why in terms of the file.
_EDITED = "(file corrupted, or edited after it was written)"
def tensors_hash(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 hex digest over names, dtypes, shapes and bytes, in name order: the arrays'
    identity (format ``/1``'s whole hash; part of ``model_hash``)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype).encode())
        digest.update(repr(tuple(arr.shape)).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _hashed_description(description: dict[str, Any]) -> dict[str, Any]:
    """The description as the hash covers it: without ``content_hash`` and the evaluations."""
    out = {k: v for k, v in description.items() if k != "content_hash"}
    extra = out.get("extra")
    if isinstance(extra, dict) and EVALUATIONS_KEY in extra:
        out["extra"] = {k: v for k, v in extra.items() if k != EVALUATIONS_KEY}
    return out


def model_hash(description: dict[str, Any], arrays_digest: str) -> str:
    """``content_hash`` of a format ``/2`` file: SHA-256 over the format name, the canonical
    JSON of the description (``_hashed_description``) and the arrays' digest
    (``tensors_hash``)."""
    canonical = json.dumps(_hashed_description(description), sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    digest = hashlib.sha256()
    for part in (FORMAT_NAME, canonical, arrays_digest):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _read_header(path: Path) -> dict[str, Any]:
    """Parse and sanity-check the safetensors header without trusting the file."""
    size = require_regular_file(path, "model", ModelLoadError).st_size
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
    header = parse_json(raw, path, "the model file's header", ModelLoadError,
                        max_bytes=_MAX_HEADER_BYTES)
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: not a HistoViewer model file (header is not a map)")
    data_bytes = size - 8 - n_header
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ModelLoadError(f"{path}: the header's metadata must map names to text")
            continue
        _check_tensor_entry(path, name, entry, data_bytes)
    return header


def _check_tensor_entry(path: Path, name: str, entry: Any, data_bytes: int) -> None:
    """One array's header entry: a known type, a shape whose size fits its byte range, and
    a byte range inside the file (the library checks too; we name the file and array)."""
    if not isinstance(entry, dict) or entry.get("dtype") not in _ALLOWED_DTYPES:
        raise ModelLoadError(f"{path}: tensor {name!r} has an unsupported type")
    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and 0 <= o <= data_bytes for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise ModelLoadError(f"{path}: tensor {name!r} lies outside the file (truncated?)")
    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) > 8 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ModelLoadError(f"{path}: tensor {name!r} has an invalid shape")
    n_bytes = int(np.prod(shape, dtype=np.float64)) * _ALLOWED_DTYPES[entry["dtype"]]
    if n_bytes != offsets[1] - offsets[0]:
        raise ModelLoadError(f"{path}: tensor {name!r}: its shape {tuple(shape)} does not match "
                             f"its {offsets[1] - offsets[0]} bytes {_EDITED}")


def _declared_shapes(header: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _check_declared_bytes(p: Path, description: dict[str, Any], header: dict[str, Any]) -> None:
    """Before any array is read: the domain profile's arrays are kilobytes to a few MB (a
    covariance of ~100 descriptor features), a handcrafted model's arrays kilobytes; a file
    declaring more is refused (a CNN's own arrays are bounded by its network, see
    ``_check_shapes_first``)."""
    def n_bytes(entry: dict[str, Any]) -> int:
        return int(entry["data_offsets"][1]) - int(entry["data_offsets"][0])

    arrays = {k: v for k, v in header.items() if k != "__metadata__"}
    domain = sum(n_bytes(v) for k, v in arrays.items() if k.startswith(DOMAIN_PREFIX))
    if domain > _MAX_DOMAIN_BYTES:
        raise ModelLoadError(f"{p}: its domain profile declares {domain:,} bytes of arrays, more than "
                             f"{_MAX_DOMAIN_BYTES:,}; refused")
    if description.get("kind") == "handcrafted":
        own = sum(n_bytes(v) for k, v in arrays.items() if not k.startswith(DOMAIN_PREFIX))
        if own > _MAX_HANDCRAFTED_BYTES:
            raise ModelLoadError(f"{p}: a handcrafted model's arrays are kilobytes; this file declares "
                                 f"{own:,} bytes; refused")


def _description_of(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    description = parse_json(meta[_META_KEY], path, "the model description", ModelLoadError)
    if not isinstance(description, dict):
        raise ModelLoadError(f"{path}: the model description must be a JSON object")
    return description


def _info_of(path: Path, description: dict[str, Any]) -> ModelInfo:
    """``ModelInfo`` of a description whose types ``check_description`` has checked."""
    try:
        return ModelInfo.from_dict(description)
    except (TypeError, ValueError, HistoViewerError) as exc:
        raise ModelLoadError(f"{path}: model description is invalid: {exc}") from exc


def _checked_description(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    """The header's description, its format current and its entries of the right types."""
    meta = header.get("__metadata__") or {}
    fmt = meta.get(_FORMAT_KEY)
    if fmt == _ARRAYS_ONLY_FORMAT:
        raise ModelLoadError(
            f"{path}: written by an older HistoViewer ({_ARRAYS_ONLY_FORMAT}), whose integrity "
            "hash did not cover the model's description (its demonstration flag, caveat, "
            "calibration); check the description, then re-stamp the file, or train it again",
            setting="restamp")
    if fmt != FORMAT_NAME or _META_KEY not in meta:
        raise ModelLoadError(
            f"{path}: a safetensors file, but not a HistoViewer model (no {FORMAT_NAME} header)"
        )
    description = _description_of(path, meta)
    check_description(path, description)
    return description


def _load_arrays(p: Path) -> dict[str, np.ndarray]:
    try:
        return load(p.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{p}: model weights are unreadable: {exc}") from exc


def read_verified(p: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], str]:
    """The checked description, every array and the arrays' digest, the hash verified.
    The arrays are read only after the description passed its checks and their declared
    shapes fit the network it describes (``_check_shapes_first``)."""
    header = _read_header(p)
    description = _checked_description(p, header)
    stated = description.get("content_hash")
    if not stated:
        raise ModelLoadError(
            f"{p}: has no integrity hash (content_hash), so its weights and description cannot "
            "be verified; refused. Models written by HistoViewer always have one")
    _check_declared_bytes(p, description, header)
    _check_shapes_first(p, description, _declared_shapes(header))
    tensors = _load_arrays(p)
    arrays_digest = tensors_hash(tensors)
    if model_hash(description, arrays_digest) != stated:
        raise ModelLoadError(f"{p}: weights or description do not match the hash in the header {_EDITED}")
    check_shipped_caution(p, description, arrays_digest)
    return description, tensors, arrays_digest


def _expected_shapes(architecture: Any, config: Any) -> dict[str, tuple[int, ...]]:
    """The arrays (name -> shape) of the network ``architecture`` with ``config`` builds."""
    if architecture in CHAIN_ARCHITECTURES:
        return chain_shapes(architecture, config)
    # Lazy: cnn_arch imports torch (seconds of start-up); only a residual network gets here.
    from histoviewer.core.models.cnn_arch import expected_shapes

    return expected_shapes(architecture, config)


def _check_shapes_first(p: Path, description: dict[str, Any],
                        declared: dict[str, tuple[int, ...]]) -> None:
    """For a CNN: the network the description asks for (bounded settings, built without
    memory) must have exactly the arrays the header declares, before any array is read."""
    if description.get("kind") != "cnn":
        return
    extra = description.get("extra") or {}
    try:
        wanted = _expected_shapes(description["architecture"], extra.get("arch_config"))
    except ModelLoadError as exc:
        raise ModelLoadError(f"{p}: {exc}") from None
    network = {k: v for k, v in declared.items() if not k.startswith(DOMAIN_PREFIX)}
    missing, unexpected, wrong = array_mismatch(wanted, network)
    if missing or unexpected or wrong:
        first = (f"{missing[0]!r} is missing" if missing else f"{unexpected[0]!r} is unexpected"
                 if unexpected else f"{wrong[0]!r} has shape {declared[wrong[0]]}, the network "
                 f"needs {wanted[wrong[0]]}")
        raise ModelLoadError(
            f"{p}: weights do not fit architecture {description['architecture']!r} "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another "
            f"shape; {first})")


def read_model_info_unverified(path: str | Path) -> ModelInfo:
    """The description as the header states it, its form checked but neither its arrays read
    nor its hash verified (no torch import: milliseconds). Only for planning work that waits
    for ``load_model`` (which verifies everything) before any result, e.g. reading a slide
    while the model loads; whatever is shown or written must come from the loaded model."""
    p = Path(path)
    return _info_of(p, _checked_description(p, _read_header(p)))
