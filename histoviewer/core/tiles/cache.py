"""A thread-safe LRU cache bounded in bytes, with entries that can be pinned."""

from __future__ import annotations

import collections
import threading
from collections.abc import Hashable
from typing import Any


class ByteBoundedCache:
    """Least-recently-used cache whose capacity is a number of bytes, not entries.

    Each value is stored with its size in bytes. Inserting past the capacity evicts the
    least recently used unpinned entries. Pinned entries (the coarsest level, the
    thumbnail) never leave, so the view always has something to draw; they count
    towards ``size_bytes`` but are not evicted. A value larger than the capacity is
    not stored.
    """

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"cache capacity must be positive, not {capacity_bytes} bytes")
        self.capacity_bytes = capacity_bytes
        self._entries: collections.OrderedDict[Hashable, tuple[Any, int]] = collections.OrderedDict()
        self._pinned: dict[Hashable, tuple[Any, int]] = {}
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key in self._pinned:
                self.hits += 1
                return self._pinned[key][0]
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def peek(self, key: Hashable) -> Any | None:
        """Like ``get`` without touching recency or counters (for fallback lookups)."""
        with self._lock:
            entry = self._pinned.get(key) or self._entries.get(key)
            return None if entry is None else entry[0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries or key in self._pinned

    def put(self, key: Hashable, value: Any, nbytes: int, pinned: bool = False) -> None:
        if nbytes < 0:
            raise ValueError("an entry cannot have a negative size")
        with self._lock:
            self._remove(key)
            if pinned:
                self._pinned[key] = (value, nbytes)
                self._size += nbytes
                self._evict()
                return
            if nbytes > self.capacity_bytes:
                return
            self._entries[key] = (value, nbytes)
            self._size += nbytes
            self._evict()

    def _remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None) or self._pinned.pop(key, None)
        if entry is not None:
            self._size -= entry[1]

    def _evict(self) -> None:
        while self._size > self.capacity_bytes and self._entries:
            _, (_, nbytes) = self._entries.popitem(last=False)
            self._size -= nbytes
            self.evictions += 1

    def discard_where(self, predicate) -> int:
        """Drop every entry (pinned too) whose key matches; returns how many (closing a slide)."""
        with self._lock:
            keys = [k for k in list(self._entries) + list(self._pinned) if predicate(k)]
            for key in keys:
                self._remove(key)
            return len(keys)

    def set_capacity(self, capacity_bytes: int) -> None:
        with self._lock:
            self.capacity_bytes = capacity_bytes
            self._evict()

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._size

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + len(self._pinned)
