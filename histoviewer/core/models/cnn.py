"""The CNN patch classifier: a torch network behind the ``PatchClassifier`` interface.

Inference is prepared once per device: on the CPU the batch norms are folded into the
convolutions (``torch.fx`` fuse), tensors are channels-last and calls run under
``inference_mode``; on CUDA it runs in float16 autocast. Patches travel to the device as
uint8 (a quarter of the bytes) and are normalised there.

On the CPU, ``model_file.load_model`` runs the chain architectures on onnxruntime instead
(``cnn_ort``, no torch import); this class serves GPUs, the residual networks, training,
fine-tuning and Grad-CAM, and ``HISTOVIEWER_INFERENCE_ENGINE=torch``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.fx.experimental.optimization as fx_optimization
from torch import nn

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn_arch import build_network
from histoviewer.core.models.device import choose_device
from histoviewer.core.models.domain import DomainProfile
from histoviewer.core.models.logit_classifier import LogitClassifier, checked_logits

__all__ = ["CNN_NORMALISATION", "CnnClassifier", "normalise_uint8_nhwc"]

# (rgb / 255 - 0.5) / 0.25: centred, roughly unit spread for H&E.
CNN_NORMALISATION = "(rgb / 255 - 0.5) / 0.25, per channel"
_MEAN = 0.5
_STD = 0.25
_SCALE = 1.0 / (255 * _STD)
_SHIFT = _MEAN / _STD


def normalise_uint8_nhwc(batch: torch.Tensor) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32 channels-last, normalised.

    The permute is a view, so the result is channels-last without a copy of its own.
    """
    return batch.permute(0, 3, 1, 2).float().mul_(_SCALE).sub_(_SHIFT)


def normalise_unit_rgb(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB in [0, 1] (after augmentation) -> the network's input."""
    return (x - _MEAN) / _STD


class CnnClassifier(LogitClassifier):
    """A trained network plus its ``ModelInfo``; ``predict_proba`` batches internally."""

    # Inference is a pure function of the batch (eval mode, inference_mode, no state written
    # but the locked stain counter), so the headless pipeline may call it from several threads.
    parallel_calls = True
    engine = "torch"  # model_engine.TORCH: recorded with the results (ModelRecord.engine)

    def __init__(self, network: nn.Module, info: ModelInfo, device: str = "auto"):
        if info.kind != "cnn":
            raise ModelLoadError(f"model kind {info.kind!r} is not a CNN")
        self.info = info
        self.domain: DomainProfile | None = None  # set by load_model / training when the file has one
        self.network = network.eval()
        self.device_choice = choose_device(device)
        self.device = self.device_choice.device
        self._inference_net = self._prepare(self.network)
        self.batch_size = 1024 if self.device.type == "cuda" else 256

    @classmethod
    def new(cls, info: ModelInfo, device: str = "auto") -> CnnClassifier:
        """An untrained network of ``info.architecture`` (used by training)."""
        return cls(build_network(info.architecture, info.extra.get("arch_config")), info, device)

    @classmethod
    def from_tensors(
        cls, info: ModelInfo, tensors: dict[str, np.ndarray], device: str = "auto"
    ) -> CnnClassifier:
        network = build_network(info.architecture, info.extra.get("arch_config"))
        state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in tensors.items()}
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ModelLoadError(
                f"weights do not fit architecture {info.architecture!r}: {first}"
            ) from exc
        return cls(network, info, device)

    def _prepare(self, network: nn.Module) -> nn.Module:
        net = network.eval()
        if self.device.type == "cpu":
            # Folding batch norm and channels-last roughly triple CPU throughput (benchmarks).
            net = fx_optimization.fuse(net)
            return net.to(memory_format=torch.channels_last)
        return net.to(self.device).to(memory_format=torch.channels_last)

    def refresh(self) -> None:
        """Rebuild the inference copy after ``network``'s weights changed (training)."""
        self.network.eval()
        self._inference_net = self._prepare(self.network)

    def tensors(self) -> dict[str, np.ndarray]:
        return {
            k: v.detach().cpu().contiguous().numpy() for k, v in self.network.state_dict().items()
        }

    def _logits_of_prepared(self, arr: np.ndarray) -> np.ndarray:
        """Logits of patches already through ``prepare_patches`` (checked, stain-normalised)."""
        out = np.empty(len(arr), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(arr), self.batch_size):
                chunk = torch.from_numpy(arr[start : start + self.batch_size])
                if self.device.type != "cpu":
                    chunk = chunk.to(self.device, non_blocking=True)
                x = normalise_uint8_nhwc(chunk)
                if self.device.type == "cuda":
                    with torch.autocast("cuda", dtype=torch.float16):
                        y = self._inference_net(x)
                else:
                    y = self._inference_net(x)
                out[start : start + len(chunk)] = y.float().cpu().numpy()
        return checked_logits(out, self.info.name)

    def close(self) -> None:
        self._inference_net = self.network.cpu()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
