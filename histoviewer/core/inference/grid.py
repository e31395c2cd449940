"""Where a model's patches sit on a slide, and what was predicted for each.

Frames and units:

- ``l0_`` values are level-0 pixels of the slide (x right, y down).
- Model pixels are pixels at the model's scale ``model_mpp`` (um/px); a patch is
  ``patch_px`` model px square and the grid steps by ``stride_px`` model px.
- Cell ``(row, col)`` (flat index ``row * cols + col``) is the patch whose level-0
  top-left is ``origin + (col, row) * l0_stride`` and whose side is ``l0_patch``.

Overlap (``stride_px < patch_px``, ``patch_px`` a multiple of ``stride_px``): the output
*map* has the same rows x cols, but map cell ``(i, j)`` is the level-0 square
``origin + (j, i) * l0_stride`` of side ``l0_stride`` (one stride, not one patch); its
value is the mean of every computed patch that covers that square, i.e. patches
``(i - k + 1 .. i, j - k + 1 .. j)`` with ``k = patch_px / stride_px``. Without overlap
(``k = 1``) map cell and patch coincide. A map value therefore describes tissue at most
one patch away from its own square.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from histoviewer.core.errors import InferenceError

__all__ = ["CellState", "GridGeometry", "PredictionGrid"]


@dataclass(frozen=True)
class GridGeometry:
    """The patch grid of one model on one slide (see the module docstring for frames)."""

    l0_width: int
    l0_height: int
    slide_mpp: float  # um per level-0 px
    model_mpp: float  # um per model px
    patch_px: int  # model px
    stride_px: int  # model px; == patch_px: no overlap
    l0_origin_x: float = 0.0
    l0_origin_y: float = 0.0

    def __post_init__(self) -> None:
        if not (self.slide_mpp and self.slide_mpp > 0 and math.isfinite(self.slide_mpp)):
            raise InferenceError(
                f"the slide's scale (um/px) is unknown or invalid ({self.slide_mpp!r}); a model "
                "needs it to read patches at its own scale"
            )
        if not 1 <= self.stride_px <= self.patch_px or self.patch_px % self.stride_px:
            raise InferenceError(
                f"stride {self.stride_px} px must divide the patch size {self.patch_px} px "
                f"(for example {self.patch_px}, {self.patch_px // 2} or {self.patch_px // 4})"
            )

    @classmethod
    def for_slide(
        cls, l0_size: tuple[int, int], slide_mpp: float | None, model_mpp: float, patch_px: int,
        stride_px: int | None = None,
    ) -> GridGeometry:
        """A grid from (0, 0) covering a slide of ``l0_size`` = (width, height) level-0 px."""
        return cls(int(l0_size[0]), int(l0_size[1]), slide_mpp or 0.0, float(model_mpp),
                   int(patch_px), int(stride_px or patch_px))

    @property
    def l0_per_model_px(self) -> float:
        return self.model_mpp / self.slide_mpp

    @property
    def l0_patch(self) -> float:
        """Side of one patch in level-0 px."""
        return self.patch_px * self.l0_per_model_px

    @property
    def l0_stride(self) -> float:
        """Step between cells (and side of one map cell) in level-0 px."""
        return self.stride_px * self.l0_per_model_px

    @property
    def overlap(self) -> int:
        """Patches covering a map cell along one axis (1 = no overlap)."""
        return self.patch_px // self.stride_px

    @property
    def cols(self) -> int:
        return max(1, math.ceil((self.l0_width - self.l0_origin_x) / self.l0_stride))

    @property
    def rows(self) -> int:
        return max(1, math.ceil((self.l0_height - self.l0_origin_y) / self.l0_stride))

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def size(self) -> int:
        return self.rows * self.cols

    def cell_l0_xy(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 top-left (x, y) of flat cell indices (float arrays)."""
        r, c = np.divmod(np.asarray(cells, np.int64), self.cols)
        return self.l0_origin_x + c * self.l0_stride, self.l0_origin_y + r * self.l0_stride

    def cell_rect(self, cell: int) -> tuple[float, float, float, float]:
        """Level-0 (x, y, w, h) of one patch."""
        x, y = self.cell_l0_xy(np.array([cell]))
        return float(x[0]), float(y[0]), self.l0_patch, self.l0_patch

    def map_cell_rect(self, cell: int) -> tuple[float, float, float, float]:
        """Level-0 (x, y, w, h) of one *map* cell (one stride square)."""
        x, y = self.cell_l0_xy(np.array([cell]))
        return float(x[0]), float(y[0]), self.l0_stride, self.l0_stride

    def cell_at(self, l0_x: float, l0_y: float) -> int | None:
        """The map cell containing a level-0 point, or None outside the grid."""
        c = math.floor((l0_x - self.l0_origin_x) / self.l0_stride)
        r = math.floor((l0_y - self.l0_origin_y) / self.l0_stride)
        if 0 <= r < self.rows and 0 <= c < self.cols:
            return r * self.cols + c
        return None

    def cells_in_rect(self, l0_x: float, l0_y: float, l0_w: float, l0_h: float) -> np.ndarray:
        """Flat indices of patches that intersect the level-0 rectangle (row-major order)."""
        s, p = self.l0_stride, self.l0_patch
        x0, y0 = l0_x - self.l0_origin_x, l0_y - self.l0_origin_y
        # patch c spans [c*s, c*s + p): it intersects [x0, x0 + w) iff (x0 - p)/s < c < (x0 + w)/s
        c0 = max(0, math.floor((x0 - p) / s) + 1)
        c1 = min(self.cols - 1, math.ceil((x0 + l0_w) / s) - 1)
        r0 = max(0, math.floor((y0 - p) / s) + 1)
        r1 = min(self.rows - 1, math.ceil((y0 + l0_h) / s) - 1)
        if c1 < c0 or r1 < r0:
            return np.zeros(0, np.int64)
        rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
        return (rr * self.cols + cc).ravel().astype(np.int64)

    def order_by_distance(self, cells: np.ndarray, l0_x: float, l0_y: float) -> np.ndarray:
        """``cells`` sorted by the distance of their patch centre from a level-0 point."""
        cells = np.asarray(cells, np.int64)
        x, y = self.cell_l0_xy(cells)
        half = self.l0_patch / 2
        d2 = (x + half - l0_x) ** 2 + (y + half - l0_y) ** 2
        return cells[np.argsort(d2, kind="stable")]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(rows=self.rows, cols=self.cols, l0_patch=self.l0_patch,
                   l0_stride=self.l0_stride, overlap=self.overlap)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridGeometry:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


class CellState(IntEnum):
    """What is known about a cell. Encoded in output arrays as NaN / -1 / -2 (``ENCODED``)."""

    NOT_COMPUTED = 0
    COMPUTED = 1
    BACKGROUND = 2  # not enough tissue: never classified
    FAILED = 3  # the read or the model failed


# How states other than COMPUTED appear in float32 outputs (probabilities are 0..1).
ENCODED = {CellState.NOT_COMPUTED: np.nan, CellState.BACKGROUND: -1.0, CellState.FAILED: -2.0}


class PredictionGrid:
    """Per-patch probability and state of one model on one slide; thread-safe updates.

    ``values`` (float32, rows x cols) hold probabilities where ``state == COMPUTED``.
    """

    def __init__(self, geometry: GridGeometry, tissue: np.ndarray | None = None) -> None:
        self.geometry = geometry
        self.values = np.zeros(geometry.shape, np.float32)
        self.state = np.full(geometry.shape, CellState.NOT_COMPUTED, np.uint8)
        self._lock = threading.Lock()
        if tissue is not None:
            self.set_tissue(tissue)

    def set_tissue(self, tissue: np.ndarray) -> None:
        """Mark cells that are not tissue (``tissue`` boolean rows x cols) as BACKGROUND."""
        tissue = np.asarray(tissue, bool)
        if tissue.shape != self.geometry.shape:
            raise InferenceError(f"tissue mask {tissue.shape} does not match grid {self.geometry.shape}")
        with self._lock:
            bg = ~tissue & (self.state == CellState.NOT_COMPUTED)
            self.state[bg] = CellState.BACKGROUND

    @property
    def tissue(self) -> np.ndarray:
        return self.state != CellState.BACKGROUND

    def set_values(self, cells: np.ndarray, values: np.ndarray) -> None:
        with self._lock:
            flat_v, flat_s = self.values.reshape(-1), self.state.reshape(-1)
            flat_v[cells] = values
            flat_s[cells] = CellState.COMPUTED

    def set_failed(self, cells: np.ndarray) -> None:
        with self._lock:
            self.state.reshape(-1)[cells] = CellState.FAILED

    def pending(self, cells: np.ndarray | None = None) -> np.ndarray:
        """Flat indices (of ``cells``, else of all) still NOT_COMPUTED, in the given order."""
        flat = self.state.reshape(-1)
        if cells is None:
            return np.flatnonzero(flat == CellState.NOT_COMPUTED)
        cells = np.asarray(cells, np.int64)
        return cells[flat[cells] == CellState.NOT_COMPUTED]

    def coverage(self, cells: np.ndarray | None = None) -> float:
        """Fraction (0..1) of tissue cells (of ``cells``, else all) that were classified or
        failed; 1.0 when there is no tissue."""
        s = self.state.reshape(-1) if cells is None else self.state.reshape(-1)[np.asarray(cells, np.int64)]
        tissue = np.count_nonzero(s != CellState.BACKGROUND)
        done = np.count_nonzero((s == CellState.COMPUTED) | (s == CellState.FAILED))
        return 1.0 if tissue == 0 else done / tissue

    def coverage_in_rect(self, l0_x: float, l0_y: float, l0_w: float, l0_h: float) -> float:
        return self.coverage(self.geometry.cells_in_rect(l0_x, l0_y, l0_w, l0_h))

    def counts(self) -> dict[str, int]:
        return {s.name.lower(): int(np.count_nonzero(self.state == s)) for s in CellState}

    def map(self, window: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(values, state)`` of the output map (rows x cols, see the module docstring), or
        of its ``window`` = (row0, row1, col0, col1) (half-open), which is all a repaint of
        a few new cells needs.

        A map cell is COMPUTED when at least one covering patch is (its value is their
        mean), else NOT_COMPUTED when a covering patch still is, else FAILED when one
        failed, else BACKGROUND.
        """
        k = self.geometry.overlap
        r0, r1, c0, c1 = window if window is not None else (0, self.geometry.rows, 0, self.geometry.cols)
        # Map cell (i, j) depends on patches (i-k+1..i, j-k+1..j): read that much more.
        sr0, sc0 = max(0, r0 - k + 1), max(0, c0 - k + 1)
        with self._lock:
            values, state = self.values[sr0:r1, sc0:c1].copy(), self.state[sr0:r1, sc0:c1].copy()
        if k == 1:
            return values, state
        computed = state == CellState.COMPUTED
        total = np.zeros(values.shape, np.float64)
        count = np.zeros(values.shape, np.int32)
        any_pending = np.zeros(values.shape, bool)
        any_failed = np.zeros(values.shape, bool)
        rows, cols = values.shape
        for dr in range(k):  # patch (r, c) covers map cells r..r+k-1, c..c+k-1
            for dc in range(k):
                sl_dst = np.s_[dr:, dc:]
                sl_src = np.s_[: rows - dr, : cols - dc]
                total[sl_dst] += np.where(computed[sl_src], values[sl_src], 0.0)
                count[sl_dst] += computed[sl_src]
                any_pending[sl_dst] |= state[sl_src] == CellState.NOT_COMPUTED
                any_failed[sl_dst] |= state[sl_src] == CellState.FAILED
        out_state = np.full(values.shape, CellState.BACKGROUND, np.uint8)
        out_state[any_failed] = CellState.FAILED
        out_state[any_pending] = CellState.NOT_COMPUTED
        out_state[count > 0] = CellState.COMPUTED
        out_values = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
        crop = np.s_[r0 - sr0:, c0 - sc0:]
        return out_values[crop], out_state[crop]

    def encoded_map(self) -> np.ndarray:
        """The map as one float32 array: probability, or NaN / -1 / -2 (see ``ENCODED``)."""
        values, state = self.map()
        out = values.copy()
        for s, code in ENCODED.items():
            out[state == s] = code
        return out

    def restore(self, values: np.ndarray, state: np.ndarray) -> None:
        """Load per-patch values and states (from the disk cache)."""
        if values.shape != self.geometry.shape or state.shape != self.geometry.shape:
            raise InferenceError(f"cached grid {values.shape} does not match {self.geometry.shape}")
        with self._lock:
            self.values[...] = values
            self.state[...] = state

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self.values.copy(), self.state.copy()
