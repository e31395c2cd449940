"""``ConcatPatchSet``: several labelled patch sets read as one, each keeping its identity.

Training on several sources (e.g. real PatchCamelyon patches plus patches cut from phantom
slides) concatenates them: patch ``i`` of part ``k`` is patch ``offsets[k] + i`` of the whole.
Groups stay distinct across parts (a part's groups are shifted past the previous parts'), and
ids are prefixed with the part's number so they stay unique.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from histoviewer.core.errors import PatchDataError
from histoviewer.core.patches.base import PatchSet

__all__ = ["ConcatPatchSet", "source_kind"]


def source_kind(patch_set: PatchSet) -> str:
    """What a source is, in words for a model's caveat: "real PatchCamelyon" for the PCam and
    Kaggle layouts, "synthetic phantom" for slides that are all HistoViewer phantoms (file names
    ``phantom*``), else "" (unknown: the caveat then only counts patches)."""
    if patch_set.layout in ("pcam", "kaggle"):
        return "real PatchCamelyon"
    slides = getattr(patch_set, "slides", None)
    if patch_set.layout == "slides" and slides and all(
            s.path.name.lower().startswith("phantom") for s in slides):
        return "synthetic phantom"
    return ""


class ConcatPatchSet(PatchSet):
    """The parts one after another; all labelled and at the same model scale."""

    layout = "concat"

    def __init__(self, parts: Sequence[PatchSet]) -> None:
        if not parts:
            raise PatchDataError("no patch sets to concatenate")
        spec = parts[0].spec
        for p in parts:
            if p.spec.patch_px != spec.patch_px or abs(p.spec.mpp - spec.mpp) > 1e-9:
                raise PatchDataError(f"{p.description}: read at another scale than {parts[0].description}")
            if p.labels is None:
                raise PatchDataError(f"{p.description}: training needs labelled patches")
        super().__init__(spec)
        self.parts = tuple(parts)
        sizes = [len(p) for p in parts]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.labels = np.concatenate([np.asarray(p.labels, np.int8) for p in parts])
        groups, shift = [], 0
        for p in parts:
            g = np.asarray(p.groups, np.int64)
            groups.append(g - (g.min() if g.size else 0) + shift)
            shift = int(groups[-1].max()) + 1 if g.size else shift
        self.groups = np.concatenate(groups).astype(np.int32)
        self.source = np.repeat(np.arange(len(parts)), sizes).astype(np.int32)
        self.ids = [f"{k}:{pid}" for k, p in enumerate(parts) for pid in p.ids]
        self.source_mpp = parts[0].source_mpp
        self.description = " + ".join(p.description for p in parts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def global_indices(self, part: int, indices: np.ndarray) -> np.ndarray:
        """Indices into part ``part`` -> indices into the whole."""
        return np.asarray(indices, np.int64) + self.offsets[part]

    def _read(self, indices: np.ndarray) -> np.ndarray:
        p = self.spec.patch_px
        out = np.empty((indices.size, p, p, 3), np.uint8)
        src = self.source[indices]
        for k in np.unique(src):
            where = np.flatnonzero(src == k)
            out[where] = self.parts[int(k)].read(indices[where] - self.offsets[k])
        return out

    def close(self) -> None:
        for p in self.parts:
            p.close()
