"""The viewer's uncertainty map of one open slide, without Qt: on request, on its own thread.

``LiveUncertainty`` follows a running ``LiveHeatmap`` (same slide, model, grid and tissue) and
computes the TTA uncertainty (``uncertainty_map``) of the cells asked for (the view, a region,
the whole slide) on a job thread, never on the caller's: it loads its own copy of the model
there (a classifier serves one thread at a time and the heatmap's worker owns the other),
reads through its own region source and keeps an ``overlay.HeatmapRaster`` of the map
coloured by ``uncertainty_style``. One request runs at a time; ``cancel()`` stops it between
regions (the cells done so far stay).

Callbacks run on the job thread; a GUI hops them to its own: ``on_progress(done, total)``
(patches of the request), ``on_update(window)`` (map window recoloured), ``on_finished(outcome)``
(``UncertaintyOutcome``: done, cancelled or failed, with a sentence saying so).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoviewer.core.errors import Cancelled, HistoViewerError
from histoviewer.core.inference.grid import CellState, PredictionGrid
from histoviewer.core.inference.overlay import HeatmapRaster
from histoviewer.core.inference.regions import RegionCutter, RegionSource
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.inference.uncertainty_map import (
    UNCERTAINTY_BATCH_PATCHES,
    compute_uncertainty,
    new_uncertainty_grid,
    uncertainty_style,
)
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.registry import open_model
from histoviewer.core.progress import JobControl
from histoviewer.core.slide.reader import SlideReader

log = logging.getLogger(__name__)

__all__ = ["LiveUncertainty", "UncertaintyOutcome"]


@dataclass(frozen=True)
class UncertaintyOutcome:
    """How a request ended. ``status``: "done", "cancelled" or "failed"; ``what``: the request
    ("view", "region", "slide"); ``patches``: computed in it; ``failed``: patches that could
    not be read or classified; ``message``: one sentence for the status bar."""

    status: str
    what: str
    patches: int
    failed: int
    message: str


class LiveUncertainty:
    """See the module docstring. ``model_spec``/``device``: what to load (the heatmap's own);
    ``grid``: the heatmap's ``PredictionGrid`` (its geometry and tissue are copied);
    ``threshold``: the operating threshold (for the disagreement; None: the model's)."""

    def __init__(
        self,
        slide_path: str | Path,
        reader: SlideReader,
        grid: PredictionGrid,
        model_spec: str,
        device: str = "auto",
        *,
        threshold: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_update: Callable[[tuple[int, int, int, int]], None] | None = None,
        on_finished: Callable[[UncertaintyOutcome], None] | None = None,
        model: PatchClassifier | None = None,
        batch_size: int = UNCERTAINTY_BATCH_PATCHES,
        block: int = 16,
    ) -> None:
        """``model``: an already loaded classifier this object may use alone (tests); None
        loads ``model_spec`` on the job thread at the first request. ``batch_size``/``block``:
        patches per model batch, cells per region side (``compute_uncertainty``)."""
        self.slide_path = Path(slide_path)
        self.reader = reader
        self.model_spec, self.device, self.threshold = model_spec, device, threshold
        self.grid = new_uncertainty_grid(grid.geometry, grid.tissue)
        self.raster = HeatmapRaster(self.grid, uncertainty_style())
        self._on_progress, self._on_update, self._on_finished = (
            on_progress,
            on_update,
            on_finished,
        )
        self._model = model
        self._batch_size, self._block = batch_size, block
        self._source: RegionSource | None = None
        self._fast: TiffRegionSource | None = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.results_version = 0  # +1 per recoloured batch

    # -- requests (any thread) -----------------------------------------------------------------
    @property
    def busy(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def cells_for(
        self, l0_rect: tuple[float, float, float, float] | None
    ) -> np.ndarray:
        """Tissue cells in a level-0 (x, y, w, h) rectangle (None: the whole slide) whose
        uncertainty is not computed yet, nearest the rectangle's centre first."""
        g = self.grid.geometry
        if l0_rect is None:
            return self.grid.pending()
        x, y, w, h = l0_rect
        return g.order_by_distance(
            self.grid.pending(g.cells_in_rect(x, y, w, h)), x + w / 2, y + h / 2
        )

    def request(
        self, what: str, l0_rect: tuple[float, float, float, float] | None
    ) -> bool:
        """Compute the uncertainty of the cells in ``l0_rect`` (None: the whole slide) on the
        job thread; ``what`` names the request in messages. False (nothing started) while
        another request runs or after ``close``."""
        with self._lock:
            if self._closed or self.busy:
                return False
            cells = self.cells_for(l0_rect)
            self._cancel.clear()
            self._thread = threading.Thread(
                target=self._run,
                args=(what, cells),
                name="histoviewer-uncertainty",
                daemon=True,
            )
            self._thread.start()
        return True

    def cancel(self) -> None:
        """Stop the running request between regions (its finished cells stay)."""
        self._cancel.set()

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the running request ended (True) or ``timeout`` passed (False)."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def close(self, timeout: float = 30.0) -> None:
        """Cancel and join the job; release the model and the region source. Idempotent."""
        with self._lock:
            self._closed = True
        self.cancel()
        self.wait(timeout)
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        if self._model is not None:
            self._model.close()
            self._model = None

    # -- job thread ----------------------------------------------------------------------------
    def _prepare(self) -> tuple[PatchClassifier, RegionSource]:
        if self._model is None:
            self._model = open_model(self.model_spec, self.device)
        if self._source is None:
            self._fast = TiffRegionSource.open(self.slide_path, self.reader)
            self._source = self._fast if self._fast is not None else self.reader
        return self._model, self._source

    def _run(self, what: str, cells: np.ndarray) -> None:
        total = int(cells.size)
        before = self.grid.counts()
        window = self._window(cells)
        status, message = "done", ""

        def progress(_stage: str, done: int, _total: int, _detail: str) -> None:
            if window is not None and done:
                self.raster.refresh(window)
                self.results_version += 1
                if self._on_update is not None:
                    self._on_update(window)
            if self._on_progress is not None:
                self._on_progress(done, total)

        try:
            if total:
                model, source = self._prepare()
                cutter = RegionCutter(self.reader, self.grid.geometry, source=source)
                compute_uncertainty(
                    self.grid,
                    cutter,
                    model,
                    cells,
                    threshold=self.threshold,
                    batch_size=self._batch_size,
                    block=self._block,
                    control=JobControl(progress=progress, cancel=self._cancel),
                )
        except Cancelled:
            status = "cancelled"
        except HistoViewerError as exc:
            status, message = "failed", str(exc)
        except Exception as exc:
            log.exception("uncertainty map failed")
            status, message = "failed", f"{type(exc).__name__}: {exc}"
        after = self.grid.counts()
        done = after["computed"] - before["computed"]
        failed = after["failed"] - before["failed"]
        if window is not None:
            self.raster.refresh(window)
        if status == "done":
            message = (
                f"Uncertainty map of the {what}: {done} patches computed"
                if total
                else f"Uncertainty map of the {what}: already computed"
            )
            if failed:
                message += f", {failed} failed"
        elif status == "cancelled":
            message = f"Uncertainty map of the {what} cancelled after {done} of {total} patches"
        else:
            message = f"Uncertainty map of the {what} failed: {message}"
        if self._on_finished is not None and not self._closed:
            self._on_finished(UncertaintyOutcome(status, what, done, failed, message))

    def _window(self, cells: np.ndarray) -> tuple[int, int, int, int] | None:
        if not cells.size:
            return None
        return self.raster.window_for_cells(cells)

    # -- queries -------------------------------------------------------------------------------
    def coverage(
        self, l0_rect: tuple[float, float, float, float] | None = None
    ) -> float:
        """Fraction of tissue (in ``l0_rect``, else the slide) whose uncertainty is computed
        or failed."""
        return (
            self.grid.coverage()
            if l0_rect is None
            else self.grid.coverage_in_rect(*l0_rect)
        )

    def describe_at(self, l0_x: float, l0_y: float) -> str:
        """What the status bar says about the uncertainty of the patch under the cursor."""
        found = self.raster.probability_at(l0_x, l0_y)
        if found is None:
            return ""
        state, value = found
        return {
            CellState.COMPUTED: f"uncertainty {value:.3f}",
            CellState.NOT_COMPUTED: "uncertainty not computed",
            CellState.BACKGROUND: "",
            CellState.FAILED: "uncertainty failed",
        }[state]
