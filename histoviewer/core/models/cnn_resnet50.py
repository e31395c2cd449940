"""ResNet-50 (He et al. 2016, torchvision's "v1.5": stride on the 3x3 conv) for 96 px patches.

Module and parameter names are exactly torchvision's ``resnet50`` (``conv1``, ``bn1``,
``layer1.0.conv1`` ... ``layer4.2.bn3``, ``layerN.0.downsample.0/.1``), so weights converted
from a torchvision ``.pth`` load by name; only torchvision's 1000-class ``fc`` is replaced by
our one-logit ``head``. About 23.5 M parameters: a GPU model (CPU throughput in
docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from torch import nn

from histoviewer.core.models.cnn_head import LogitHead

__all__ = ["IMAGENET_MEAN", "IMAGENET_NORMALISATION_NOTE", "IMAGENET_STD", "RESNET50_BLOCKS",
           "ResNet50"]

RESNET50_BLOCKS = (3, 4, 6, 3)
# torchvision's ImageNet input normalisation (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The pipeline feeds every CNN (rgb / 255 - 0.5) / 0.25; ResNet50 turns that into ImageNet's
# normalisation as its first step, so ImageNet weights see what they were trained on.
IMAGENET_NORMALISATION_NOTE = (
    "then, inside the network, ImageNet's (rgb / 255 - mean) / std with "
    f"mean {IMAGENET_MEAN} and std {IMAGENET_STD} (ResNet-50 input)"
)
_PIPELINE_MEAN, _PIPELINE_STD = 0.5, 0.25


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand x4; identity or projected shortcut."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """torchvision-named ResNet-50 with ``embed`` (2048 pooled features) and a logit head."""

    def __init__(self, dropout: float = 0.2):
        super().__init__()
        # pipeline input -> ImageNet input: x * scale + shift per channel. Not persistent, so the
        # state dict holds torchvision's names only.
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        scale = _PIPELINE_STD / std
        self.register_buffer("input_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", ((_PIPELINE_MEAN - mean) / std).view(1, 3, 1, 1),
                             persistent=False)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), RESNET50_BLOCKS, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(c_in, planes, 2 if (i > 0 and j == 0) else 1))
                c_in = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = LogitHead(c_in, dropout)
        for m in self.modules():  # torchvision's initialisation, for training from scratch
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.input_scale + self.input_shift
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
