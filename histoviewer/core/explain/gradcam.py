"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) of a CNN
patch classifier's tumour decision: which pixels of a patch pushed it towards tumour.

The map is computed on the last convolutional feature maps, the ones global average pooling
reads (``feature_module``): ``compact-cnn``/``strided-cnn``'s ``features`` (6 x 6 cells at
96 px), ``resnet``'s ``stages`` (6 x 6) and ``resnet50``'s ``layer4`` (3 x 3). With
activations ``A_k`` and the gradient ``g_k`` of the score with respect to them, Grad-CAM is
``relu(sum_k w_k A_k)`` with ``w_k`` the spatial mean of ``g_k``; Grad-CAM++ weights each
position's positive gradient by ``alpha = g^2 / (2 g^2 + sum(A) g^3)`` (the closed form for an
exponential score). The map is upsampled bilinearly to the patch (``P x P`` model pixels, each
cell spread over its share of the patch: ``upsample_cells``) and scaled to [0, 1] per patch; ``peak`` keeps its height before scaling, so a patch whose map is
all zero (nothing pushed it towards tumour) is not drawn as if it had a hot spot.

The score is the **calibrated** tumour log-odds, ``logit(P)`` with ``P`` the probability every
front end shows. Every calibration the model files use is a monotone map of the raw logit
(temperature ``z / T``, Platt ``a z + b``, isotonic), so its gradient is the raw logit's times
a factor ``dcal/dz`` that is the same at every pixel; the map is therefore the raw logit's map
scaled by that factor, whose sign is kept (a Platt ``a < 0`` would flip the evidence) and whose
size the per-patch scaling removes. ``calibrated_slope`` measures it numerically.

Grad-CAM++ did not earn its place: on phantom patches with pixel-exact tumour it put less of
its mass on tumour than Grad-CAM (0.85 vs 0.91 for the default CNN, 0.81 vs 0.86 for
``cnn-resnet``) with the same pointing-game hits (all 101 maxima on tumour;
``benchmarks/bench_gradcam.py``, docs/benchmarks.md), so the gallery and the viewer's
inspector show Grad-CAM; ``method`` keeps it for that comparison.

The network is the classifier's training copy (``CnnClassifier.network``: batch norm not
folded, evaluation mode, dropout off), run with gradients on the classifier's device; the
patches go through ``prepare_patches`` first (checks, stain normalisation), so the map is of
the patch exactly as the model read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from histoviewer.core.errors import ModelError
from histoviewer.core.models.calibration import CALIBRATION_KEY, calibrated_probability
from histoviewer.core.models.cnn import CnnClassifier, normalise_uint8_nhwc
from histoviewer.core.models.cnn_arch import CompactCnn, ResNet, StridedCnn
from histoviewer.core.models.cnn_resnet50 import ResNet50

__all__ = [
    "CAM_METHODS",
    "GradCam",
    "calibrated_slope",
    "feature_module",
    "grad_cam",
    "upsample_cells",
]

CAM_METHODS = ("gradcam", "gradcam++")
_BATCH = 64  # patches per backward pass: bounded memory even for ResNet-50 on the CPU
_EPS = 1e-12


@dataclass(frozen=True)
class GradCam:
    """Grad-CAM maps of N patches.

    ``cam``: float32 ``(N, P, P)`` in [0, 1], in the model-pixel frame of ``patches`` (the
    patches as the model read them, after stain normalisation), each scaled by its own peak;
    ``cam_cells``: float32 ``(N, h, w)`` the unscaled map on the feature grid (``h x w`` cells,
    each ``P / h`` model px); ``peak``: float32 ``(N,)`` the unscaled maximum (0: no pixel
    pushed the patch towards tumour, ``cam`` is all zero); ``probability``: calibrated P;
    ``logit``: the raw logit; ``method``: "gradcam" or "gradcam++"; ``layer``: the feature
    module's name.
    """

    cam: np.ndarray
    cam_cells: np.ndarray
    peak: np.ndarray
    patches: np.ndarray
    probability: np.ndarray
    logit: np.ndarray
    method: str
    layer: str


def feature_module(network: nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` whose output is the last convolutional maps, the ones the global
    pool reads, for every architecture ``cnn_arch`` builds; ``ModelError`` for another."""
    if isinstance(network, (CompactCnn, StridedCnn)):
        return "features", network.features
    if isinstance(network, ResNet):
        return "stages", network.stages
    if isinstance(network, ResNet50):
        return "layer4", network.layer4
    raise ModelError(
        f"no Grad-CAM target layer known for the network {type(network).__name__}"
    )


def calibrated_slope(classifier: CnnClassifier, logits: np.ndarray) -> np.ndarray:
    """``d logit(P) / d z`` per patch, by a central difference on the model's calibration
    (``P`` the calibrated probability, ``z`` the raw logit); float64 ``(N,)``. Zero on a flat
    step of an isotonic map, where the calibrated score does not move with the pixels."""
    calibration = classifier.info.extra.get(CALIBRATION_KEY)
    z = np.asarray(logits, np.float64)
    h = 1e-3 * np.maximum(1.0, np.abs(z))

    def cal_logit(v: np.ndarray) -> np.ndarray:
        p = np.clip(
            np.asarray(calibrated_probability(v, calibration), np.float64),
            1e-7,
            1 - 1e-7,
        )
        return np.log(p) - np.log1p(-p)

    return (cal_logit(z + h) - cal_logit(z - h)) / (2 * h)


def _cam_batch(
    network: nn.Module, module: nn.Module, x: torch.Tensor, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps ``(n, h, w)`` before relu-scaling, raw logits ``(n,)``) of one normalised batch."""
    store: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
        store["a"] = out

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = network(x)
            acts = store["a"]
            (grads,) = torch.autograd.grad(logits.sum(), acts)
    finally:
        handle.remove()
    acts, grads = acts.detach().float(), grads.detach().float()
    if method == "gradcam":
        weights = grads.mean(dim=(2, 3), keepdim=True)
    else:  # Grad-CAM++, exponential score: alpha = g^2 / (2 g^2 + sum_ij(A) g^3)
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
        alpha = g2 / torch.where(denom.abs() > _EPS, denom, torch.ones_like(denom))
        weights = (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(dim=1), logits.detach().float()


def upsample_cells(cells: torch.Tensor, patch_px: int) -> torch.Tensor:
    """``(N, h, w)`` feature-grid maps -> ``(N, P, P)`` model px, a bilinear image resize:
    cell ``j`` covers model pixels ``[s j, s (j + 1))`` with ``s = P / h``, as Grad-CAM's
    reference implementations draw it.

    Measured, not assumed: strided convolutions centre cell ``j`` geometrically on pixel ``s j``
    (half a cell up-left of the resize's placement), and the cells' measured effective
    receptive fields are squeezed towards the patch centre at the edges. Both placements were
    tried on phantom patches whose tumour is known pixel by pixel: for the default CNN the
    resize put 0.91 of the map's mass on tumour with every maximum on tumour, the geometric
    centres 0.88 and 96 %, the measured effective centres 0.89 and 97 % (``cnn-resnet``: 0.86
    / 100 % against 0.85 / 97 % and 0.86 / 90 %; ``benchmarks/bench_gradcam.py``,
    docs/benchmarks.md). A hand-built network that looks through one centre tap follows the
    geometry exactly, so its map sits up to half a cell off (tests/core/test_explain_gradcam.py
    allows for that): a Grad-CAM map is good to a cell (16 model px at 96 px), not finer.
    """
    return F.interpolate(
        cells[:, None], size=(patch_px, patch_px), mode="bilinear", align_corners=False
    )[:, 0]


def grad_cam(
    classifier: CnnClassifier, patches: np.ndarray, method: str = "gradcam"
) -> GradCam:
    """Grad-CAM (or Grad-CAM++) of ``(N, P, P, 3)`` uint8 patches at the model's scale, on
    the calibrated tumour log-odds (see the module docstring)."""
    if method not in CAM_METHODS:
        raise ModelError(
            f"unknown saliency method {method!r}; known: {', '.join(CAM_METHODS)}"
        )
    as_torch = getattr(classifier, "as_torch", None)
    if as_torch is not None:  # a CNN run on onnxruntime (models.cnn_ort): the gradients need torch's
        classifier = as_torch()
    if not isinstance(classifier, CnnClassifier):
        raise ModelError(
            f"Grad-CAM needs a CNN; model {classifier.info.name!r} is {classifier.info.kind}"
        )
    arr = classifier.prepare_patches(patches)
    network = classifier.network.eval()
    name, module = feature_module(network)
    device = next(network.parameters()).device
    maps, logits = [], []
    for start in range(0, len(arr), _BATCH):
        x = normalise_uint8_nhwc(
            torch.from_numpy(arr[start : start + _BATCH]).to(device)
        )
        cam, z = _cam_batch(network, module, x, method)
        maps.append(cam.cpu())
        logits.append(z.cpu())
    p = classifier.input.patch_px
    if not maps:
        empty = np.zeros((0, p, p), np.float32)
        return GradCam(
            empty,
            empty[:, :1, :1],
            np.zeros(0, np.float32),
            arr,
            np.zeros(0, np.float32),
            np.zeros(0, np.float32),
            method,
            name,
        )
    raw = torch.cat(maps)
    z = torch.cat(logits).numpy().astype(np.float64)
    if not np.all(np.isfinite(z)):
        raise ModelError(f"model {classifier.info.name!r} produced non-finite outputs")
    slope = (
        torch.from_numpy(np.sign(calibrated_slope(classifier, z)))
        .float()
        .view(-1, 1, 1)
    )
    cells = F.relu(raw * slope)
    peak = cells.amax(dim=(1, 2))
    up = upsample_cells(cells, p)
    top = up.amax(dim=(1, 2))
    up = up.clamp_min(0) / torch.where(top > _EPS, top, torch.ones_like(top)).view(
        -1, 1, 1
    )
    prob = np.asarray(
        calibrated_probability(z, classifier.info.extra.get(CALIBRATION_KEY)),
        np.float32,
    )
    return GradCam(
        cam=up.numpy().astype(np.float32),
        cam_cells=cells.numpy().astype(np.float32),
        peak=peak.numpy().astype(np.float32),
        patches=arr,
        probability=prob,
        logit=z.astype(np.float32),
        method=method,
        layer=name,
    )
