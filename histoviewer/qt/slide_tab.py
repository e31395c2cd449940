"""One tab: a slide view with the overview floating in its top-right corner."""

from __future__ import annotations

import os

from PySide6.QtWidgets import QWidget

from histoviewer.core.tiles.cache import ByteBoundedCache
from histoviewer.core.tiles.session import SlideSession
from histoviewer.qt.images import rgb_to_qimage
from histoviewer.qt.minimap import Minimap
from histoviewer.qt.slide_view import SlideView

MINIMAP_MARGIN = 10


class SlideTab(QWidget):
    """Owns the ``SlideSession`` of one slide; ``close_slide()`` stops its threads."""

    def __init__(self, path: str | os.PathLike[str], cache: ByteBoundedCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = SlideView(self)
        # Opening may raise SlideOpenError before any widget state depends on it.
        self.session = SlideSession(
            path, cache, convert=rgb_to_qimage,
            on_loaded=self.view.tile_loaded_callback, on_failed=self.view.tile_failed_callback,
            on_thumbnail=self.view.thumbnail_callback,
        )
        self.minimap = Minimap(self.view)
        w, h = self.session.info.dimensions
        # The thumbnail is read after the first frame's tiles; the overview shows a
        # placeholder until then.
        self.minimap.set_slide(None, w, h)
        self.minimap.centerRequested.connect(self.view.center_on)
        self.view.viewportChanged.connect(self.minimap.set_viewport)
        self.view.thumbnailReady.connect(self._on_thumbnail)
        self.view.set_session(self.session)

    def _on_thumbnail(self) -> None:
        if (thumb := self.session.thumbnail) is not None:
            self.minimap.set_thumbnail(thumb.payload)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.view.setGeometry(self.rect())
        self._place_minimap()
        super().resizeEvent(event)

    def _place_minimap(self) -> None:
        self.minimap.move(self.view.width() - self.minimap.width() - MINIMAP_MARGIN, MINIMAP_MARGIN)

    def close_slide(self) -> None:
        self.view.session = None
        self.session.close()
