"""The chain CNNs on the CPU without torch: ONNX Runtime behind the ``PatchClassifier`` interface.

Why (issue 15): ``import torch`` costs 1.35-1.5 s of a cold ``histoviewer analyze`` on 2
cores, more than the whole read+model bound; ``import onnxruntime`` costs 0.03-0.08 s. On the
CPU the shipped chain CNNs (``cnn_chain``: compact-cnn, strided-cnn, screen-cnn) run here
from the model file's arrays, batch norm folded in numpy, as an ONNX graph
(``cnn_onnx``, built once per model and cached). The same ``prepare_patches`` (stain
normalisation), calibration and domain semantics as ``cnn.CnnClassifier``; logits agree
with the torch path to ~1e-6 (tests/core/test_cnn_ort.py).

Threads: a session's intra-op threads are fixed when it is made, so one session is kept per
thread count; a calling thread uses the count ``set_call_threads`` gave it (the headless
pipeline's model threads: one each, like torch's per-thread setting), else
``default_intra_op_threads``. Inter-op is 1 and spinning is off: spinning worker threads
would take the 2 cores from the region readers between batches.

Torch stays for training, GPUs, Grad-CAM and fine-tuning: ``as_torch`` builds the torch
classifier of the same arrays when one of those needs the network.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # a dependency; without it every CNN runs on torch (``model_engine``)
    import onnxruntime as ort

    ORT_AVAILABLE = True
except ImportError:  # pragma: no cover - onnxruntime is installed with HistoViewer
    ort = None
    ORT_AVAILABLE = False

from histoviewer.core.cpu_cores import usable_cores
from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn_chain import folded_chain
from histoviewer.core.models.cnn_onnx import INPUT_NAME, cached_onnx_bytes
from histoviewer.core.models.logit_classifier import LogitClassifier, checked_logits

__all__ = ["ENGINE_NAME", "ORT_AVAILABLE", "EngineDevice", "OrtCnnClassifier", "default_intra_op_threads",
           "set_call_threads", "set_default_intra_op_threads"]

ENGINE_NAME = "onnxruntime"
_BATCH = 256  # patches a session run: measured 0.49 s per 3,072 patches on 2 threads, as 512
_CALL_THREADS = threading.local()
_DEFAULT_THREADS: list[int | None] = [None]  # set_default_intra_op_threads (process-wide)


@dataclass(frozen=True)
class EngineDevice:
    """What a torch device says to the code that asks a model where it runs (``.type``)."""

    type: str = "cpu"

    def __str__(self) -> str:
        return self.type


def default_intra_op_threads() -> int:
    """Intra-op threads of a call from a thread without its own setting: what
    ``set_default_intra_op_threads`` set, else one per core, as torch's default."""
    return _DEFAULT_THREADS[0] or usable_cores()


def set_default_intra_op_threads(count: int | None) -> None:
    """The process-wide default (``torch.set_num_threads``' counterpart; None: one per core)."""
    _DEFAULT_THREADS[0] = None if count is None else max(1, int(count))


def set_call_threads(count: int | None) -> None:
    """Intra-op threads of this thread's calls to any ``OrtCnnClassifier`` (None: the default)."""
    _CALL_THREADS.count = None if count is None else max(1, int(count))


def _session_options(threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads busy-wait for work between ops and batches, on the cores the readers need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
    return options


class OrtCnnClassifier(LogitClassifier):
    """A chain CNN run by ONNX Runtime on the CPU (see the module docstring)."""

    parallel_calls = True  # sessions may be run from several threads at once
    engine = ENGINE_NAME
    device = EngineDevice("cpu")

    def __init__(self, info: ModelInfo, tensors: dict[str, np.ndarray]) -> None:
        if info.kind != "cnn":
            raise ModelLoadError(f"model kind {info.kind!r} is not a CNN")
        self.info = info
        self.domain = None  # set by load_model when the file has one
        self._tensors = {k: np.array(v, copy=True) for k, v in tensors.items()}  # as the file holds them
        chain = folded_chain(info.architecture, info.extra.get("arch_config"), self._tensors)
        self._graph = cached_onnx_bytes(chain, info.input.patch_px)
        self._sessions: dict[int, Any] = {}
        self._torch: dict[str, Any] = {}  # as_torch's classifiers, by device
        self._lock = threading.Lock()
        try:
            self._session(default_intra_op_threads())
        except Exception:  # noqa: BLE001 - onnxruntime raises its own classes: a bad cached graph
            self._graph = cached_onnx_bytes(chain, info.input.patch_px, rebuild=True)
            self._sessions.clear()
            self._session(default_intra_op_threads())
        self.batch_size = _BATCH

    def _session(self, threads: int) -> Any:
        with self._lock:
            session = self._sessions.get(threads)
            if session is None:
                session = ort.InferenceSession(self._graph, _session_options(threads),
                                               providers=["CPUExecutionProvider"])
                self._sessions[threads] = session
            return session

    @property
    def intra_op_threads(self) -> int:
        """This thread's intra-op threads (``set_call_threads``, else the default)."""
        return getattr(_CALL_THREADS, "count", None) or default_intra_op_threads()

    def tensors(self) -> dict[str, np.ndarray]:
        return dict(self._tensors)

    def _logits_of_prepared(self, arr: np.ndarray) -> np.ndarray:
        session = self._session(self.intra_op_threads)
        out = np.empty(len(arr), dtype=np.float32)
        for start in range(0, len(arr), self.batch_size):
            chunk = arr[start : start + self.batch_size]
            out[start : start + len(chunk)] = session.run(None, {INPUT_NAME: chunk})[0]
        return checked_logits(out, self.info.name)

    def as_torch(self, device: str = "cpu") -> Any:
        """The ``cnn.CnnClassifier`` of the same arrays (Grad-CAM, fine-tuning need the network)."""
        # lazy: models.cnn imports torch (seconds of start-up); only explanations get here
        from histoviewer.core.models.cnn import CnnClassifier

        with self._lock:
            cached = self._torch.get(device)
            if cached is None:
                cached = CnnClassifier.from_tensors(self.info, self._tensors, device=device)
                self._torch[device] = cached
        cached.info = self.info
        cached.domain = self.domain
        return cached

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
            torch_models, self._torch = list(self._torch.values()), {}
        for model in torch_models:
            model.close()

