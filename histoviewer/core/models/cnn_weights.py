"""Starting weights for CNN training: import a torchvision checkpoint once, then initialise
from it by parameter name.

``import_torchvision_weights`` reads a torchvision ``.pth`` state dict with
``torch.load(..., weights_only=True)`` (tensors and plain containers only: a pickle that tries
to run code is refused by torch), keeps the parameters our architecture has under the same
names and shapes (torchvision's 1000-class ``fc`` has no counterpart: our ``head`` is trained
from scratch), and writes them as a safetensors weights file. ``load_init_weights`` copies
such a file, or a HistoViewer model file of the same architecture, into a new network.
Nothing is ever downloaded.

A weights file carries a ``content_hash`` (SHA-256 over its format, architecture and arrays),
checked when it is read, as a model file's is: a file without a valid one is refused. A model
file used as initial weights is verified as ``load_model`` verifies it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load, save
from torch import nn

from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.cnn_arch import build_network
from histoviewer.core.models.model_file import (
    MAX_MODEL_BYTES,
    tensors_hash,
    verified_arrays,
)
from histoviewer.core.safe_input import parse_json, require_regular_file
from histoviewer.core.strict_json import strict_dumps

__all__ = ["WEIGHTS_FORMAT", "InitWeights", "import_torchvision_weights", "load_init_weights",
           "weights_hash"]

WEIGHTS_FORMAT = "histoviewer-weights/1"
_MODEL_FORMAT_PREFIX = "histoviewer-model/"
# Trained from scratch on our task, never initialised from a file.
_HEAD_PREFIX = "head."
# Batch-norm step counters: absent from older torchvision files, and unused by training.
_COUNTER_SUFFIX = "num_batches_tracked"


@dataclass(frozen=True)
class InitWeights:
    """What an import or initialisation matched: ``n_loaded`` network arrays from ``path``,
    ``skipped`` arrays of the file that the network has no use for (e.g. ``fc.weight``)."""

    path: str
    architecture: str
    n_loaded: int
    skipped: tuple[str, ...]


def _wanted(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items()
            if not k.startswith(_HEAD_PREFIX) and not k.endswith(_COUNTER_SUFFIX)}


def _match(path: Path, architecture: str, wanted: dict[str, torch.Tensor],
           arrays: dict[str, Any], setting: str | None) -> dict[str, np.ndarray]:
    """The file's arrays for every wanted name, shapes checked; else one clear error."""
    missing = [k for k in wanted if k not in arrays]
    if missing:
        raise ModelLoadError(
            f"{path}: weights do not fit architecture {architecture!r}: {len(missing)} of its "
            f"{len(wanted)} parameter arrays are missing from the file (first: {missing[0]!r})",
            setting=setting,
        )
    out: dict[str, np.ndarray] = {}
    for k, ref in wanted.items():
        arr = np.asarray(arrays[k])
        if tuple(arr.shape) != tuple(ref.shape):
            raise ModelLoadError(
                f"{path}: weights do not fit architecture {architecture!r}: {k!r} has shape "
                f"{tuple(arr.shape)} in the file, the network needs {tuple(ref.shape)}",
                setting=setting,
            )
        out[k] = np.ascontiguousarray(arr, dtype=np.float32) if arr.dtype.kind == "f" else arr
    return out


def _unused(arrays: dict[str, Any], matched: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in set(arrays) - set(matched) if not k.endswith(_COUNTER_SUFFIX)))


def _unwrap_checkpoint(obj: Any) -> dict[str, Any]:
    """A state dict, possibly inside {"state_dict": ...} or {"model": ...} (training scripts)."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError("not a state dict of tensors")
    # DataParallel checkpoints prefix every name with "module.".
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def weights_hash(architecture: str, arrays: dict[str, np.ndarray]) -> str:
    """``content_hash`` of a weights file: SHA-256 over its format, architecture and arrays."""
    digest = hashlib.sha256()
    for part in (WEIGHTS_FORMAT, architecture, tensors_hash(arrays)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def import_torchvision_weights(pth: str | Path, architecture: str,
                               out: str | Path) -> InitWeights:
    """Convert a torchvision checkpoint for ``architecture`` into a safetensors weights file."""
    pth, out = Path(pth), Path(out)
    size = require_regular_file(pth, "weights", ModelLoadError).st_size
    if size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{pth}: {size} bytes is too large for a patch classifier's weights")
    try:
        # weights_only: tensors and containers only, never arbitrary pickled objects.
        obj = torch.load(pth, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"{pth}: weights file not found") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise ModelLoadError(
            f"{pth}: not a torch state dict that can be read safely ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
        ) from exc
    try:
        state = _unwrap_checkpoint(obj)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{pth}: {exc}") from None
    wanted = _wanted(build_network(architecture))
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    matched = _match(pth, architecture, wanted, arrays, None)
    meta = {"format": WEIGHTS_FORMAT, "architecture": architecture,
            "source": strict_dumps({"file": pth.name, "converted_from": "torch state dict"}),
            "content_hash": weights_hash(architecture, matched)}
    atomic_write_bytes(out, save(matched, metadata=meta))
    return InitWeights(str(out), architecture, len(matched), _unused(arrays, matched))


def _metadata(path: Path) -> dict[str, Any]:
    """The safetensors header's string metadata (``{}`` when it has none or is unreadable:
    the library's own read then gives the message)."""
    try:
        with open(path, "rb") as fh:
            (n_header,) = struct.unpack("<Q", fh.read(8))
            if not 0 < n_header <= 16 * 1024**2:
                return {}
            raw = fh.read(n_header)
    except (OSError, struct.error):
        return {}
    try:
        header = parse_json(raw, path, "the weights file's header", ModelLoadError)
    except ModelLoadError:
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def _verified_init_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a weights file or a HistoViewer model file, their hash checked."""
    size = require_regular_file(path, "initial weights", ModelLoadError).st_size
    if size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{path}: {size} bytes is too large for initial weights", setting="init")
    meta = _metadata(path)
    if str(meta.get("format", "")).startswith(_MODEL_FORMAT_PREFIX):
        try:
            return verified_arrays(path)
        except ModelLoadError as exc:
            raise ModelLoadError(str(exc), setting="init") from None
    try:
        arrays = load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelLoadError(
            f"{path}: not a safetensors weights file ({exc}); a torch checkpoint "
            "must be converted to safetensors first", setting="init"
        ) from exc
    architecture = str(meta.get("architecture", ""))
    stated = meta.get("content_hash")
    if meta.get("format") != WEIGHTS_FORMAT or not stated:
        raise ModelLoadError(
            f"{path}: not a HistoViewer weights file with an integrity hash (imported weights "
            "carry one; import the checkpoint again)", setting="init")
    if weights_hash(architecture, arrays) != stated:
        raise ModelLoadError(f"{path}: weights do not match the hash in the header (file corrupted "
                             "or edited after it was written)", setting="init")
    return arrays


def load_init_weights(net: nn.Module, architecture: str, path: str | Path) -> InitWeights:
    """Copy the weights in ``path`` (a weights file from ``import_torchvision_weights`` or a
    HistoViewer model file) into ``net`` by name, all but the head; refuse a file that does
    not fit with a message naming it."""
    path = Path(path)
    arrays = _verified_init_arrays(path)
    wanted = _wanted(net)
    matched = _match(path, architecture, wanted, arrays, "init")
    state = {k: torch.from_numpy(v.copy()) for k, v in matched.items()}
    net.load_state_dict(state, strict=False)
    return InitWeights(str(path), architecture, len(matched), _unused(arrays, matched))
