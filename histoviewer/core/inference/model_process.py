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
this process on a thread, ``model_loading``).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from histoviewer.core import errors
from histoviewer.core.errors import HistoViewerError, InferenceError, ModelLoadError
from histoviewer.core.inference.model_loading import PendingModel
from histoviewer.core.inference.pipeline import _set_torch_threads, model_parallelism
from histoviewer.core.model_child import ENV_SWITCH, ModelChild, launch_model_child
from histoviewer.core.models.classifier import ModelInfo, PatchClassifier, PatchScores
from histoviewer.core.models.model_file import read_model_info_unverified
from histoviewer.core.models.registry import open_model, resolve_model_path

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
    except BaseException:
        process.close()
        raise
    return PendingModel(info, process.wait_loaded)


def _error_fields(exc: BaseException) -> tuple[str, str, str | None]:
    return type(exc).__name__, str(exc), getattr(exc, "setting", None)


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
            info, domain, threads = self._loaded.result()
        except BaseException:
            self.close()
            raise
        return _RemoteClassifier(self, info, domain, threads)

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
        except Exception:  # noqa: BLE001 - a garbled message: end the run's model, not hang it
            log.exception("model process: unreadable message")
        code = self._proc.poll()
        why = "it was closed" if self._closing or code == 0 else f"it ended unexpectedly (exit status {code})"
        self._end(f"model {self._spec!r}: the model process is gone: {why}")

    def _end(self, why: str) -> None:
        with self._lock:
            if self._ended is None:
                self._ended = why
            pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            future.set_exception(InferenceError(why))
        if not self._loaded.done():
            self._loaded.set_exception(ModelLoadError(why))

    def classify(self, patches: np.ndarray, domain_mask: np.ndarray | None) -> PatchScores:
        """The child's ``classify``; raises what it raised there (``InferenceError`` when the
        child is gone)."""
        arr = np.ascontiguousarray(patches)
        future: Future = Future()
        with self._lock:
            if self._ended is not None:
                raise InferenceError(self._ended)
            request = next(self._ids)
            self._pending[request] = future
        mask = None if domain_mask is None else np.asarray(domain_mask, bool)
        try:
            with self._send_lock:  # a request and its bytes go together
                self._conn.send(("classify", request, arr.shape, arr.dtype.str, mask))
                self._conn.send_bytes(arr.reshape(-1).view(np.uint8).data if arr.size else b"")
        except (OSError, ValueError) as exc:
            with self._lock:
                self._pending.pop(request, None)
            raise InferenceError(f"model {self._spec!r}: cannot reach the model process: {exc}") from exc
        return future.result()

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
    """A classifier loaded in a ``ModelProcess``: ``info`` and ``domain`` as verified there;
    ``call_threads`` batches at once (the child's model threads: ``pipeline.model_parallelism``)."""

    parallel_calls = True

    def __init__(self, process: ModelProcess, info: ModelInfo, domain, call_threads: int) -> None:
        self._process = process
        self.info = info
        self.domain = domain
        self.call_threads = call_threads

    @property
    def stain_unnormalised(self) -> int:  # counted in the child
        return self._process.stain_unnormalised

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        return self.classify(patches).probability

    def classify(self, patches: np.ndarray, domain_mask: np.ndarray | None = None) -> PatchScores:
        return self._process.classify(patches, domain_mask)

    def close(self) -> None:
        self._process.close()


def _serve(fd: int, spec: str, device: str) -> int:
    """The child: load the model, then classify what arrives until told to close or the
    parent's side of the socket ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it closes us
    conn = Connection(fd)
    try:
        model = open_model(spec, device=device)
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(("load-error", *_error_fields(exc)))
        return 1
    threads, torch_threads = model_parallelism(model)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="histoviewer-model",
                              initializer=_set_torch_threads if torch_threads else None,
                              initargs=(torch_threads,) if torch_threads else ())
    send_lock = threading.Lock()

    def run(request: int, patches: np.ndarray, mask: np.ndarray | None) -> None:
        try:
            scores = model.classify(patches, domain_mask=mask)
            reply = ("result", request, scores.probability, scores.domain_distance, model.stain_unnormalised)
        except Exception as exc:  # noqa: BLE001 - this batch fails, the parent marks its cells
            reply = ("failed", request, *_error_fields(exc))
        with send_lock:
            conn.send(reply)

    try:
        conn.send(("loaded", model.info, model.domain, threads))
        while True:
            message = conn.recv()
            if message[0] != "classify":
                break
            _, request, shape, dtype, mask = message
            buffer = bytearray(math.prod(shape) * np.dtype(dtype).itemsize)
            if buffer:
                conn.recv_bytes_into(buffer)
            else:
                conn.recv_bytes()
            pool.submit(run, request, np.frombuffer(buffer, dtype).reshape(shape), mask)
    except (EOFError, OSError):
        pass  # the parent is gone
    finally:
        pool.shutdown(wait=True)
        model.close()
    return 0


if __name__ == "__main__":
    status = _serve(int(sys.argv[1]), sys.argv[2], sys.argv[3])
    sys.stdout.flush()
    sys.stderr.flush()
    # Ended without the interpreter's teardown: with torch loaded it took 0.3-0.6 s, which
    # the parent waited for at its own exit (nothing here needs finalising: the model is
    # closed, the socket's end is closed by the kernel).
    os._exit(status)
