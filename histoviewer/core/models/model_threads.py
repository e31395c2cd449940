"""How many threads call a CPU model at once, and the threads each call may use.

Shared by the headless pipeline (``inference.pipeline``) and the model's child process
(``models.model_server``), which must not import the pipeline (slide reading, scipy.ndimage).
"""

from __future__ import annotations

import sys

from histoviewer.core.cpu_cores import usable_cores
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.cnn_ort import (
    ENGINE_NAME,
    set_call_threads,
    set_default_intra_op_threads,
)

__all__ = ["MAX_MODEL_THREADS", "model_parallelism", "set_model_threads", "set_process_model_threads"]

MAX_MODEL_THREADS = 4


def model_parallelism(model: PatchClassifier, requested: int | None = None) -> tuple[int, int | None]:
    """(model threads, intra-op threads each) for ``model``: a CPU model that allows parallel
    calls (torch or onnxruntime) runs on several threads of one intra-op thread each (up to 4,
    the cores split between them), any other model on one thread with its own settings
    (None: left alone). ``requested``: a number of model threads to use instead (1: one
    thread, the engine's own setting).

    Why: torch's default is one intra-op thread per core, which waits at a barrier for a
    thread that lost its core to the region reader: on 2 shared cores the default CNN ran
    at 450-740 patches/s that way against 1,000-3,000 with two threads of one torch thread
    each, and 962 in the pipeline against 1,771 alone on a quiet machine (issue 15)."""
    remote = getattr(model, "call_threads", None)  # a model in another process (``model_process``)
    if remote:  # as many calls at once as it has model threads; this process's engine left alone
        return (remote if requested is None else max(1, requested)), None
    device = getattr(model, "device", None)
    if getattr(device, "type", None) != "cpu" or not getattr(model, "parallel_calls", False):
        return 1, None
    n_cores = usable_cores()
    threads = min(n_cores, MAX_MODEL_THREADS) if requested is None else max(1, requested)
    if threads == 1 and requested is not None:
        return 1, None
    return threads, max(1, n_cores // threads)


def set_model_threads(count: int) -> None:
    """Intra-op threads of the calling thread's model calls: onnxruntime's (``cnn_ort``) and,
    when a torch model has loaded torch, torch's (OpenMP: per thread, so the other threads of
    the process, the viewer's model worker among them, keep theirs). Never imports torch."""
    set_call_threads(count)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)


def set_process_model_threads(model: PatchClassifier, count: int) -> None:
    """The process-wide intra-op threads of ``model``'s engine: onnxruntime's default for an
    onnxruntime model, ``torch.set_num_threads`` for a torch one (torch is loaded by then;
    it is never imported here)."""
    if getattr(model, "engine", None) == ENGINE_NAME:
        set_default_intra_op_threads(count)
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)
