"""One open slide as the viewer uses it: reader, tiling, loader and the pinned thumbnail."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import numpy as np

from histoviewer.core.errors import SlideReadError
from histoviewer.core.slide import open_slide
from histoviewer.core.tiles.cache import ByteBoundedCache
from histoviewer.core.tiles.frame import FramePlan, plan_frame
from histoviewer.core.tiles.geometry import DEFAULT_TILE_SIZE, LevelTiling, TileKey
from histoviewer.core.tiles.loader import Converter, TileLoader, keep_array
from histoviewer.core.tiles.viewport import Viewport

THUMBNAIL_MAX_SIDE = 1024
_slide_ids = itertools.count(1)
_PLACEHOLDER_GREY = 200


def _placeholder_thumbnail(l0_size: tuple[int, int]) -> np.ndarray:
    """A flat grey stand-in with the slide's aspect ratio, for a thumbnail that cannot be read."""
    k = THUMBNAIL_MAX_SIDE / max(l0_size)
    w, h = max(1, round(l0_size[0] * k)), max(1, round(l0_size[1] * k))
    return np.full((h, w, 3), _PLACEHOLDER_GREY, np.uint8)


class SlideSession:
    """Everything the viewer needs for one slide; ``close()`` stops workers, then the file.

    The thumbnail is read synchronously on open (from the coarsest level, so it is cheap)
    and kept pinned: it is the last-resort fallback that keeps the view from being blank.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        cache: ByteBoundedCache,
        *,
        convert: Converter = keep_array,
        on_loaded: Callable[[TileKey], None] | None = None,
        on_failed: Callable[[TileKey, str], None] | None = None,
        tile_size: int = DEFAULT_TILE_SIZE,
        workers: int = 2,
    ) -> None:
        self.reader = open_slide(path)
        self.info = self.reader.info
        self.slide_id = next(_slide_ids)
        self.cache = cache
        self.tiling = LevelTiling(self.info, tile_size)
        self.thumbnail_error: str | None = None
        try:
            self.thumbnail: np.ndarray = self.reader.thumbnail(THUMBNAIL_MAX_SIDE)
        except SlideReadError as exc:
            # Broken pixel data is found tile by tile; the slide still opens, and the
            # view outlines what fails instead of refusing the whole file.
            self.thumbnail_error = str(exc)
            self.thumbnail = _placeholder_thumbnail(self.info.dimensions)
        self.thumbnail_payload, _ = convert(self.thumbnail)
        self.loader = TileLoader(
            self.reader, self.tiling, cache, self.slide_id,
            convert=convert, on_loaded=on_loaded, on_failed=on_failed, workers=workers,
        )
        self._closed = False

    @property
    def thumbnail_size(self) -> tuple[int, int]:
        return self.thumbnail.shape[1], self.thumbnail.shape[0]

    def plan(self, viewport: Viewport, request: bool = True) -> FramePlan:
        """Plan a frame and (by default) ask the loader for what it lacks, visible tiles first."""
        plan = plan_frame(viewport, self.tiling, self.cache, self.slide_id, self.thumbnail_size, self.loader.failures)
        if request:
            self.loader.request(plan.missing + plan.prefetch)
        return plan

    def payload(self, key: TileKey | None):
        """What to draw for a plan's op: a cached tile or, for ``None``, the thumbnail."""
        return self.thumbnail_payload if key is None else self.cache.peek(key)

    def close(self) -> None:
        """Stop the loader threads, drop this slide's tiles, then close the file."""
        if self._closed:
            return
        self._closed = True
        self.loader.shutdown(wait=True)
        self.cache.discard_where(lambda k: isinstance(k, TileKey) and k.slide_id == self.slide_id)
        self.reader.close()
