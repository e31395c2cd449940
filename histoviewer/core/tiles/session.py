"""One open slide as the viewer uses it: reader, tiling, loader and the pinned thumbnail."""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from histoviewer.core.errors import SlideReadError
from histoviewer.core.slide import open_slide
from histoviewer.core.slide.user_scale import UserScaleStore, apply_user_mpp
from histoviewer.core.tiles.cache import ByteBoundedCache
from histoviewer.core.tiles.frame import FramePlan, plan_frame
from histoviewer.core.tiles.geometry import DEFAULT_TILE_SIZE, LevelTiling, TileKey
from histoviewer.core.tiles.loader import Converter, TileLoader, keep_array
from histoviewer.core.tiles.viewport import Viewport

THUMBNAIL_MAX_SIDE = 1024
_slide_ids = itertools.count(1)
# Drawn where the slide is but no pixels are known yet (thumbnail still loading), and the
# colour of the stand-in for a thumbnail that cannot be read: unlike the view's background,
# it says "slide here".
PLACEHOLDER_GREY = 200


def _nominal_thumbnail_size(l0_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a slide-shaped picture fitting in THUMBNAIL_MAX_SIDE."""
    k = THUMBNAIL_MAX_SIDE / max(l0_size)
    return max(1, round(l0_size[0] * k)), max(1, round(l0_size[1] * k))


def _placeholder_thumbnail(l0_size: tuple[int, int]) -> np.ndarray:
    """A flat grey stand-in with the slide's aspect ratio, for a thumbnail that cannot be read."""
    w, h = _nominal_thumbnail_size(l0_size)
    return np.full((h, w, 3), PLACEHOLDER_GREY, np.uint8)


@dataclasses.dataclass(frozen=True)
class Thumbnail:
    """The whole slide, small: the RGB array and what the front end draws (``payload``)."""

    rgb: np.ndarray
    payload: Any

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


class SlideSession:
    """Everything the viewer needs for one slide; ``close()`` stops workers, then the file.

    The thumbnail (the last-resort fallback that keeps the view from being blank, and the
    overview) is read on a loader thread right after the first request's visible tiles,
    never in the constructor: on a one-level slide it means reading the whole slide,
    which would double the time to the first complete frame. Until it arrives,
    ``thumbnail`` is None and plans draw thumbnail ops from ``payload(None) is None``,
    which the front end paints as a flat ``PLACEHOLDER_GREY``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        cache: ByteBoundedCache,
        *,
        convert: Converter = keep_array,
        on_loaded: Callable[[TileKey], None] | None = None,
        on_failed: Callable[[TileKey, str], None] | None = None,
        on_thumbnail: Callable[[], None] | None = None,
        tile_size: int = DEFAULT_TILE_SIZE,
        workers: int = 2,
    ) -> None:
        self.reader = open_slide(path)
        if self.reader.info.mpp is None:
            # a pixel size the user stated for this slide before (``slide.user_scale``), marked "user"
            stated = UserScaleStore().get(path, self.reader.info.dimensions)
            if stated is not None:
                apply_user_mpp(self.reader, stated)
        self.info = self.reader.info
        self.slide_id = next(_slide_ids)
        self.cache = cache
        self.tiling = LevelTiling(self.info, tile_size)
        self._convert = convert
        self._on_thumbnail = on_thumbnail
        self.thumbnail_error: str | None = None
        # Set once, from a loader thread; read as one reference, so no lock is needed.
        self._thumbnail: Thumbnail | None = None
        self._planned_thumbnail: Thumbnail | None = None  # the one the last plan was made for
        self._thumbnail_done = threading.Event()
        self._thumbnail_queued = False
        self._last_request: tuple[tuple[TileKey, ...], int] | None = None
        self.loader = TileLoader(
            self.reader, self.tiling, cache, self.slide_id,
            convert=convert, on_loaded=on_loaded, on_failed=on_failed, workers=workers,
        )
        self._closed = False

    # -- thumbnail -------------------------------------------------------------------------
    def _queue_thumbnail(self) -> None:
        if not self._thumbnail_queued:
            self._thumbnail_queued = True
            self.loader.add_task(self._read_thumbnail)

    def _read_thumbnail(self) -> None:
        """Loader task: read the overview, or stand in for it when the file cannot give one."""
        try:
            rgb = self.reader.overview(THUMBNAIL_MAX_SIDE)
        except SlideReadError as exc:
            # Broken pixel data is found tile by tile; the slide still opens, and the
            # view outlines what fails instead of refusing the whole file.
            self.thumbnail_error = str(exc)
            rgb = _placeholder_thumbnail(self.info.dimensions)
        payload, _ = self._convert(rgb)
        self._thumbnail = Thumbnail(rgb, payload)
        self._thumbnail_done.set()
        if self._on_thumbnail is not None:
            self._on_thumbnail()

    @property
    def thumbnail(self) -> Thumbnail | None:
        """The thumbnail once read (None before); ``thumbnail_error`` says if it is a stand-in."""
        return self._thumbnail

    def wait_thumbnail(self, timeout: float = 30.0) -> Thumbnail | None:
        """Queue the thumbnail if no plan has yet, and wait for it (headless use and tests)."""
        self._queue_thumbnail()
        self._thumbnail_done.wait(timeout)
        return self._thumbnail

    @property
    def thumbnail_size(self) -> tuple[int, int]:
        """The thumbnail's (width, height); before it is read, the size it will roughly have."""
        thumb = self._thumbnail
        return thumb.size if thumb is not None else _nominal_thumbnail_size(self.info.dimensions)

    # -- frames ----------------------------------------------------------------------------
    def plan(self, viewport: Viewport, request: bool = True) -> FramePlan:
        """Plan a frame and (by default) ask the loader for what it lacks, visible tiles first.

        The first request also queues the thumbnail, to be read after the visible tiles.
        """
        thumb = self._thumbnail
        self._planned_thumbnail = thumb
        size = thumb.size if thumb is not None else _nominal_thumbnail_size(self.info.dimensions)
        plan = plan_frame(viewport, self.tiling, self.cache, self.slide_id, size, self.loader.failures)
        if request:
            wanted = (plan.missing + plan.prefetch, len(plan.missing))
            # Most pan frames stay on the same tiles: asking again would only rebuild the
            # same queue (a cache lookup per key) on the GUI thread. A visible tile evicted
            # meanwhile changes ``missing`` and so is asked for; an evicted prefetch tile
            # waits until the view reaches other tiles (prefetch is best effort).
            if wanted != self._last_request:
                self._last_request = wanted
                self.loader.request(wanted[0], urgent=wanted[1])
            self._queue_thumbnail()
        return plan

    def payload(self, key: TileKey | None):
        """What to draw for an op of the last plan: a cached tile or, for ``None``, the thumbnail.

        ``None`` for a thumbnail op before the thumbnail has arrived (paint a placeholder).
        The thumbnail is the one the plan was made for, so its source rectangles fit even
        if a newer thumbnail arrived in between.
        """
        if key is None:
            thumb = self._planned_thumbnail
            return thumb.payload if thumb is not None else None
        return self.cache.peek(key)

    def close(self) -> None:
        """Stop the loader threads, drop this slide's tiles, then close the file."""
        if self._closed:
            return
        self._closed = True
        self.loader.shutdown(wait=True)
        self.cache.discard_where(lambda k: isinstance(k, TileKey) and k.slide_id == self.slide_id)
        self.reader.close()
