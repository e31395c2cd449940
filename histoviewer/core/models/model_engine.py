"""Which engine runs a model's inference: ONNX Runtime or torch (and numpy for handcrafted).

- ``onnxruntime`` (``cnn_ort``): a chain CNN (compact-cnn, strided-cnn, screen-cnn) on the
  CPU. No torch import (1.35-1.5 s of every cold run on 2 cores, issue 15).
- ``torch`` (``cnn``): GPUs (CUDA, Apple MPS), the residual architectures (resnet,
  resnet50), and wherever onnxruntime is missing. Training, fine-tuning and Grad-CAM always
  use torch whatever runs inference.

``ENGINE_ENV`` (``auto`` by default, ``torch``, ``onnxruntime``) forces one: ``torch`` runs
every CNN with torch; ``onnxruntime`` runs every model it can with it, and torch where it
cannot (a GPU device, a residual network), saying why. ``auto`` with device ``auto`` uses
ONNX Runtime when no GPU can be present (Linux without the NVIDIA driver, Windows without
``nvcuda.dll``); where one may be, torch picks the device, as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.classifier import ModelInfo, PatchClassifier
from histoviewer.core.models.cnn_chain import CHAIN_ARCHITECTURES
from histoviewer.core.models.cnn_ort import ENGINE_NAME as ONNXRUNTIME
from histoviewer.core.models.cnn_ort import ORT_AVAILABLE, OrtCnnClassifier
from histoviewer.core.models.engine_hint import ENGINE_ENV, gpu_possible

__all__ = [
    "ENGINES",
    "ENGINE_ENV",
    "NUMPY",
    "ONNXRUNTIME",
    "TORCH",
    "EngineChoice",
    "build_cnn",
    "choose_engine",
    "engine_description",
    "engine_of",
    "engine_setting",
]

TORCH = "torch"
NUMPY = "numpy"  # the handcrafted model: numpy only, whatever is asked
ENGINES = ("auto", TORCH, ONNXRUNTIME)


@dataclass(frozen=True)
class EngineChoice:
    """The engine chosen for a model and why (one short sentence, for logs and provenance)."""

    engine: str
    reason: str


def engine_setting(requested: str | None = None) -> str:
    """``requested``, else ``ENGINE_ENV``, else ``auto``; ``ModelLoadError`` for another name."""
    value = (requested or os.environ.get(ENGINE_ENV) or "auto").strip().lower()
    if value not in ENGINES:
        raise ModelLoadError(f"unknown inference engine {value!r} (environment {ENGINE_ENV}); "
                             f"choose one of {', '.join(ENGINES)}")
    return value


def _gpu_possible() -> bool:
    return gpu_possible()


def choose_engine(info: ModelInfo, device: str = "auto", requested: str | None = None) -> EngineChoice:
    """The engine for ``info``'s model on ``device`` (see the module docstring)."""
    if info.kind != "cnn":
        return EngineChoice(NUMPY, f"a {info.kind} model runs on numpy")
    setting = engine_setting(requested)
    if setting == TORCH:
        return EngineChoice(TORCH, f"torch requested ({ENGINE_ENV}=torch)")
    dev = (device or "auto").strip().lower()
    forced = setting == ONNXRUNTIME
    if info.architecture not in CHAIN_ARCHITECTURES:
        return EngineChoice(TORCH, f"architecture {info.architecture} runs on torch only")
    if dev != "cpu" and (dev != "auto" or _gpu_possible()):
        return EngineChoice(TORCH, f"device {dev}: torch chooses and runs the device")
    if not ORT_AVAILABLE:
        if forced:
            raise ModelLoadError(f"onnxruntime requested ({ENGINE_ENV}) but it is not installed")
        return EngineChoice(TORCH, "onnxruntime is not installed")
    why = f"requested ({ENGINE_ENV}=onnxruntime)" if forced else "a chain CNN on the CPU"
    return EngineChoice(ONNXRUNTIME, why)


def engine_of(model: object) -> str:
    """The engine a loaded classifier runs on ("onnxruntime", "torch", "numpy" for the
    handcrafted model); "" when it does not say (a classifier of another kind)."""
    engine = getattr(model, "engine", None)
    if engine:
        return str(engine)
    info = getattr(model, "info", None)
    return NUMPY if getattr(info, "kind", None) == "handcrafted" else ""


def engine_description(info: ModelInfo, device: str = "auto") -> str:
    """What would run ``info``'s model on ``device``, in words for listings (``histoviewer
    models``, Help > About): "onnxruntime (a chain CNN on the CPU)"; an unknown engine
    setting is said, not raised, so a listing still shows every model."""
    try:
        choice = choose_engine(info, device)
    except ModelLoadError as exc:  # an unknown ENGINE_ENV value
        return f"unknown: {exc}"
    return f"{choice.engine} ({choice.reason})"


def build_cnn(info: ModelInfo, tensors: dict[str, np.ndarray], device: str = "auto",
              engine: str | None = None) -> PatchClassifier:
    """The CNN classifier of verified ``info`` and its network's arrays (the domain profile's
    split off) on the engine ``choose_engine`` picks; imports torch only when that is torch
    (``model_file.load_model`` and the model's child process both build through here)."""
    if choose_engine(info, device, engine).engine == ONNXRUNTIME:
        return OrtCnnClassifier(info, tensors)
    # Lazy: models.cnn imports torch (seconds of start-up); the CPU chain CNNs never need it.
    from histoviewer.core.models.cnn import CnnClassifier

    return CnnClassifier.from_tensors(info, tensors, device=device)
