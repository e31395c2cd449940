"""CNN architectures for 96 px patches, built from a name and a small JSON config.

Only these names can be built, so a model file chooses among known code; it never carries
code of its own. Every architecture has the same shape: ``embed(x) -> (N, D)`` pooled
features, ``head(emb) -> (N,)`` one tumour logit, and ``forward(x) = head(embed(x))`` (the
out-of-domain score reads ``embed``).

- ``compact-cnn`` (default): ``strided-cnn``'s four stride-2 stages with extra stride-1
  3x3 convs where the maps are small (``depths``; by default one more at 6 px, so the extra
  depth, width of receptive field and parameters cost little CPU time) and an optional 1x1
  widening before the pool (``expand``, off by default). About 0.25 M parameters, about
  1.2x ``strided-cnn``'s CPU time per patch (docs/benchmarks.md).
- ``strided-cnn``: four 3x3 stride-2 conv + batch-norm + ReLU stages, global average pooling,
  dropout, one linear unit. About 0.1 M parameters; the previous default (kept so its files
  still load).
- ``resnet``: a ResNet-18-shaped network (two basic residual blocks per stage) with a
  stride-2 stem, for GPUs; an order of magnitude slower on CPU.
- ``resnet50``: torchvision's ResNet-50 (``cnn_resnet50``), parameter names identical to
  torchvision's so ImageNet weights load by name; a GPU model.
- ``screen-cnn``: ``compact-cnn`` with three stages, for the 24 px low-magnification
  screening patches (``models.screen_model``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.cnn_config import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_CONFIGS,
    MAX_PARAMETERS,
    checked_settings,
)
from histoviewer.core.models.cnn_head import LogitHead
from histoviewer.core.models.cnn_resnet50 import ResNet50

__all__ = ["ARCHITECTURES", "DEFAULT_ARCHITECTURE", "DEFAULT_CONFIGS", "MAX_PARAMETERS", "LogitHead",
           "build_network", "expected_shapes"]

def _conv_bn_relu(c_in: int, c_out: int, stride: int, kernel: int = 3) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class StridedCnn(nn.Module):
    """Stride-2 conv stages then a pooled linear head; output is one tumour logit."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for width in widths:
            layers += _conv_bn_relu(c_in, int(width), 2)
            c_in = int(width)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = LogitHead(c_in, dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class CompactCnn(nn.Module):
    """Stages of ``depths[i]`` 3x3 conv-BN-ReLU (the first with stride 2), an optional 1x1
    conv to ``expand`` channels, global average pooling, dropout, one logit.

    Depth goes where the maps are small: at 96 px input, stage 3 runs at 12 px and stage 4
    at 6 px, so a second conv there costs a fraction of what it would at 48 px.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 128),
        depths: Sequence[int] = (1, 1, 1, 2),
        expand: int = 0,
        dropout: float = 0.2,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for width, depth in zip(widths, depths, strict=True):
            for j in range(int(depth)):
                layers += _conv_bn_relu(c_in, int(width), 2 if j == 0 else 1)
                c_in = int(width)
        if expand:
            layers += _conv_bn_relu(c_in, int(expand), 1, kernel=1)
            c_in = int(expand)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = LogitHead(c_in, dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-18-shaped: stride-2 stem, four stages of ``blocks`` basic blocks."""

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (2, 2, 2, 2),
        dropout: float = 0.2,
    ):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(3, int(widths[0]), 2))
        stages: list[nn.Module] = []
        c_in = int(widths[0])
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(int(n)):
                stride = 2 if (i > 0 and j == 0) else 1
                stages.append(BasicBlock(c_in, int(width), stride))
                c_in = int(width)
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = LogitHead(c_in, dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "compact-cnn": CompactCnn,
    "strided-cnn": StridedCnn,
    "resnet": ResNet,
    "resnet50": ResNet50,
    "screen-cnn": CompactCnn,
}
if tuple(ARCHITECTURES) != tuple(DEFAULT_CONFIGS):  # cnn_config names what can be built here
    raise RuntimeError("cnn_arch.ARCHITECTURES and cnn_config.DEFAULT_CONFIGS name different architectures")
def _settings(architecture: str, config: dict[str, Any] | None) -> tuple[type[nn.Module], dict[str, Any]]:
    cfg = checked_settings(architecture, config)
    return ARCHITECTURES[architecture], cfg


def _construct(cls: type[nn.Module], architecture: str, cfg: dict[str, Any]) -> nn.Module:
    try:
        return cls(**cfg)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"bad settings for {architecture}: {exc}") from exc


def expected_shapes(architecture: str, config: dict[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    """Every array (name -> shape) of the network ``build_network`` would build, found on
    torch's "meta" device (shapes only, no memory); ``ModelLoadError`` for unknown or
    out-of-bounds settings, or a network above ``MAX_PARAMETERS``."""
    cls, cfg = _settings(architecture, config)
    with torch.device("meta"):
        net = _construct(cls, architecture, cfg)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    n_params = sum(p.numel() for p in net.parameters())
    if n_params > MAX_PARAMETERS:
        raise ModelLoadError(f"architecture {architecture} with these settings has {n_params:,} "
                             f"parameters, more than {MAX_PARAMETERS:,}; refused")
    return shapes


def build_network(architecture: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Build a known architecture; unknown names, unknown or out-of-bounds settings and
    networks above ``MAX_PARAMETERS`` raise ModelLoadError before any memory is taken."""
    cls, cfg = _settings(architecture, config)
    expected_shapes(architecture, cfg)  # the size check, at no memory cost
    return _construct(cls, architecture, cfg)
