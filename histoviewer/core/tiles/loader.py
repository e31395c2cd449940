"""Asynchronous tile loading: a few worker threads, newest request first, stale work dropped.

The view calls ``request(keys)`` with the tiles it wants, most important first, on every
repaint. That list *replaces* the pending queue, so tiles that have left the view are
never read (stale-request dropping). A tile already being read is not read twice
(in-flight de-duplication). Results go into the shared byte-bounded cache and the
``on_loaded`` callback fires on the worker thread; the Qt layer hops to the GUI thread.

One-off tasks (``add_task``: the session's thumbnail) run on the same workers once the
*urgent* head of the latest request (the visible tiles) has been read, so they never
compete with the first complete frame for a core, but still come before most of the
prefetch ring.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from histoviewer.core.errors import SlideReadError
from histoviewer.core.slide.reader import SlideReader
from histoviewer.core.tiles.cache import ByteBoundedCache
from histoviewer.core.tiles.geometry import LevelTiling, TileKey

log = logging.getLogger(__name__)

# Converts decoded RGB into what the front end draws (a QImage for Qt, the array itself
# for headless use) and its size in bytes. Runs on the worker thread.
Converter = Callable[[np.ndarray], tuple[Any, int]]


def held_nbytes(rgb: np.ndarray) -> int:
    """Bytes an array keeps alive: a strided view (RGB of RGBA) holds all of its base."""
    if rgb.flags.c_contiguous or not isinstance(rgb.base, np.ndarray):
        return rgb.nbytes
    return rgb.base.nbytes


def keep_array(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """The default converter: store the RGB array itself."""
    return rgb, held_nbytes(rgb)


@dataclasses.dataclass
class LoaderStats:
    """Counters for tests and benchmarks."""

    requested: int = 0
    loaded: int = 0
    failed: int = 0
    dropped: int = 0  # queued, then superseded before a worker reached them


class TileLoader:
    """Loads tiles of one slide into ``cache`` on ``workers`` background threads."""

    def __init__(
        self,
        reader: SlideReader,
        tiling: LevelTiling,
        cache: ByteBoundedCache,
        slide_id: int,
        *,
        convert: Converter = keep_array,
        on_loaded: Callable[[TileKey], None] | None = None,
        on_failed: Callable[[TileKey, str], None] | None = None,
        workers: int = 2,
    ) -> None:
        self.reader = reader
        self.tiling = tiling
        self.cache = cache
        self.slide_id = slide_id
        self._convert = convert
        self._on_loaded = on_loaded
        self._on_failed = on_failed
        self._pending: collections.deque[TileKey] = collections.deque()
        self._urgent_left = 0  # how many keys at the head of _pending come before tasks
        self._urgent_in_flight: set[TileKey] = set()  # ... and those being read
        self._tasks: collections.deque[Callable[[], None]] = collections.deque()
        self._tasks_running = 0
        self._in_flight: set[TileKey] = set()
        self.failures: dict[TileKey, str] = {}
        self.stats = LoaderStats()
        self.generation = 0
        # Two conditions on one lock: workers wait for work, wait_idle() for progress. With
        # one shared condition, an idle worker's "I am idle" notification woke the other
        # idle worker, which did the same: two idle workers woke each other forever and
        # burnt both cores of a 2-core machine for as long as a slide was open.
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._changed = threading.Condition(self._lock)
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"histoviewer-tile-loader-{slide_id}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def key(self, level: int, t_x: int, t_y: int) -> TileKey:
        return TileKey(self.slide_id, level, t_x, t_y)

    def request(self, keys: Iterable[TileKey], urgent: int | None = None) -> int:
        """Replace the pending queue with ``keys`` (highest priority first); returns the generation.

        The first ``urgent`` keys (default: all) are read before any queued task.
        """
        keys = list(keys)
        n_urgent = len(keys) if urgent is None else urgent
        wanted = [(i < n_urgent, k) for i, k in enumerate(keys) if k not in self.cache and k not in self.failures]
        with self._lock:
            self.generation += 1
            wanted_set = {k for _, k in wanted}
            self.stats.dropped += sum(1 for k in self._pending if k not in wanted_set)
            queued = [(u, k) for u, k in wanted if k not in self._in_flight]
            self._pending = collections.deque(k for _, k in queued)
            self._urgent_left = sum(u for u, _ in queued)
            self._urgent_in_flight = {k for u, k in wanted if u and k in self._in_flight}
            self.stats.requested += len(self._pending)
            self._work_ready.notify_all()
            return self.generation

    def add_task(self, task: Callable[[], None]) -> None:
        """Run ``task()`` once on a worker, after the urgent keys of the latest request."""
        with self._lock:
            self._tasks.append(task)
            self._work_ready.notify_all()

    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._in_flight)

    def _idle(self) -> bool:
        return not self._pending and not self._in_flight and not self._tasks and not self._tasks_running

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no tile or task is pending or in flight (tests and benchmarks only)."""
        with self._lock:
            return self._changed.wait_for(self._idle, timeout)

    def _next_job(self) -> TileKey | Callable[[], None] | None:
        """The next tile key or task for a worker; None when stopping."""
        with self._lock:
            while True:
                if self._stopping:
                    return None
                if self._tasks and self._urgent_left <= 0 and not self._urgent_in_flight:
                    self._tasks_running += 1
                    return self._tasks.popleft()
                while self._pending:
                    key = self._pending.popleft()
                    urgent = self._urgent_left > 0
                    self._urgent_left -= 1
                    if key not in self._in_flight and key not in self.failures and key not in self.cache:
                        self._in_flight.add(key)
                        if urgent:
                            self._urgent_in_flight.add(key)
                        return key
                if self._tasks and not self._urgent_in_flight:
                    continue  # the queue ran dry: the task goes now
                # Nothing to do, or a task waits for the urgent tiles in hand: the worker
                # finishing the last of those picks it up without being woken.
                self._changed.notify_all()  # wake wait_idle callers, not other workers
                self._work_ready.wait()

    def _run_task(self, task: Callable[[], None]) -> None:
        try:
            task()
        except Exception:  # noqa: BLE001 - a worker must survive a failing task
            log.exception("loader task %r failed", task)
        finally:
            with self._lock:
                self._tasks_running -= 1
                self._changed.notify_all()

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            if not isinstance(job, TileKey):
                self._run_task(job)
                continue
            key = job
            try:
                rect = self.tiling.tile_rect(key.level, key.t_x, key.t_y)
                rgb = self.reader.read_region(rect.l0_x, rect.l0_y, key.level, rect.lv_width, rect.lv_height)
                payload, nbytes = self._convert(rgb)
                self.cache.put(key, payload, nbytes)
            except SlideReadError as exc:
                self._fail(key, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a worker must survive any one bad tile
                log.exception("tile %s failed", key)
                self._fail(key, f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self._in_flight.discard(key)
                self._urgent_in_flight.discard(key)
                self.stats.loaded += 1
                self._changed.notify_all()
            if self._on_loaded is not None:
                self._on_loaded(key)

    def _fail(self, key: TileKey, message: str) -> None:
        with self._lock:
            self._in_flight.discard(key)
            self._urgent_in_flight.discard(key)
            self.failures[key] = message
            self.stats.failed += 1
            self._changed.notify_all()
        if self._on_failed is not None:
            self._on_failed(key, message)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers (they finish the tile in hand). Safe to call twice."""
        with self._lock:
            self._stopping = True
            self._pending.clear()
            self._tasks.clear()
            self._work_ready.notify_all()
            self._changed.notify_all()
        if wait:
            for thread in self._threads:
                thread.join(timeout=30)

    @property
    def alive_threads(self) -> int:
        return sum(t.is_alive() for t in self._threads)
