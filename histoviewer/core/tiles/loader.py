"""Asynchronous tile loading: a few worker threads, newest request first, stale work dropped.

The view calls ``request(keys)`` with the tiles it wants, most important first, on every
repaint. That list *replaces* the pending queue, so tiles that have left the view are
never read (stale-request dropping). A tile already being read is not read twice
(in-flight de-duplication). Results go into the shared byte-bounded cache and the
``on_loaded`` callback fires on the worker thread; the Qt layer hops to the GUI thread.
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


def keep_array(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """The default converter: store the RGB array itself."""
    return rgb, rgb.nbytes


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
        self._in_flight: set[TileKey] = set()
        self.failures: dict[TileKey, str] = {}
        self.stats = LoaderStats()
        self.generation = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"tile-loader-{slide_id}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def key(self, level: int, t_x: int, t_y: int) -> TileKey:
        return TileKey(self.slide_id, level, t_x, t_y)

    def request(self, keys: Iterable[TileKey]) -> int:
        """Replace the pending queue with ``keys`` (highest priority first); returns the generation."""
        wanted = [k for k in keys if k not in self.cache and k not in self.failures]
        with self._cond:
            self.generation += 1
            wanted_set = set(wanted)
            self.stats.dropped += sum(1 for k in self._pending if k not in wanted_set)
            self._pending = collections.deque(k for k in wanted if k not in self._in_flight)
            self.stats.requested += len(self._pending)
            self._cond.notify_all()
            return self.generation

    @property
    def pending_count(self) -> int:
        with self._cond:
            return len(self._pending) + len(self._in_flight)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is pending or in flight (tests and benchmarks only)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._in_flight, timeout)

    def _next_key(self) -> TileKey | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                while self._pending:
                    key = self._pending.popleft()
                    if key not in self._in_flight and key not in self.failures and key not in self.cache:
                        self._in_flight.add(key)
                        return key
                self._cond.notify_all()  # wake wait_idle callers
                self._cond.wait()

    def _work(self) -> None:
        while (key := self._next_key()) is not None:
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
            with self._cond:
                self._in_flight.discard(key)
                self.stats.loaded += 1
                self._cond.notify_all()
            if self._on_loaded is not None:
                self._on_loaded(key)

    def _fail(self, key: TileKey, message: str) -> None:
        with self._cond:
            self._in_flight.discard(key)
            self.failures[key] = message
            self.stats.failed += 1
            self._cond.notify_all()
        if self._on_failed is not None:
            self._on_failed(key, message)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers (they finish the tile in hand). Safe to call twice."""
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self._cond.notify_all()
        if wait:
            for thread in self._threads:
                thread.join(timeout=30)

    @property
    def alive_threads(self) -> int:
        return sum(t.is_alive() for t in self._threads)
