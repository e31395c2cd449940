"""The one-logit head every CNN architecture ends with (``head(emb) -> (N,)``)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LogitHead"]


class LogitHead(nn.Linear):
    """Dropout then one linear unit, ``(N, D) -> (N,)``. A ``Linear`` subclass so the
    parameters stay ``head.weight`` and ``head.bias`` (the names older model files carry)."""

    def __init__(self, in_features: int, dropout: float):
        super().__init__(in_features, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return super().forward(self.dropout(emb)).squeeze(1)
