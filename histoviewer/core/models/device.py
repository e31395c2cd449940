"""Which torch device runs a model: CUDA, then Apple MPS, then the CPU, with an override."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from histoviewer.core.errors import ModelError

__all__ = ["DEVICE_CHOICES", "DeviceChoice", "choose_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DeviceChoice:
    """The device picked and why, for logs and the GUI (``reason`` is one short sentence)."""

    device: torch.device
    reason: str

    @property
    def kind(self) -> str:
        return self.device.type


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(request: str = "auto") -> DeviceChoice:
    """Resolve ``auto``/``cpu``/``cuda[:N]``/``mps`` to a usable device.

    ``auto`` falls back quietly (CUDA -> MPS -> CPU). An explicit request for a device that
    is not there is an error rather than a silent CPU run, because the user asked for speed
    they would not get.
    """
    req = (request or "auto").strip().lower()
    if req == "auto":
        if torch.cuda.is_available():
            return DeviceChoice(torch.device("cuda"), f"CUDA: {torch.cuda.get_device_name(0)}")
        if _mps_available():
            return DeviceChoice(torch.device("mps"), "Apple MPS")
        return DeviceChoice(torch.device("cpu"), "no GPU found, using the CPU")
    if req == "cpu":
        return DeviceChoice(torch.device("cpu"), "CPU requested")
    if req.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(
                "device 'cuda' requested but this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); choose the CPU device or install a CUDA build of torch",
                setting="device",
            )
        dev = torch.device(req)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelError(f"device {req!r} requested but only {torch.cuda.device_count()} GPU(s)")
        return DeviceChoice(dev, f"CUDA requested: {torch.cuda.get_device_name(dev)}")
    if req == "mps":
        if not _mps_available():
            raise ModelError("device 'mps' requested but Apple MPS is not available here")
        return DeviceChoice(torch.device("mps"), "Apple MPS requested")
    raise ModelError(f"unknown device {request!r}; choose one of {', '.join(DEVICE_CHOICES)}")
