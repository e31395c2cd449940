"""The live AI overlay of one open slide, without Qt: model, tissue, disk cache, worker, raster.

``LiveHeatmap`` does everything slow (importing torch, loading the model, finding tissue
on a low-resolution level, reading the disk cache) on a start-up thread, so opening a
slide never waits for it; requests made before it is ready (the view, panning, the
background switch) are remembered and applied when it is. Then the ``InferenceWorker``
(see ``worker.py``) fills the grid and this object keeps a ``HeatmapRaster`` coloured.

Callbacks run on the start-up or worker thread; a GUI hops them to its own thread:
``on_ready(live)``, ``on_update(window)`` (map window (row0, row1, col0, col1) recoloured),
``on_failure(message)`` (some cells failed; the work goes on), ``on_idle()``,
``on_error(message)`` (the overlay cannot run at all: no scale, model missing, ...).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoviewer.core.cpu_cores import usable_cores
from histoviewer.core.errors import HistoViewerError, InferenceError
from histoviewer.core.inference.disk_cache import HeatmapCache
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import PredictionGrid
from histoviewer.core.inference.overlay import HeatmapRaster, HeatmapStyle
from histoviewer.core.inference.regions import RegionCutter, RegionSource
from histoviewer.core.inference.screening import SCREEN_READ_THREADS, LiveScreen
from histoviewer.core.inference.tiff_regions import TILE_CACHE_BYTES, TiffRegionSource
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.inference.worker import InferenceWorker, WorkerCallbacks, WorkerSchedule
from histoviewer.core.analysis.threshold import choose_lesion_params
from histoviewer.core.models.model_threads import MAX_MODEL_THREADS, set_process_model_threads
from histoviewer.core.models.registry import open_model
from histoviewer.core.models.screen_model import open_screen_model
from histoviewer.core.slide.reader import SlideReader

log = logging.getLogger(__name__)

__all__ = ["LiveHeatmap", "LiveOptions"]


@dataclass(frozen=True)
class LiveOptions:
    """What to run: ``model`` is a registry spec (``cnn``, ``handcrafted``, a file path or a
    file name in the user's models folder); the grid steps by the model's patch size divided
    by ``stride_divisor`` (1: no overlap; 2 or 4: overlapping, smoother maps); ``background``:
    go on with all tissue once the view is done; ``cache_dir`` None = the user's heatmap cache, and ``use_cache`` False
    neither reads nor writes it."""

    model: str = "cnn"
    device: str = "auto"
    stride_divisor: int = 1
    background: bool = True
    use_cache: bool = True
    cache_dir: Path | None = None
    # how the rest of the tissue is done when idle: "screened" (a 2.5x screen first, the full
    # model where tumour is possible; ``inference.screening``) or "exhaustive"; the view is
    # classified in full unless screened and shown coarser than the screen (an overview).
    # ``screen_model``: "screen" (shipped) or a file.
    idle_strategy: str = "screened"
    screen_model: str = "screen"


def viewer_torch_threads() -> int:
    """Torch threads for a model on the CPU inside the viewer: every core but two."""
    return max(1, usable_cores() - 2)


def viewer_model_calls() -> tuple[int, int]:
    """(model calls at once, intra-op threads each) for the worker's batches on the CPU: the
    cores but two (all of them on 2 cores), in up to ``MAX_MODEL_THREADS`` calls of one
    thread or more each. Separate single-threaded calls share the cores with tile decoding
    without the barrier waits of one call's intra-op threads (``_share_cpu_with_the_viewer``),
    and on 2 cores a batch split in two ran 2.2x faster than on one thread (the tissue
    check's descriptors are most of its time; ``WorkerSchedule.model_calls``). While the user
    pans no new batch starts, so the decoding the pan needs waits at most for a shorter batch."""
    cores = usable_cores()
    budget = cores if cores <= 2 else max(2, cores - 2)
    calls = min(budget, MAX_MODEL_THREADS)
    return calls, max(1, budget // calls)


def _share_cpu_with_the_viewer(model) -> int | None:
    """Limit torch's CPU threads when the model runs on the CPU; returns the number set.

    In the viewer the model shares the cores with tile decoding, the region reader and the
    GUI. Torch's default (one OpenMP thread per core) then waits at barriers for threads
    that lost their core: on 2 cores, 64 patches took 250-340 ms with 2 threads and 50-105
    ms with 1 while tiles were being decoded (``benchmarks/bench_heatmap_gui.py``), so two
    cores are left to the rest. Process-wide, which is right for a GUI process whose only
    torch user is this worker; the headless ``analyze`` keeps torch's default.
    """
    device = getattr(model, "device", None)
    if device is None or getattr(device, "type", "") != "cpu":
        return None
    threads = viewer_torch_threads()
    set_process_model_threads(model, threads)  # torch's or onnxruntime's; never imports torch
    return threads


class LiveHeatmap:
    """See the module docstring. ``close()`` stops everything; the reader stays open (its
    owner, the slide session, closes it afterwards)."""

    def __init__(
        self,
        slide_path: str | os.PathLike[str],
        reader: SlideReader,
        options: LiveOptions,
        style: HeatmapStyle,
        *,
        on_ready: Callable[[LiveHeatmap], None] | None = None,
        on_update: Callable[[tuple[int, int, int, int]], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        region_source: Callable[[RegionSource], RegionSource] | None = None,
    ) -> None:
        """``region_source``: wraps the source regions are read from (direct TIFF decoding
        or the reader), e.g. to reuse the viewer's decoded tiles (``cached_regions``)."""
        self.slide_path = Path(slide_path)
        self.reader = reader
        self.options = options
        self._style = style
        self._on_ready, self._on_update = on_ready, on_update
        self._on_failure, self._on_idle, self._on_error = on_failure, on_idle, on_error
        self._wrap_source = region_source
        self.region_source: RegionSource | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._view: tuple[float, float, float, float] | None = None
        self._view_scale: float | None = None  # level-0 px per screen px of that view
        self._interactive = False
        self._background = options.background
        self.model = None
        self.device_reason = ""
        self.grid: PredictionGrid | None = None
        self.raster: HeatmapRaster | None = None
        self.restored_from_cache = False
        self.error: str | None = None
        self.failures = 0
        # +1 whenever cells change (results, failures, a cache restore): lets followers such as
        # the lesion panel skip work when a signal brings nothing new (a view with no work left)
        self.results_version = 0
        self.startup_s: dict[str, float] = {}
        self.screen: LiveScreen | None = None
        self.screen_problem = ""  # why the idle pass is exhaustive although screening was asked
        self.torch_threads: int | None = None
        self._worker = None
        self._fast = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._start, name="histoviewer-heatmap-startup", daemon=True)
        self._thread.start()

    # -- start-up thread ---------------------------------------------------------------------
    def _start(self) -> None:
        try:
            self._start_unsafe()
        except HistoViewerError as exc:
            self._fail_start(str(exc))
        except Exception as exc:  # noqa: BLE001 - any start-up failure is reported, not raised on a thread
            log.exception("live heatmap start-up failed")
            self._fail_start(f"{type(exc).__name__}: {exc}")
        finally:
            self._ready.set()

    def _fail_start(self, message: str) -> None:
        self.error = message
        if self._on_error is not None and not self._closed:
            self._on_error(message)

    def _start_unsafe(self) -> None:
        # Imported lazily: models.device imports torch (seconds of start-up), and the viewer
        # must open slides without it.
        from histoviewer.core.models.device import choose_device

        info = self.reader.info
        if info.mpp is None:
            raise InferenceError(
                f"{self.slide_path.name}: the slide does not state its scale (microns per pixel), so "
                "the model cannot read patches at its own scale; no heatmap"
            )
        t0 = time.perf_counter()
        self.device_reason = choose_device(self.options.device).reason
        model = open_model(self.options.model, self.options.device)
        self.torch_threads = _share_cpu_with_the_viewer(model)
        t1 = time.perf_counter()
        spec = model.input
        geometry = GridGeometry.for_slide(info.dimensions, info.mpp, spec.mpp, spec.patch_px,
                                          spec.patch_px // max(1, self.options.stride_divisor),
                                          mpp_source=info.mpp_source)
        grid = PredictionGrid(geometry, grid_tissue(self.reader, geometry))
        t2 = time.perf_counter()
        cache = None
        if self.options.use_cache:
            cache = HeatmapCache.for_slide(self.slide_path, model.info.content_hash, geometry,
                                           self.options.cache_dir)
            self.restored_from_cache = cache.load(grid)
        raster = HeatmapRaster(grid, self._style)
        self.results_version += 1  # the restored (or empty) map
        # decoded tiles kept for reuse, as under analyze: the idle pass's regions share tiles (the
        # screened pass's lone audit cells: ~4 cells a level tile, each tile decoded once instead
        # of once per region); released when the worker goes idle (``_idle``)
        fast = TiffRegionSource.open(self.slide_path, self.reader, TILE_CACHE_BYTES)
        source: RegionSource = fast if fast is not None else self.reader
        if self._wrap_source is not None:
            source = self._wrap_source(source)
        self.region_source = source
        screen = self._open_screen(grid, model, fast)
        t3 = time.perf_counter()
        self.startup_s = {"model_s": t1 - t0, "tissue_s": t2 - t1, "cache_and_raster_s": t3 - t2}
        with self._lock:
            if self._closed:
                if fast is not None:
                    fast.close()
                return
            self.model, self.grid, self.raster, self._fast = model, grid, raster, fast
            calls, call_threads = viewer_model_calls()
            worker = InferenceWorker(
                self.reader, model, grid,
                callbacks=WorkerCallbacks(self._cells_done, self._cells_failed, self._idle),
                schedule=WorkerSchedule(model_calls=calls, call_threads=call_threads),
                background=self._background, cache=cache,
                cutter=RegionCutter(self.reader, geometry, source=source), screen=screen,
                view=self._view, view_l0_per_screen_px=self._view_scale,
            )
            self.screen = screen
            worker.set_interactive(self._interactive)
            self._worker = worker
        if self._on_ready is not None:
            self._on_ready(self)

    def _open_screen(self, grid: PredictionGrid, model, fast) -> LiveScreen | None:
        """The idle pass's screen, or None (exhaustive: asked for, or the screen cannot run
        on this slide; ``screen_problem`` says why)."""
        if self.options.idle_strategy != "screened":
            return None
        try:
            screen_model, settings = open_screen_model(self.options.screen_model, device="cpu")
            threshold = choose_lesion_params(None, model.info.operating_point).threshold
            # the screen reads its own level directly, never through the viewer's tile cache
            calls, _ = viewer_model_calls()
            return LiveScreen(self.reader, grid, screen_model, settings, threshold,
                              source=fast if fast is not None else self.reader,
                              read_threads=SCREEN_READ_THREADS, model_threads=calls)
        except HistoViewerError as exc:
            self.screen_problem = str(exc)
            log.warning("no screening for the idle pass: %s", exc)
            return None

    def screened_fraction(self, l0_rect: tuple[float, float, float, float] | None = None) -> float:
        """Fraction of tissue screened negative (not classified) in ``l0_rect`` (whole slide
        when None); 0 before start-up."""
        grid = self.grid
        if grid is None:
            return 0.0
        return grid.screened_fraction(None if l0_rect is None else grid.geometry.cells_in_rect(*l0_rect))

    # -- worker thread ------------------------------------------------------------------------
    def _cells_done(self, cells: np.ndarray, _values: np.ndarray) -> None:
        raster = self.raster
        if raster is None or not len(cells):
            return
        window = raster.window_for_cells(cells)
        raster.refresh(window)
        self.results_version += 1
        if self._on_update is not None:
            self._on_update(window)

    def _cells_failed(self, cells: np.ndarray, message: str) -> None:
        self.failures += len(cells)
        self._cells_done(cells, np.zeros(0, np.float32))
        if self._on_failure is not None:
            self._on_failure(f"{len(cells)} patches could not be classified: {message}")

    def _idle(self) -> None:
        self.release_tiles()  # the pass is over
        if self._on_idle is not None:
            self._on_idle()

    # -- control (any thread) -----------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._worker is not None

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until start-up finished (True) or failed / timed out (False)."""
        return self._ready.wait(timeout) and self._worker is not None

    def submit_view(self, l0_rect: tuple[float, float, float, float],
                    l0_per_screen_px: float | None = None) -> None:
        """Classify the tissue in this level-0 (x, y, w, h) first (it supersedes the last).
        ``l0_per_screen_px``: the view's display scale; coarser than the screen's, it is an
        overview, screened under the screened idle pass (``worker.OVERVIEW_COARSER_THAN_SCREEN``)."""
        with self._lock:
            self._view = tuple(float(v) for v in l0_rect)
            self._view_scale = l0_per_screen_px
            worker = self._worker
        if worker is not None:
            worker.submit_view(self._view, l0_per_screen_px=l0_per_screen_px)

    def set_interactive(self, interactive: bool) -> None:
        """True while the user pans or zooms (or the slide's tab is hidden): no new work starts."""
        with self._lock:
            self._interactive = bool(interactive)
            worker = self._worker
        if worker is not None:
            worker.set_interactive(interactive)

    def set_background(self, enabled: bool) -> None:
        with self._lock:
            self._background = bool(enabled)
            worker = self._worker
        if worker is not None:
            worker.set_background(enabled)

    def release_tiles(self) -> None:
        """Give back the decoded tiles kept for the running pass (up to ``TILE_CACHE_BYTES``);
        later reads decode them again. When the worker goes idle, and when the slide's tab is
        hidden (its pass waits, and several open slides must not each hold a cache)."""
        fast = self._fast
        if fast is not None:
            fast.clear_cache()

    def set_style(self, style: HeatmapStyle) -> None:
        self._style = style
        if self.raster is not None:
            self.raster.set_style(style)

    @property
    def style(self) -> HeatmapStyle:
        return self._style

    @property
    def is_idle(self) -> bool:
        return self._worker is not None and self._worker.is_idle

    def wait_idle(self, timeout: float = 60.0) -> bool:
        return self.wait_ready(timeout) and self._worker.wait_idle(timeout)

    def coverage(self, l0_rect: tuple[float, float, float, float] | None = None) -> float | None:
        """Fraction of tissue classified in ``l0_rect`` (whole slide when None); None before
        start-up finished."""
        grid = self.grid
        if grid is None:
            return None
        return grid.coverage() if l0_rect is None else grid.coverage_in_rect(*l0_rect)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the start-up and the worker (the batch in hand finishes), write the cache.
        Idempotent; the reader is left open."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
        self._thread.join(timeout)
        with self._lock:  # start-up may have finished while we waited
            worker = worker or self._worker
            self._worker = None
        if worker is not None:
            worker.close(timeout)
        if self.screen is not None:  # after the worker: it was the screen's one user
            self.screen.screen.close()
        if self._fast is not None:
            self._fast.close()
            self._fast = None
