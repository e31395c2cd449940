"""The CNN architectures that are simple chains, described without torch.

``compact-cnn``, ``strided-cnn`` and ``screen-cnn`` (``cnn_arch``) are one chain: conv
(no bias) + batch norm + ReLU stages, global average pooling, dropout, one linear unit.
This module lists a chain's convolutions from the architecture's settings (the same
``features.<i>`` array names torch's ``nn.Sequential`` gives them), the arrays such a
network holds (``chain_shapes``, so a model file can be checked before torch or any array
is read), and folds each batch norm into its convolution in numpy (``folded_chain``): the
inference-time network the torch-free engine (``cnn_ort``) runs. ``resnet`` and
``resnet50`` are not chains (residual additions): they stay torch-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.cnn_config import MAX_PARAMETERS, checked_settings
from histoviewer.core.models.engine_hint import CHAIN_ARCHITECTURES

__all__ = ["BN_EPS", "CHAIN_ARCHITECTURES", "ChainConv", "FoldedChain", "array_mismatch", "chain_convs",
           "chain_shapes", "folded_chain"]

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default, which every chain architecture uses
_BN_ARRAYS = ("weight", "bias", "running_mean", "running_var")
_MODULES_PER_STAGE = 3  # conv, batch norm, ReLU: the Sequential indices step by 3


@dataclass(frozen=True)
class ChainConv:
    """One conv + batch norm + ReLU stage: ``features.<conv_index>`` is the conv (no bias),
    ``features.<conv_index + 1>`` its batch norm; ``kernel`` square, padding ``kernel // 2``."""

    conv_index: int
    c_in: int
    c_out: int
    kernel: int
    stride: int

    @property
    def conv_name(self) -> str:
        return f"features.{self.conv_index}"

    @property
    def bn_name(self) -> str:
        return f"features.{self.conv_index + 1}"


@dataclass(frozen=True)
class FoldedChain:
    """A chain's inference-time arrays, batch norm folded: per stage ``(weight (O, I, K, K),
    bias (O,), stride)`` float32, then the linear head ``head_weight (1, C)``, ``head_bias (1,)``."""

    stages: tuple[tuple[np.ndarray, np.ndarray, int], ...]
    head_weight: np.ndarray
    head_bias: np.ndarray


def chain_convs(architecture: str, config: dict[str, Any] | None = None) -> list[ChainConv]:
    """The stages of a chain architecture, in order (``cnn_arch.CompactCnn``/``StridedCnn``);
    ``ModelLoadError`` for an architecture that is not a chain or for bad settings."""
    if architecture not in CHAIN_ARCHITECTURES:
        raise ModelLoadError(f"architecture {architecture!r} is not a simple conv chain")
    cfg = checked_settings(architecture, config)
    widths = [int(w) for w in cfg["widths"]]
    depths = [int(d) for d in cfg.get("depths", [1] * len(widths))]
    if len(depths) != len(widths):
        raise ModelLoadError(f"architecture {architecture}: widths and depths/blocks differ in length")
    convs: list[ChainConv] = []
    c_in = 3
    for width, depth in zip(widths, depths, strict=True):
        for j in range(depth):
            convs.append(ChainConv(len(convs) * _MODULES_PER_STAGE, c_in, width, 3, 2 if j == 0 else 1))
            c_in = width
    expand = int(cfg.get("expand", 0) or 0)
    if expand:
        convs.append(ChainConv(len(convs) * _MODULES_PER_STAGE, c_in, expand, 1, 1))
    return convs


def chain_shapes(architecture: str, config: dict[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    """Every array (name -> shape) of the chain network ``cnn_arch.build_network`` would build
    (``cnn_arch.expected_shapes`` without torch); ``ModelLoadError`` above ``MAX_PARAMETERS``."""
    shapes: dict[str, tuple[int, ...]] = {}
    n_params = 0
    convs = chain_convs(architecture, config)
    for conv in convs:
        shapes[f"{conv.conv_name}.weight"] = (conv.c_out, conv.c_in, conv.kernel, conv.kernel)
        for name in _BN_ARRAYS:
            shapes[f"{conv.bn_name}.{name}"] = (conv.c_out,)
        shapes[f"{conv.bn_name}.num_batches_tracked"] = ()
        n_params += conv.c_out * conv.c_in * conv.kernel**2 + 2 * conv.c_out
    c_last = convs[-1].c_out
    shapes["head.weight"] = (1, c_last)
    shapes["head.bias"] = (1,)
    n_params += c_last + 1
    if n_params > MAX_PARAMETERS:
        raise ModelLoadError(f"architecture {architecture} with these settings has {n_params:,} "
                             f"parameters, more than {MAX_PARAMETERS:,}; refused")
    return shapes


def array_mismatch(wanted: dict[str, tuple[int, ...]], declared: dict[str, tuple[int, ...]]
                   ) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, of another shape) array names, sorted, of ``declared`` shapes
    against the ``wanted`` network's. A 0-d array (batch norm's step counter) may be stored
    as shape (1,): torch loads that."""
    missing = sorted(set(wanted) - set(declared))
    unexpected = sorted(set(declared) - set(wanted))
    wrong = sorted(k for k in set(wanted) & set(declared)
                   if wanted[k] != declared[k] and not (wanted[k] == () and declared[k] == (1,)))
    return missing, unexpected, wrong


def folded_chain(architecture: str, config: dict[str, Any] | None,
                 tensors: dict[str, np.ndarray]) -> FoldedChain:
    """The chain's arrays with every batch norm folded into its conv (in float64, stored
    float32): ``w' = w * g / sqrt(v + eps)``, ``b' = beta - mean * g / sqrt(v + eps)``, as
    torch's ``fuse`` does on the CPU. ``ModelLoadError`` when ``tensors`` do not fit."""
    wanted = chain_shapes(architecture, config)
    missing, unexpected, wrong = array_mismatch(wanted, {k: tuple(np.shape(v)) for k, v in tensors.items()})
    if missing or unexpected or wrong:
        first = missing[:1] or unexpected[:1] or wrong[:1]
        raise ModelLoadError(f"weights do not fit architecture {architecture!r}: {len(missing)} missing, "
                             f"{len(unexpected)} unexpected, {len(wrong)} of another shape ({first[0]!r})")
    stages = []
    for conv in chain_convs(architecture, config):
        weight = np.asarray(tensors[f"{conv.conv_name}.weight"], np.float64)
        gamma, beta, mean, var = (np.asarray(tensors[f"{conv.bn_name}.{n}"], np.float64) for n in _BN_ARRAYS)
        scale = gamma / np.sqrt(var + BN_EPS)
        stages.append((np.ascontiguousarray(weight * scale[:, None, None, None], np.float32),
                       np.ascontiguousarray(beta - mean * scale, np.float32), conv.stride))
    return FoldedChain(tuple(stages), np.ascontiguousarray(tensors["head.weight"], np.float32),
                       np.ascontiguousarray(np.reshape(tensors["head.bias"], (1,)), np.float32))
