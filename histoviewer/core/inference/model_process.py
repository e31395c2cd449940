"""The patch model in a process of its own, started before this process would import torch.

Why (issue 15, a cold ``histoviewer analyze``): importing torch costs 1.1-1.4 s of one core
and holds the interpreter lock nearly all that time (dlopen of its libraries and its Python
modules). Measured on 2 cores: decoding and resizing on a thread while another thread
imports torch ran 3-4x slower and the import 0.3 s slower, so the pair took as long as one
after the other (also with ``sys.setswitchinterval`` at 0.1 ms). A child process has its
own interpreter lock: it imports torch and loads the model on one core while this process
imports the rest, finds the tissue and reads patches on the other; then it runs the model
on the batches this process sends it (a batch's bytes over a socket, ~14 MB for 512
patches of 96 px: a few ms) on its own model threads.

``model_child.launch_model_child`` starts the child (a module that imports nothing heavy, so
the CLI can start it first thing); ``start_model_process(spec, device, child)`` returns a ``PendingModel`` (the file's description at
once, the classifier when the child has loaded it): a ``PatchClassifier`` whose ``classify``
runs in the child, what was verified there (``info``, ``domain``) copied here. A child that
cannot load the model sends its error (raised here as the same ``HistoViewerError`` class);
a child that dies fails the batches in flight and every later one (``InferenceError``), it
never hangs the run. The child ends when this process closes the model or exits (it reads
the end of the socket). ``HISTOVIEWER_MODEL_PROCESS=0`` turns it off (the model loads in
this process on a thread, ``model_loading``), ``=1`` forces it.

The child itself is ``models.model_server``: a chain CNN on the CPU runs there on
onnxruntime (``models.cnn_ort``), with no torch and no domain code imported; the tissue
check's descriptors (the model's ``DomainProfile``, ~1.5 ms a patch on a few hundred sampled
patches) are computed here, on the calling model thread while the child runs the batch.
``analyze`` starts a child only for a model that imports torch (``models.engine_hint``): an
onnxruntime model loads in ~0.1 s and measured faster in the ``analyze`` process itself (no
second interpreter, no batch transfer; docs/benchmarks.md).
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import threading
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from histoviewer.core import errors
from histoviewer.core.errors import (
    HistoViewerError,
    InferenceError,
    ModelError,
    ModelLoadError,
)
from histoviewer.core.inference.model_loading import PendingModel
from histoviewer.core.model_child import ENV_SWITCH, ModelChild, launch_model_child
from histoviewer.core.models.classifier import (
    ModelInfo,
    PatchClassifier,
    PatchScores,
    check_patch_batch,
)
from histoviewer.core.models.domain import split_domain_tensors
from histoviewer.core.models.logit_classifier import masked_domain_distances
from histoviewer.core.models.model_file import read_model_info_unverified
from histoviewer.core.models.registry import resolve_model_path

log = logging.getLogger(__name__)

__all__ = ["ENV_SWITCH", "ModelProcess", "start_model_process"]

_CLOSE_WAIT_S = 10.0


def start_model_process(spec: str | Path, device: str = "auto", child: ModelChild | None = None) -> PendingModel:
    """``open_model(spec, device)`` in a child process (see the module docstring); ``child``:
    one started already for them (``model_child.launch_model_child``, first thing at
    start-up). Raises ``ModelLoadError`` at once for a model that cannot be found or whose
    header is not a model's, or when the child cannot start (it is stopped then)."""
    if child is None:
        try:
            child = launch_model_child(spec, device)
        except OSError as exc:
            raise ModelLoadError(f"{spec}: cannot start the model process: {exc}") from exc
    process = ModelProcess(child)
    try:
        info = read_model_info_unverified(resolve_model_path(spec))
        if info.kind != "cnn":  # the child serves CNNs; a handcrafted model loads here in no time
            raise ModelLoadError(f"{spec}: a {info.kind} model is not run in a model process")
    except BaseException:
        process.close()
        raise
    return PendingModel(info, process.wait_loaded)


def _rebuilt_error(name: str, message: str, setting: str | None, default: type[HistoViewerError]) -> Exception:
    """The child's error as the same ``HistoViewerError`` class, else ``default`` naming it."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, HistoViewerError):
        try:
            return cls(message, setting=setting)
        except TypeError:  # a class with another constructor
            pass
    return default(f"{name}: {message}", setting=setting)


class ModelProcess:
    """The child process and this side of its socket: ``wait_loaded`` (the classifier),
    ``classify`` (from several threads at once), ``close``."""

    def __init__(self, child: ModelChild) -> None:
        self._proc = child.process
        spec = child.spec
        self._spec = str(spec)
        self._conn = Connection(child.sock.detach())
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count()
        self._loaded: Future = Future()
        self._ended: str | None = None  # why the child is gone (no more batches)
        self._closing = False
        self.stain_unnormalised = 0
        self._receiver = threading.Thread(target=self._receive, name="histoviewer-model-process", daemon=True)
        self._receiver.start()

    def wait_loaded(self) -> PatchClassifier:
        """The classifier once the child has loaded it; raises what loading raised there."""
        try:
            info, domain_arrays, threads, engine = self._loaded.result()
            try:  # the checks load_model makes of the file's domain profile, naming the file
                _, domain = split_domain_tensors(domain_arrays, info.extra)
            except (ModelLoadError, ModelError, KeyError, TypeError, ValueError) as exc:
                raise ModelLoadError(f"{resolve_model_path(self._spec)}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        return _RemoteClassifier(self, info, domain, threads, engine)

    def _receive(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                kind = message[0]
                if kind == "loaded":
                    self._loaded.set_result(message[1:])
                elif kind == "load-error":
                    self._loaded.set_exception(_rebuilt_error(*message[1:], default=ModelLoadError))
                elif kind in ("result", "failed"):
                    with self._lock:
                        future = self._pending.pop(message[1])
                    if kind == "result":
                        self.stain_unnormalised = message[4]
                        future.set_result(PatchScores(message[2], message[3]))
                    else:
                        future.set_exception(_rebuilt_error(*message[2:], default=InferenceError))
        except (EOFError, OSError):
            pass  # the child ended (or this side closed)
        except Exception:
            log.exception("model process: unreadable message")
        self._end(self._gone())

    def _gone(self) -> str:
        """Why the child no longer answers, in the one wording both sides of the socket use."""
        code = self._proc.poll()
        why = "it was closed" if self._closing or code == 0 else f"it ended unexpectedly (exit status {code})"
        return f"model {self._spec!r}: the model process is gone: {why}"

    def _end(self, why: str) -> None:
        with self._lock:
            if self._ended is None:
                self._ended = why
            pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            future.set_exception(InferenceError(why))
        if not self._loaded.done():
            self._loaded.set_exception(ModelLoadError(why))

    def submit(self, patches: np.ndarray) -> Future:
        """The child's probabilities of ``patches`` (a ``Future`` of ``PatchScores``, failing
        with what failed there; ``InferenceError`` when the child is gone)."""
        arr = np.ascontiguousarray(patches)
        future: Future = Future()
        with self._lock:
            if self._ended is not None:
                raise InferenceError(self._ended)
            request = next(self._ids)
            self._pending[request] = future
        try:
            with self._send_lock:  # a request and its bytes go together
                self._conn.send(("classify", request, arr.shape, arr.dtype.str))
                self._conn.send_bytes(arr.reshape(-1).view(np.uint8).data if arr.size else b"")
        except (OSError, ValueError) as exc:
            with self._lock:
                self._pending.pop(request, None)
            # a child that died is seen here (broken pipe) or by the receiver (end of file),
            # whichever comes first: the same message either way
            if self._proc.poll() is not None:
                raise InferenceError(self._gone()) from exc
            raise InferenceError(f"model {self._spec!r}: cannot reach the model process: {exc}") from exc
        return future

    def close(self) -> None:
        """Ask the child to end, wait for it (killed after ``_CLOSE_WAIT_S``); safe twice."""
        self._closing = True
        try:
            with self._send_lock:
                self._conn.send(("close",))
        except (OSError, ValueError):
            pass
        try:
            self._proc.wait(_CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._receiver is not threading.current_thread():
            self._receiver.join(_CLOSE_WAIT_S)  # it reads the end of the child's socket
        self._conn.close()


class _RemoteClassifier(PatchClassifier):
    """A classifier loaded in a ``ModelProcess``: ``info`` as verified there, ``domain`` built
    here from the file's verified arrays; ``call_threads`` batches at once (the child's model
    threads); ``engine``: what runs the model there (``model_engine``)."""

    parallel_calls = True

    def __init__(self, process: ModelProcess, info: ModelInfo, domain, call_threads: int, engine: str) -> None:
        self._process = process
        self.info = info
        self.domain = domain
        self.call_threads = call_threads
        self.engine = engine

    @property
    def stain_unnormalised(self) -> int:  # counted in the child
        return self._process.stain_unnormalised

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        return self.classify(patches).probability

    def classify(self, patches: np.ndarray, domain_mask: np.ndarray | None = None) -> PatchScores:
        """The child's probabilities; the domain distances of the ``domain_mask`` patches
        computed here meanwhile, on the patches as the network reads them (stain-normalised
        as in the child: per patch, so a subset gets the same pixels)."""
        future = self._process.submit(patches)
        distance = None
        if self.domain is not None:
            arr = check_patch_batch(patches, self.input)
            pick = np.arange(len(arr)) if domain_mask is None else np.flatnonzero(domain_mask)
            distance = np.full(len(arr), np.nan, np.float32)
            if pick.size:
                chosen = arr[pick]
                normaliser = self._stain_normaliser()
                if normaliser is not None:
                    chosen = normaliser.apply(chosen).patches
                distance[pick] = masked_domain_distances(self.domain, chosen, None, self.input.mpp)
        scores = future.result()
        return PatchScores(scores.probability, distance)

    def close(self) -> None:
        self._process.close()
