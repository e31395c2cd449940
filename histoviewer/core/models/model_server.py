"""The model's child process: load one CNN and classify the batches its parent sends.

Run as ``python -m histoviewer.core.models.model_server FD SPEC DEVICE`` (started by
``model_child.launch_model_child``; the parent's side is ``inference.model_process``).

What it imports is what a cold ``analyze`` waits for (issue 15): the file checks
(``model_verify``), the chain CNN on onnxruntime (``cnn_ort``) and numpy; no torch (unless the
engine is torch: a GPU, a residual network, ``HISTOVIEWER_INFERENCE_ENGINE=torch``), no
slide reading, and no domain or feature code (scipy.ndimage): the child classifies only.
The tissue check's descriptors (``DomainProfile``) are computed by the parent, which idles
while the model runs; the child sends the file's verified domain arrays for that.

Messages (``multiprocessing.connection``): to the parent ``("loaded", info, domain_arrays,
call_threads, engine)`` or ``("load-error", class name, message, setting)``; then per batch
``("result", id, probability, None, stain_unnormalised)`` or ``("failed", id, class name,
message, setting)``. From the parent ``("classify", id, shape, dtype)`` followed by the bytes,
or ``("close",)``.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

import numpy as np

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.model_engine import build_cnn, engine_of
from histoviewer.core.models.model_paths import resolve_model_path
from histoviewer.core.models.model_threads import model_parallelism, set_model_threads
from histoviewer.core.models.model_verify import DOMAIN_PREFIX, _info_of, read_verified

__all__ = ["error_fields", "load_for_serving", "serve"]


def error_fields(exc: BaseException) -> tuple[str, str, str | None]:
    return type(exc).__name__, str(exc), getattr(exc, "setting", None)


def load_for_serving(spec: str, device: str) -> tuple[PatchClassifier, dict[str, np.ndarray]]:
    """The verified CNN of ``spec`` on its engine, and the file's domain arrays (for the parent).

    The calibration and stain-normaliser entries are read as ``load_model`` reads them (the
    parent repeats ``load_model``'s domain checks when it builds the profile)."""
    path = resolve_model_path(spec)
    description, tensors, _ = read_verified(path)
    info = _info_of(path, description)
    if info.kind != "cnn":
        raise ModelLoadError(f"{path}: a {info.kind} model is not served in a model process")
    domain_arrays = {k: v for k, v in tensors.items() if k.startswith(DOMAIN_PREFIX)}
    network = {k: v for k, v in tensors.items() if not k.startswith(DOMAIN_PREFIX)}
    try:
        model = build_cnn(info, network, device)
        model.prepare_patches(np.zeros((0, info.input.patch_px, info.input.patch_px, 3), np.uint8))
    except ModelLoadError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ModelLoadError(f"{path}: {exc}", setting=exc.setting) from exc
    return model, domain_arrays


def serve(fd: int, spec: str, device: str) -> int:
    """Load the model, then classify what arrives until told to close or the parent's side
    of the socket ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it closes us
    conn = Connection(fd)
    try:
        model, domain_arrays = load_for_serving(spec, device)
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(("load-error", *error_fields(exc)))
        return 1
    threads, per_thread = model_parallelism(model)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="histoviewer-model",
                              initializer=set_model_threads if per_thread else None,
                              initargs=(per_thread,) if per_thread else ())
    send_lock = threading.Lock()

    def run(request: int, patches: np.ndarray) -> None:
        try:
            probability = np.asarray(model.predict_proba(patches), np.float32)
            reply = ("result", request, probability, None, model.stain_unnormalised)
        except Exception as exc:  # noqa: BLE001 - this batch fails, the parent marks its cells
            reply = ("failed", request, *error_fields(exc))
        with send_lock:
            conn.send(reply)

    try:
        conn.send(("loaded", model.info, domain_arrays, threads, engine_of(model)))
        while True:
            message = conn.recv()
            if message[0] != "classify":
                break
            _, request, shape, dtype = message
            buffer = bytearray(math.prod(shape) * np.dtype(dtype).itemsize)
            if buffer:
                conn.recv_bytes_into(buffer)
            else:
                conn.recv_bytes()
            pool.submit(run, request, np.frombuffer(buffer, dtype).reshape(shape))
    except (EOFError, OSError):
        pass  # the parent is gone
    finally:
        pool.shutdown(wait=True)
        model.close()
    return 0


if __name__ == "__main__":
    status = serve(int(sys.argv[1]), sys.argv[2], sys.argv[3])
    sys.stdout.flush()
    sys.stderr.flush()
    # Ended without the interpreter's teardown: with torch loaded it took 0.3-0.6 s, which
    # the parent waited for at its own exit (nothing here needs finalising: the model is
    # closed, the socket's end is closed by the kernel).
    os._exit(status)
