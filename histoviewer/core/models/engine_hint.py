"""Whether loading a model will import torch, told from its file's header with the standard
library alone (milliseconds, before anything heavy is imported).

``analyze`` starts its model in a child process only when that pays: to overlap importing
torch (1.35-1.5 s on 2 cores) with reading the slide. A chain CNN on the CPU loads on
onnxruntime in a fraction of a second, and runs faster in the ``analyze`` process itself
than behind a socket (docs/benchmarks.md). ``model_engine`` makes the real choice, on the
verified file; this is the same rule on the header as it stands (unverified: a hint for
where to load, never for what is shown), and it says "torch" whenever it cannot tell.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import sys
from pathlib import Path

from histoviewer.core.errors import HistoViewerError
from histoviewer.core.models.model_paths import resolve_model_path

__all__ = ["CHAIN_ARCHITECTURES", "ENGINE_ENV", "gpu_possible", "loading_imports_torch"]

ENGINE_ENV = "HISTOVIEWER_INFERENCE_ENGINE"
# The architectures that are simple conv chains (``cnn_chain``): onnxruntime runs them.
CHAIN_ARCHITECTURES = ("compact-cnn", "strided-cnn", "screen-cnn")
_MAX_HEADER_BYTES = 16 * 1024**2


def gpu_possible() -> bool:
    """False only where no GPU torch could use can be present (checked without torch)."""
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia/version").exists()
    if sys.platform == "win32":
        return (Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32" / "nvcuda.dll").exists()
    return True  # macOS: Apple MPS; torch decides


def _kind_and_architecture(path: Path) -> tuple[str, str] | None:
    """The header's model kind and architecture as stated, None when it cannot be read."""
    try:
        with path.open("rb") as fh:
            (n_header,) = struct.unpack("<Q", fh.read(8))
            if not 0 < n_header <= _MAX_HEADER_BYTES:
                return None
            header = json.loads(fh.read(n_header))
        description = json.loads(header["__metadata__"]["histoviewer.model"])
        return str(description["kind"]), str(description["architecture"])
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def loading_imports_torch(spec: str | os.PathLike[str], device: str = "auto") -> bool:
    """True when loading ``spec`` on ``device`` will (or may) import torch (see the module docstring)."""
    setting = (os.environ.get(ENGINE_ENV) or "auto").strip().lower()
    if setting == "torch":
        return True
    dev = (device or "auto").strip().lower()
    if dev != "cpu" and (dev != "auto" or gpu_possible()):
        return True
    try:
        stated = _kind_and_architecture(resolve_model_path(spec))
    except HistoViewerError:
        return True  # not found: whoever loads it says so
    if stated is None:
        return True
    kind, architecture = stated
    if kind != "cnn":
        return False
    return architecture not in CHAIN_ARCHITECTURES or importlib.util.find_spec("onnxruntime") is None
