"""Start the model's child process first thing, before anything heavy is imported.

``inference.model_process`` runs the patch model in a child process (``models.model_server``)
so that loading it (onnxruntime for a chain CNN on the CPU; torch, 1.1-1.4 s holding the
interpreter lock, otherwise) overlaps this process's own work. Importing ``model_process``
costs ~0.4 s itself (numpy, scipy.ndimage through the model file reader), so its child
would start 0.4 s late. This module imports nothing but the standard library: the
CLI launches the child with it at once and hands it to ``model_process`` later.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CHILD_MODULE", "ENV_SWITCH", "ModelChild", "launch_model_child", "model_process_allowed",
           "model_process_forced"]

CHILD_MODULE = "histoviewer.core.models.model_server"  # run with ``python -m``
# "0": load the model in this process; "1": always in a child; unset: in a child when loading
# it imports torch (``models.engine_hint``), else here (onnxruntime loads in ~0.1 s).
ENV_SWITCH = "HISTOVIEWER_MODEL_PROCESS"


def model_process_allowed() -> bool:
    """False when turned off (``ENV_SWITCH`` = 0) or in a frozen app (no ``python -m``)."""
    return os.environ.get(ENV_SWITCH, "1").strip() != "0" and not getattr(sys, "frozen", False)


def model_process_forced() -> bool:
    """True when ``ENV_SWITCH`` = 1: a child even for a model that loads without torch."""
    return os.environ.get(ENV_SWITCH, "").strip() == "1"


@dataclass(frozen=True)
class ModelChild:
    """A started child (``CHILD_MODULE``) loading ``spec`` on ``device``, and this side of
    its socket."""

    process: subprocess.Popen
    sock: socket.socket
    spec: str
    device: str


def launch_model_child(spec: str | os.PathLike[str], device: str = "auto") -> ModelChild:
    """Start the child; raises ``OSError`` when it cannot be started."""
    ours, theirs = socket.socketpair()
    # the child imports the same histoviewer as this process, wherever it was found
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE, str(theirs.fileno()), str(spec), device],
            # its stdout goes to our stderr: ``analyze --json`` prints only JSON on stdout
            pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL, stdout=2)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return ModelChild(process, ours, str(spec), device)
