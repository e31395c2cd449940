"""What was predicted for each patch of a model's grid on a slide.

The grid itself (where the patches sit, frames and units, overlap) is ``GridGeometry`` in
``core/grid_geometry.py``, a leaf module so the analysis and the summaries can name it
without importing inference; import it from there (it is not re-exported here).
``PredictionGrid`` holds the value and state of every cell.
"""

from __future__ import annotations

import threading
from enum import IntEnum

import numpy as np

from histoviewer.core.errors import InferenceError
from histoviewer.core.grid_geometry import GridGeometry

__all__ = ["DOMAIN_SAMPLE_TARGET", "CellState", "PredictionGrid", "domain_sample_lattice"]

# At most this many tissue patches of a slide get a domain distance when the model's is costly
# (the CNN's descriptor, ~5 ms a patch): a regular lattice over the whole slide, so a
# whole-slide analysis pays at most ~3 s and the verdict rests on 150-600 patches.
DOMAIN_SAMPLE_TARGET = 600


def domain_sample_lattice(tissue: np.ndarray, target: int = DOMAIN_SAMPLE_TARGET) -> np.ndarray:
    """Boolean rows x cols: tissue cells on every s-th row and column, the smallest s that
    picks at most about ``target`` of them (a quarter of that at least; all on a small slide)."""
    tissue = np.asarray(tissue, bool)
    step = max(1, int(np.ceil(np.sqrt(np.count_nonzero(tissue) / max(target, 1)))))
    lattice = np.zeros(tissue.shape, bool)
    lattice[::step, ::step] = True
    return lattice & tissue


class CellState(IntEnum):
    """What is known about a cell. Encoded in output arrays as NaN / -1 / -2 (``ENCODED``)."""

    NOT_COMPUTED = 0
    COMPUTED = 1
    BACKGROUND = 2  # not enough tissue: never classified
    FAILED = 3  # the read or the model failed
    # The low-magnification screen (``inference.screening``) found nothing there, so the full
    # model skipped it: tissue that is *not classified*, never a negative classification.
    SCREENED_NEGATIVE = 4


# How states other than COMPUTED appear in float32 outputs (probabilities are 0..1).
ENCODED = {CellState.NOT_COMPUTED: np.nan, CellState.BACKGROUND: -1.0, CellState.FAILED: -2.0,
           CellState.SCREENED_NEGATIVE: -3.0}


class PredictionGrid:
    """Per-patch probability and state of one model on one slide; thread-safe updates.

    ``values`` (float32, rows x cols) hold probabilities where ``state == COMPUTED``;
    ``domain`` (float32, rows x cols) the domain distance of those patches (NaN where the
    model gave none: no domain profile, or not computed; ``models.domain``).
    """

    def __init__(self, geometry: GridGeometry, tissue: np.ndarray | None = None) -> None:
        self.geometry = geometry
        self.values = np.zeros(geometry.shape, np.float32)
        self.state = np.full(geometry.shape, CellState.NOT_COMPUTED, np.uint8)
        self.domain = np.full(geometry.shape, np.nan, np.float32)
        # cells whose domain distance is wanted when it is costly (see domain_sample_lattice)
        self.domain_sample = domain_sample_lattice(np.ones(geometry.shape, bool))
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
            self.domain_sample = domain_sample_lattice(self.state != CellState.BACKGROUND)

    @property
    def tissue(self) -> np.ndarray:
        return self.state != CellState.BACKGROUND

    def set_values(self, cells: np.ndarray, values: np.ndarray, domain: np.ndarray | None = None) -> None:
        """Probabilities (and, when given, domain distances) of ``cells`` (flat indices)."""
        with self._lock:
            flat_v, flat_s = self.values.reshape(-1), self.state.reshape(-1)
            flat_v[cells] = values
            flat_s[cells] = CellState.COMPUTED
            self.domain.reshape(-1)[cells] = np.nan if domain is None else domain

    def domain_distances(self) -> np.ndarray:
        """Domain distances of the COMPUTED tissue patches (1-D; NaN where none), a copy."""
        with self._lock:
            return self.domain[self.state == CellState.COMPUTED].copy()

    def set_failed(self, cells: np.ndarray) -> None:
        with self._lock:
            self.state.reshape(-1)[cells] = CellState.FAILED

    def set_screened_negative(self, cells: np.ndarray) -> None:
        """Mark ``cells`` (flat indices) that are still NOT_COMPUTED as SCREENED_NEGATIVE
        (classified or failed cells keep their state)."""
        with self._lock:
            flat = self.state.reshape(-1)
            cells = np.asarray(cells, np.int64)
            cells = cells[flat[cells] == CellState.NOT_COMPUTED]
            flat[cells] = CellState.SCREENED_NEGATIVE

    def pending(self, cells: np.ndarray | None = None, *, screened: bool = False) -> np.ndarray:
        """Flat indices (of ``cells``, else of all) still NOT_COMPUTED, in the given order;
        with ``screened`` also those only screened negative (the view the user looks at is
        classified in full)."""
        flat = self.state.reshape(-1)
        wanted = [CellState.NOT_COMPUTED, CellState.SCREENED_NEGATIVE] if screened else [CellState.NOT_COMPUTED]
        if cells is None:
            return np.flatnonzero(np.isin(flat, wanted))
        cells = np.asarray(cells, np.int64)
        return cells[np.isin(flat[cells], wanted)]

    def screened_fraction(self, cells: np.ndarray | None = None) -> float:
        """Fraction (0..1) of tissue cells (of ``cells``, else all) screened negative: tissue
        the full model did not classify because the screen found nothing there."""
        s = self.state.reshape(-1) if cells is None else self.state.reshape(-1)[np.asarray(cells, np.int64)]
        tissue = np.count_nonzero(s != CellState.BACKGROUND)
        return 0.0 if tissue == 0 else np.count_nonzero(s == CellState.SCREENED_NEGATIVE) / tissue

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
        mean), else NOT_COMPUTED when a covering patch still is, else SCREENED_NEGATIVE when
        one was screened negative, else FAILED when one failed, else BACKGROUND.
        """
        k = self.geometry.overlap
        r0, r1, c0, c1 = window if window is not None else (0, self.geometry.rows, 0, self.geometry.cols)
        # Map cell (i, j) depends on patches (i-k+1..i, j-k+1..j): read that much more.
        sr0, sc0 = max(0, r0 - k + 1), max(0, c0 - k + 1)
        with self._lock:
            values, state = self.values[sr0:r1, sc0:c1].copy(), self.state[sr0:r1, sc0:c1].copy()
        if k == 1:
            return values, state
        out_values, out_state = _overlap_mean(values, state, k)
        crop = np.s_[r0 - sr0:, c0 - sc0:]
        return out_values[crop], out_state[crop]

    def encoded_map(self) -> np.ndarray:
        """The map as one float32 array: probability, or NaN / -1 / -2 (see ``ENCODED``)."""
        values, state = self.map()
        out = values.copy()
        for s, code in ENCODED.items():
            out[state == s] = code
        return out

    def encoded_domain_map(self) -> np.ndarray:
        """The per-cell domain distance as one float32 array, in ``encoded_map``'s frame:
        distance where a patch was classified (mean of the covering patches with overlap),
        NaN where none is known (not computed, or the model has no profile), -1 background,
        -2 failed."""
        with self._lock:
            domain, state = self.domain.copy(), self.state.copy()
        known = (state == CellState.COMPUTED) & np.isfinite(domain)
        masked = np.where(known, state, np.where(state == CellState.COMPUTED, CellState.NOT_COMPUTED, state))
        mapped, out_state = _overlap_mean(np.where(known, domain, 0.0).astype(np.float32),
                                          masked.astype(np.uint8), self.geometry.overlap)
        out = mapped.copy()
        for s, code in ENCODED.items():
            out[out_state == s] = code
        return out

    def restore(self, values: np.ndarray, state: np.ndarray, domain: np.ndarray | None = None) -> None:
        """Load per-patch values, states and (when cached) domain distances (from the disk cache)."""
        if values.shape != self.geometry.shape or state.shape != self.geometry.shape:
            raise InferenceError(f"cached grid {values.shape} does not match {self.geometry.shape}")
        if domain is not None and domain.shape != self.geometry.shape:
            raise InferenceError(f"cached domain grid {domain.shape} does not match {self.geometry.shape}")
        with self._lock:
            self.values[...] = values
            self.state[...] = state
            self.domain[...] = np.nan if domain is None else domain

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self.values.copy(), self.state.copy()

    def domain_snapshot(self) -> np.ndarray:
        with self._lock:
            return self.domain.copy()


def _overlap_mean(values: np.ndarray, state: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The map rule (see ``PredictionGrid.map``) on arrays of patch values and states:
    patch (r, c) covers map cells r..r+k-1, c..c+k-1."""
    if k == 1:
        return values, state
    computed = state == CellState.COMPUTED
    total = np.zeros(values.shape, np.float64)
    count = np.zeros(values.shape, np.int32)
    any_pending = np.zeros(values.shape, bool)
    any_failed = np.zeros(values.shape, bool)
    any_screened = np.zeros(values.shape, bool)
    rows, cols = values.shape
    for dr in range(k):
        for dc in range(k):
            sl_dst = np.s_[dr:, dc:]
            sl_src = np.s_[: rows - dr, : cols - dc]
            total[sl_dst] += np.where(computed[sl_src], values[sl_src], 0.0)
            count[sl_dst] += computed[sl_src]
            any_pending[sl_dst] |= state[sl_src] == CellState.NOT_COMPUTED
            any_failed[sl_dst] |= state[sl_src] == CellState.FAILED
            any_screened[sl_dst] |= state[sl_src] == CellState.SCREENED_NEGATIVE
    out_state = np.full(values.shape, CellState.BACKGROUND, np.uint8)
    out_state[any_failed] = CellState.FAILED
    out_state[any_screened] = CellState.SCREENED_NEGATIVE
    out_state[any_pending] = CellState.NOT_COMPUTED
    out_state[count > 0] = CellState.COMPUTED
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32), out_state
