"""``InferenceWorker``: one long-lived thread that owns the model and fills a ``PredictionGrid``.

Scheduling (regions already read when the model is free join one batch, up to
``WorkerSchedule.max_batch_patches`` patches):

- ``submit_view(l0_rect, l0_centre)`` asks for the tissue cells visible in a level-0
  rectangle, nearest the centre first. Every call starts a new *generation*: work for
  older views is dropped between batches (a batch in hand finishes; it is at most one
  region of ``view_block_cells`` x ``view_block_cells`` cells).
- ``set_background(True)``: once the view is done, classify the rest of the tissue,
  nearest the last view centre first, in larger regions. With a ``LiveScreen`` the rest is
  screened first and the full model runs on its selection and audit lattice; the margin
  around what it finds joins the running pass as soon as the readers are about to run dry
  (``_grow_margin_ahead``), and the verdict comes when nothing is left to grow.
- The rest of the tissue is read by ``WorkerSchedule.read_threads`` threads, up to two
  batches of patches ahead of the model; a view by one (the viewer's tile decoding needs the
  CPU right after a pan). Regions reach the model in priority order.
- ``set_interactive(True)`` (``pause``/``resume`` are the same switch): while the user
  pans, no new region is read and no new model batch starts, so the CPU goes to tile
  decoding; the heatmap catches up as soon as the pan ends.

Callbacks run on the worker thread (the Qt layer hops to the GUI thread):
``on_cells(cells, values)`` with flat cell indices (int64) and probabilities (float32);
``on_failure(cells, message)`` when a read or the model failed for those cells (they are
marked FAILED and the worker goes on); ``on_idle()`` when nothing is left to do.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from histoviewer.core.errors import Cancelled, HistoViewerError
from histoviewer.core.inference.disk_cache import HeatmapCache
from histoviewer.core.inference.grid import CellState, PredictionGrid
from histoviewer.core.inference.prefetch import BLANK_REASON, RegionPrefetcher
from histoviewer.core.inference.regions import RegionCutter, plan_regions
from histoviewer.core.inference.screening import GROW_SHARE, LiveScreen, dilate_8, grow_cells
from histoviewer.core.models.classifier import PatchClassifier, PatchScores
from histoviewer.core.models.model_threads import set_model_threads
from histoviewer.core.progress import JobControl
from histoviewer.core.slide.reader import SlideReader

log = logging.getLogger(__name__)

__all__ = ["InferenceWorker", "WorkerCallbacks", "WorkerSchedule"]

# How long background work waits for the next region read while its batch is not full
# (seconds): a lone cell's region reads in a few ms, so a batch of ``max_batch_patches``
# gathers in a fraction of a second; a full region (16 x 16 cells) never waits.
BACKGROUND_GATHER_S = 0.05
# Region side (cells) of the screened idle pass. Measured on the CAMELYON-size phantom (5,490
# cells for the full model, load ~6): 8-cell regions (analyze's FULL_PASS_BLOCK) read the span of
# 19,386 cells for them, 4-cell ones of 9,851, which halved the resize time.
SCREENED_BLOCK_CELLS = 4
# A model call split across ``WorkerSchedule.model_calls`` threads gives each at least this many
# patches (fewer: one call); as ``screening.MIN_ROUND_BATCH`` for analyze's rounds.
MIN_CALL_PATCHES = 16

# A view displayed coarser than the screening model's own scale (um per screen px above the
# screen's um per px, 3.888 for the shipped 2.5x screen: one 10x patch is then fewer than its
# 24 screen px) is an OVERVIEW: the pathologist cannot see a 10x patch's detail there, the
# screen sees at least as much, so while the screened idle pass is on its cells are screened
# like the rest of the slide (a fitted opening view would otherwise classify the whole slide
# exhaustively). At or finer than this scale the view is classified in full, screened-negative
# cells included. 1.0 = exactly the screen's scale.
OVERVIEW_COARSER_THAN_SCREEN = 1.0

CellsFn = Callable[[np.ndarray, np.ndarray], None]
FailureFn = Callable[[np.ndarray, str], None]


@dataclass(frozen=True)
class WorkerCallbacks:
    """What the worker calls, on its own thread (see the module docstring); None: nothing."""

    on_cells: CellsFn | None = None
    on_failure: FailureFn | None = None
    on_idle: Callable[[], None] | None = None


@dataclass(frozen=True)
class WorkerSchedule:
    """How the work is cut: regions of ``view_block_cells`` x ``view_block_cells`` grid
    cells for the view (small: a new view supersedes the old one quickly), of
    ``background_block_cells`` for the rest of the tissue, and at most
    ``max_batch_patches`` patches per model call."""

    view_block_cells: int = 8
    background_block_cells: int = 16
    max_batch_patches: int = 128
    # Reader threads, and how far they read ahead of the model: regions (``RegionPrefetcher``'s
    # ``max_ahead``), or more of them while they hold under two batches of patches. Measured on the
    # CAMELYON-size phantom's screened idle pass (lone audit cells, ~3 cells a region): with four
    # regions ahead the reader stopped after a dozen patches while the model ran a batch of 128,
    # and one reader could not keep up with the model on patchy regions.
    read_threads: int = 2
    max_regions_ahead: int = 4
    # Threads one batch is split across (a CPU model that allows parallel calls; any other runs
    # on the worker's thread), each call on ``call_threads`` intra-op threads (None: the
    # engine's setting). Measured on 2 cores: the CNN and its tissue-check descriptor (~1.9 ms a
    # patch, 4x the network's ~0.5 ms) took 287 ms for 128 patches on one thread, 128 ms split
    # in two calls of one thread each; one call of two intra-op threads took 248 ms (the
    # descriptor is numpy, outside the engine's threads).
    model_calls: int = 1
    call_threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("view_block_cells", "background_block_cells", "max_batch_patches", "read_threads",
                     "max_regions_ahead", "model_calls"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


class InferenceWorker:
    """Classifies cells of ``grid`` with ``model`` on one thread; see the module docstring.

    ``cache``, when given, is written whenever the worker becomes idle after new results
    and on ``close``. ``cutter``: the region reader (default: one on ``reader``).
    ``background``: start with the rest of the tissue switched on. The worker never closes
    ``reader`` or ``model``: their owner does, after ``close()`` returned.
    """

    def __init__(
        self,
        reader: SlideReader,
        model: PatchClassifier,
        grid: PredictionGrid,
        *,
        callbacks: WorkerCallbacks = WorkerCallbacks(),
        schedule: WorkerSchedule = WorkerSchedule(),
        background: bool = False,
        cache: HeatmapCache | None = None,
        cutter: RegionCutter | None = None,
        screen: LiveScreen | None = None,
        view: tuple[float, float, float, float] | None = None,
        view_l0_per_screen_px: float | None = None,
    ) -> None:
        # ``screen``: the rest of the tissue (background) is screened first and the full model
        # runs only where tumour is possible (``inference.screening``); the view is
        # classified in full, screened-negative cells included, unless it is an overview
        # (``OVERVIEW_COARSER_THAN_SCREEN``)
        self.screen = screen
        self.grid = grid
        self.model = model
        self._on_cells = callbacks.on_cells
        self._on_failure = callbacks.on_failure
        self._on_idle = callbacks.on_idle
        self._cache = cache
        self._view_block = schedule.view_block_cells
        self._background_block = schedule.background_block_cells
        self._max_batch = schedule.max_batch_patches
        self._cutter = cutter or RegionCutter(reader, grid.geometry)
        self._prefetcher = RegionPrefetcher(self._cutter.read_timed, max_ahead=schedule.max_regions_ahead,
                                            threads=schedule.read_threads, max_cells_ahead=2 * self._max_batch,
                                            name="histoviewer-inference-reader")
        self._model_pool: ThreadPoolExecutor | None = None
        self._model_calls = 1
        if schedule.model_calls > 1 and getattr(model, "parallel_calls", False) and \
                getattr(getattr(model, "device", None), "type", None) == "cpu":
            self._model_calls = schedule.model_calls
            intra_op = schedule.call_threads
            self._model_pool = ThreadPoolExecutor(
                self._model_calls, thread_name_prefix="histoviewer-inference-model",
                initializer=set_model_threads if intra_op else None, initargs=(intra_op,) if intra_op else ())
        self._cond = threading.Condition()
        self._generation = 0
        self._view: tuple[tuple[float, float, float, float], tuple[float, float]] | None = None
        self._view_l0_per_screen_px: float | None = None
        self._background = background
        self._interactive = False
        self._stopping = False
        self._idle = False
        self._dirty = False  # results not yet in the disk cache
        self.classified = 0  # patches classified by this worker (for tests and the status bar)
        if view is not None:
            # known before the thread starts: submitted afterwards, the first task was the rest
            # of the tissue, and the view's reader waited for a region read for it (0.2 s)
            self.submit_view(view, l0_per_screen_px=view_l0_per_screen_px)
        self._thread = threading.Thread(target=self._run, name="histoviewer-inference-worker", daemon=True)
        self._thread.start()

    # -- control (any thread) --------------------------------------------------------------
    def submit_view(self, l0_rect: tuple[float, float, float, float],
                    l0_centre: tuple[float, float] | None = None,
                    l0_per_screen_px: float | None = None) -> int:
        """Classify tissue in ``l0_rect`` = (x, y, w, h) level-0 px, nearest ``l0_centre``
        (default: the rectangle's centre) first. Supersedes the previous view; returns its
        generation. ``l0_per_screen_px``: how coarse the view is displayed; a view coarser
        than the screen's own scale is an overview (``is_overview``), screened like the rest
        of the slide while the screened idle pass is on; None: always classified in full."""
        x, y, w, h = (float(v) for v in l0_rect)
        centre = (x + w / 2, y + h / 2) if l0_centre is None else (float(l0_centre[0]), float(l0_centre[1]))
        with self._cond:
            self._generation += 1
            self._view = ((x, y, w, h), centre)
            self._view_l0_per_screen_px = None if l0_per_screen_px is None else float(l0_per_screen_px)
            self._idle = False
            self._cond.notify_all()
            generation = self._generation
        self._prefetcher.cancel()  # wakes the worker if it waits on a superseded region
        return generation

    def set_background(self, enabled: bool) -> None:
        """Whether to go on with the rest of the tissue when the view is done."""
        with self._cond:
            if enabled != self._background:
                self._background = enabled
                self._generation += 1
                self._idle = False
                self._cond.notify_all()
        self._prefetcher.cancel()

    def set_interactive(self, interactive: bool) -> None:
        """True while the user pans or zooms: start no new reads or batches until False."""
        with self._cond:
            self._interactive = bool(interactive)
            self._cond.notify_all()
        self._prefetcher.set_paused(bool(interactive))

    def pause(self) -> None:
        self.set_interactive(True)

    def resume(self) -> None:
        self.set_interactive(False)

    @property
    def is_idle(self) -> bool:
        with self._cond:
            return self._idle

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the worker has nothing left to do (tests, benchmarks, headless use)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._idle or self._stopping, timeout) and self._idle

    def close(self, timeout: float = 30.0) -> None:
        """Stop (the batch in hand finishes), join the threads and write the cache. Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._prefetcher.close(timeout)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("inference worker did not stop within %.0f s", timeout)
        if self._model_pool is not None:
            self._model_pool.shutdown(wait=not self._thread.is_alive())
        self._save_cache()

    @property
    def alive_threads(self) -> int:
        pool = self._model_pool
        model = 0 if pool is None else sum(t.is_alive() for t in getattr(pool, "_threads", ()))
        return int(self._thread.is_alive()) + self._prefetcher.alive_threads + model

    # -- worker thread ----------------------------------------------------------------------
    def _next_task(self) -> tuple[int, np.ndarray, int, float, tuple[float, float] | None] | None:
        """(generation, cells in priority order, block, seconds to wait for regions to fill a
        batch: 0 for a view, centre to order the screened margin by while it grows during the
        task: None when it does not) to do next; None when stopping."""
        geometry = self.grid.geometry
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or not self._interactive)
                if self._stopping:
                    return None
                generation, view, background = self._generation, self._view, self._background
            centre = view[1] if view else (geometry.l0_width / 2, geometry.l0_height / 2)
            if view is not None and not (background and self.is_overview()):
                visible = self.grid.pending(geometry.cells_in_rect(*view[0]), screened=True)
                if visible.size:
                    return generation, geometry.order_by_distance(visible, *centre), self._view_block, 0.0, None
            if background and self.screen is not None:
                rest = self._screened_rest(generation)
                if rest is None:
                    continue  # the screen pass was interrupted by a new request
                if rest.size:
                    # the selection is patchy (the audit lattice's lone cells, specks): small
                    # regions, or each region decodes its cells' whole span (SCREENED_BLOCK_CELLS)
                    screened = self.screen.fallback is None
                    block = min(self._background_block, SCREENED_BLOCK_CELLS) if screened else self._background_block
                    return (generation, geometry.order_by_distance(rest, *centre), block, BACKGROUND_GATHER_S,
                            centre if screened else None)
            elif background:
                rest = self.grid.pending()
                if rest.size:
                    return (generation, geometry.order_by_distance(rest, *centre), self._background_block,
                            BACKGROUND_GATHER_S, None)
            with self._cond:
                if generation != self._generation:
                    continue  # a request arrived while we looked
                self._idle = True
                self._cond.notify_all()
            if self._on_idle is not None:
                self._call(self._on_idle)
            # after saying so: the whole-slide label (analysed when the worker goes idle) does
            # not wait for the disk
            self._save_cache()
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._generation != generation)

    def is_overview(self) -> bool:
        """Whether the current view is displayed coarser than the screen sees the slide
        (``OVERVIEW_COARSER_THAN_SCREEN``) with a working screen: its cells are then screened
        like the rest of the slide instead of all classified in full."""
        screen = self.screen
        with self._cond:
            l0_per_screen_px = self._view_l0_per_screen_px
        if screen is None or screen.fallback is not None or l0_per_screen_px is None:
            return False
        um_per_screen_px = l0_per_screen_px * self.grid.geometry.slide_mpp
        return um_per_screen_px > OVERVIEW_COARSER_THAN_SCREEN * screen.screen.input.mpp

    def _screened_rest(self, generation: int) -> np.ndarray | None:
        """The background cells under the screened strategy; None when the screen pass was
        interrupted (a new view, pan or close). A screen that cannot run falls back to the
        whole slide (logged), never to cells left unclassified without a screen."""
        screen = self.screen
        assert screen is not None
        try:
            if not screen.screened:
                screen.run_screen(JobControl(cancel=lambda g=generation: self._superseded(g) or self._interactive))
            todo, marked = screen.cells_for_full_model(self.grid)
        except Cancelled:
            return None
        except (HistoViewerError, Exception) as exc:  # noqa: BLE001 - the slide is classified in full instead
            log.warning("screening failed (%s); classifying the whole slide", exc)
            self.screen = None
            return self.grid.pending()
        if marked.size:
            self._dirty = True
            if self._on_cells is not None:
                self._call(self._on_cells, marked, np.zeros(0, np.float32))
        return todo

    def _superseded(self, generation: int) -> bool:
        with self._cond:
            return self._stopping or self._generation != generation

    def _wait_interactive_over(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or not self._interactive)

    def _run(self) -> None:
        while (task := self._next_task()) is not None:
            # Background work waits briefly for more regions to fill a batch (gather_s): the
            # screened pass's regions hold a few lone cells (the audit lattice), and a model call
            # per handful of patches ran the model at a third of its speed. A view never waits.
            generation, cells, block, gather_s, margin_centre = task
            # a view is read by one thread, regions ahead only: right after a pan the viewer's own
            # tile decoding needs the CPU; the rest of the tissue by all, up to the cell budget
            view = gather_s == 0.0
            # (a view's reader reads up to a batch ahead: with regions only, its last cells came
            # in a model call of their own)
            self._prefetcher.submit(generation, plan_regions(self.grid.geometry, cells, block),
                                    readers=1 if view else None, max_cells_ahead=self._max_batch if view else None)
            planned = None
            if margin_centre is not None:
                planned = np.zeros(self.grid.geometry.size, bool)
                planned[cells] = True
            while not self._superseded(generation):
                result = self._prefetcher.next(generation)
                if result is None:
                    break
                self._wait_interactive_over()
                if self._superseded(generation):
                    break
                # Regions already read join this model call (up to max_batch patches): one
                # large batch runs the model faster than several small ones.
                ready = [result]
                count = len(result.job.cells)
                while count < self._max_batch and (more := self._prefetcher.next(generation, timeout=gather_s)):
                    ready.append(more)
                    count += len(more.job.cells)
                for failed in (r for r in ready if r.patches is None):
                    self._fail(failed.job.cells, failed.error or "read failed")
                blank = [r.blank_cells() for r in ready]
                if any(b.size for b in blank):
                    self._fail(np.concatenate(blank), BLANK_REASON)
                good = [r.usable() for r in ready]
                good = [(c, p) for c, p in good if c.size]
                if good:
                    # a view's batch runs as one call: the viewer's tile decoding for the same
                    # view needs a core then; the rest of the tissue is split across the cores
                    batch_cells = np.concatenate([c for c, _ in good])
                    probs = self._classify(batch_cells,
                                           np.concatenate([p for _, p in good]) if len(good) > 1 else good[0][1],
                                           split=not view)
                    if planned is not None and probs is not None:
                        self._grow_margin_near(generation, planned, block, batch_cells, probs)
                if planned is not None and self._prefetcher.jobs_left() <= 1:
                    self._grow_margin_ahead(generation, planned, block, margin_centre)

    def _grow_margin_near(self, generation: int, planned: np.ndarray, block: int, cells: np.ndarray,
                          probs: np.ndarray) -> None:
        """Queue, next, the margin around the cells of the batch just classified that qualify
        (P >= ``GROW_SHARE`` x the lesion threshold): their not yet classified tissue within
        ``margin_patches`` rings. Read now, the margin's regions find the tiles its seeds were
        cut from still decoded (``TILE_CACHE_BYTES``); queued at the end of the pass, as
        ``_grow_margin_ahead`` alone did, the CAMELYON-size phantom decoded ~390 level tiles a
        second time. The same rule as ``screening.grow_cells`` around fewer seeds: the cells
        classified in the end are the same (``_grow_margin_ahead`` and ``cells_for_full_model``
        still grow from every seed until nothing is left)."""
        screen = self.screen
        if screen is None or screen.fallback is not None:
            return
        seeds = cells[probs >= GROW_SHARE * screen.lesion_threshold]
        if not seeds.size:
            return
        geometry = self.grid.geometry
        rings = screen.settings.margin_patches
        seed_mask = np.zeros(geometry.shape, bool)
        seed_mask.reshape(-1)[seeds] = True
        near = np.flatnonzero(dilate_8(seed_mask, rings))
        near = near[(self.grid.state.reshape(-1)[near] == CellState.NOT_COMPUTED) & ~planned[near]]
        if near.size:
            planned[near] = True
            centre = geometry.cell_l0_xy(seeds[:1])
            self._prefetcher.extend(generation, plan_regions(
                geometry, geometry.order_by_distance(near, float(centre[0][0]), float(centre[1][0])), block),
                front=True)

    def _grow_margin_ahead(self, generation: int, planned: np.ndarray, block: int,
                           centre: tuple[float, float]) -> None:
        """Queue the screened pass's margin (``screening.grow_cells``) around what the full
        model has found so far, before the readers run dry: the margin rounds ran one after
        another, each starting when the last batch of the one before was done (the model
        idle while the round's first regions were read, the readers idle during its last
        batch). Growth is monotone (a cell qualifies once a neighbour is classified at or
        above the share of the threshold, and stays so), so the cells classified in the end,
        and the audit's verdict on them, are those of the rounds one after another; the next
        task's ``cells_for_full_model`` finds none left to grow."""
        screen = self.screen
        if screen is None or screen.fallback is not None:
            return
        more = grow_cells(self.grid, GROW_SHARE * screen.lesion_threshold, screen.settings.margin_patches)
        more = more[~planned[more]]
        if more.size:
            planned[more] = True
            self._prefetcher.extend(generation, plan_regions(
                self.grid.geometry, self.grid.geometry.order_by_distance(more, *centre), block))

    def _classify(self, cells: np.ndarray, patches: np.ndarray, split: bool = True) -> np.ndarray | None:
        """Classify and store ``cells``; their probabilities, or None when the model failed."""
        try:
            scores = self._scores(cells, patches, split)
            probs = np.asarray(scores.probability, np.float32)
            if probs.shape != (len(cells),):
                raise ValueError(f"returned {probs.shape} probabilities for {len(cells)} patches")
        except Exception as exc:  # noqa: BLE001 - a model error costs these cells, not the worker
            log.warning("model failed on %d patches: %s", len(cells), exc)
            self._fail(cells, f"model {self.model.info.name!r} failed: {type(exc).__name__}: {exc}")
            return None
        self.grid.set_values(cells, probs, scores.domain_distance)
        self.classified += len(cells)
        self._dirty = True
        if self._on_cells is not None:
            self._call(self._on_cells, cells, probs)
        return probs

    def _scores(self, cells: np.ndarray, patches: np.ndarray, split: bool) -> PatchScores:
        """Probability and domain distance (of the slide's judged sample) of ``patches``, in one
        model call or, with ``split``, across the model threads (``WorkerSchedule.model_calls``);
        the worker waits for every part, so results still arrive one batch at a time."""
        mask = self.grid.domain_sample.reshape(-1)[cells]
        pool = self._model_pool
        parts = min(self._model_calls, len(cells) // MIN_CALL_PATCHES) if split else 1
        if pool is None or parts < 2:
            return self.model.classify(patches, domain_mask=mask)
        bounds = np.linspace(0, len(cells), parts + 1).astype(int)
        futures = [pool.submit(self.model.classify, patches[a:b], mask[a:b]) for a, b in itertools.pairwise(bounds)]
        done = [f.result() for f in futures]  # the first error is raised here, as from one call
        if any(d.domain_distance is None for d in done):
            distance = None
        else:
            distance = np.concatenate([np.asarray(d.domain_distance, np.float32) for d in done])
        return PatchScores(np.concatenate([np.asarray(d.probability, np.float32) for d in done]), distance)

    def _fail(self, cells: np.ndarray, message: str) -> None:
        self.grid.set_failed(cells)
        if self._on_failure is not None:
            self._call(self._on_failure, cells, message)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a broken callback must not kill the worker
            log.exception("inference callback %r failed", fn)

    def _save_cache(self) -> None:
        if self._cache is not None and self._dirty:
            self._dirty = False
            self._cache.save(self.grid)
