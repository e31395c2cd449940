"""``PatchSet``: labelled (or unlabelled) patches delivered at a model's scale.

Every reader (PatchCamelyon HDF5, Kaggle folder, class folders, flat image folder,
slides + annotations) is a ``PatchSet``. ``read`` always returns square uint8 RGB
``(n, P, P, 3)`` with ``P = spec.patch_px`` at ``spec.mpp`` um/px, whatever the
source scale; ``source_mpp`` records the scale the data came at.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import numpy as np

from histoviewer.core.errors import PatchDataError
from histoviewer.core.input_spec import InputSpec

__all__ = ["LAYOUT_NAMES", "IndexIds", "PatchSet", "iter_batches"]

LAYOUT_NAMES = ("pcam", "kaggle", "class-folders", "images", "slides")


class IndexIds(Sequence[str]):
    """Lazy ids ``f"{prefix}{i}"`` for ``i`` in ``range(n)`` (HDF5 sets can hold 10^5+ rows)."""

    def __init__(self, prefix: str, n: int) -> None:
        self._prefix = prefix
        self._n = int(n)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [f"{self._prefix}{k}" for k in range(*i.indices(self._n))]
        k = int(i)
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(i)
        return f"{self._prefix}{k}"


class PatchSet(ABC):
    """A sequence of patches with optional 0/1 labels, read at ``spec``'s scale.

    Attributes set by subclasses:

    - ``layout``: one of ``LAYOUT_NAMES``.
    - ``description``: human-readable origin (stored as a model's "training data").
    - ``source_mpp``: um/px of the stored patches (for slides: level 0 of the first slide).
    - ``labels``: int8 0/1 per patch (1 = tumour), or ``None`` when unlabelled.
    - ``ids``: one string per patch (Kaggle id, file stem, ``slide:x_y`` in level-0 px, ...).
    - ``groups``: int32 per patch (e.g. slide index) so validation can keep groups apart;
      all zeros when there is no grouping.

    ``read`` may be called from one thread at a time; ``close`` releases files.
    """

    layout: str
    description: str
    source_mpp: float
    labels: np.ndarray | None
    ids: Sequence[str]
    groups: np.ndarray

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _read(self, indices: np.ndarray) -> np.ndarray:
        """Patches ``indices`` (valid, int64, any order, maybe repeated) at the model's scale."""

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(n, P, P, 3)`` uint8 RGB at ``spec.mpp``, in the order of ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)][0]
            raise IndexError(f"patch index {bad} out of range for {n} patches ({self.description})")
        p = self.spec.patch_px
        if idx.size == 0:
            return np.zeros((0, p, p, 3), np.uint8)
        out = self._read(idx)
        if out.shape != (idx.size, p, p, 3) or out.dtype != np.uint8:
            raise PatchDataError(
                f"{self.description}: reader returned {out.dtype} {out.shape}, "
                f"expected ({idx.size}, {p}, {p}, 3) uint8"
            )
        return out

    def close(self) -> None:
        """Release open files; the default has none."""

    def __enter__(self) -> PatchSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.layout} n={len(self)} {self.description!r}>"


def iter_batches(
    patch_set: PatchSet, indices: Sequence[int] | np.ndarray | None = None, batch_size: int = 256
) -> Iterator[tuple[np.ndarray, np.ndarray | None, list[int]]]:
    """Yield ``(patches, labels or None, indices)`` for consecutive chunks of ``indices``.

    Batches follow the order of ``indices`` (default: all patches in order). Pass sorted
    indices for evaluation: HDF5 and slide readers are fastest on sorted, contiguous reads
    (each reader also sorts within a batch, so shuffled training batches work too).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    idx = np.arange(len(patch_set)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    for start in range(0, idx.size, batch_size):
        chunk = idx[start : start + batch_size]
        labels = None if patch_set.labels is None else patch_set.labels[chunk]
        yield patch_set.read(chunk), labels, [int(i) for i in chunk]
