"""Test doubles for the model tests: an in-memory PatchSet and a toy separable problem."""

from __future__ import annotations

import numpy as np

from histoviewer.core.input_spec import InputSpec
from histoviewer.core.patches.base import IndexIds, PatchSet


class ArrayPatchSet(PatchSet):
    """Patches already at the model's scale, held in memory."""

    layout = "images"

    def __init__(self, patches: np.ndarray, labels: np.ndarray | None, spec: InputSpec,
                 groups: np.ndarray | None = None, description: str = "toy patches"):
        super().__init__(spec)
        self._patches = patches
        self.labels = None if labels is None else labels.astype(np.int8)
        self.ids = IndexIds("toy_", len(patches))
        self.groups = np.zeros(len(patches), np.int32) if groups is None else groups
        self.description = description
        self.source_mpp = spec.mpp

    def __len__(self) -> int:
        return len(self._patches)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        return self._patches[indices]


def toy_patches(n: int, seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Pink background; label 0 = many small dark dots, label 1 = few large pale blobs."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int8)
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i, lab in enumerate(labels):
        img = np.empty((size, size, 3), np.float32)
        img[:] = (235, 190, 215) + rng.normal(0, 4, 3)
        count, radius, colour = ((40, 2.5, (60, 40, 120)) if lab == 0 else (6, 9.0, (150, 110, 190)))
        for _ in range(count):
            cy, cx = rng.uniform(0, size, 2)
            r = radius * rng.uniform(0.8, 1.2)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
        img += rng.normal(0, 6, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out, labels
