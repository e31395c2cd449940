"""One tab: a slide view with the overview floating in its top-right corner and, when the AI
overlay runs, its heatmap layer and legend (bottom-right)."""

from __future__ import annotations

import os

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QWidget

from histoviewer.core.annotations import AnnotationDocument, Autosaver, open_document
from histoviewer.core.annotations.store import autosave_candidates
from histoviewer.qt.annotation_autosave import AutosaveBanner, ask_close_unsaved
from histoviewer.core.errors import HistoViewerError
from histoviewer.core.inference.live import LiveOptions
from histoviewer.core.inference.overlay import HeatmapStyle
from histoviewer.core.tiles.cache import ByteBoundedCache
from histoviewer.core.tiles.session import SlideSession
from histoviewer.core.tiles.viewport import MAX_SCALE, Viewport
from histoviewer.core.units import um_to_l0_px
from histoviewer.qt.annotation_layer import AnnotationLayer
from histoviewer.qt.annotation_tools import AnnotationTools
from histoviewer.qt.heatmap_layer import HeatmapLayer
from histoviewer.qt.heatmap_legend import HeatmapLegend
from histoviewer.qt.images import rgb_to_qimage
from histoviewer.qt.lesion_layer import LesionClickFilter, LesionLayer
from histoviewer.qt.live_lesions import LiveLesions
from histoviewer.qt.minimap import Minimap
from histoviewer.qt.slide_view import SlideView

MINIMAP_MARGIN = 10
OVERVIEW_HEATMAP_MS = 500  # the overview's heatmap is recomposed at most this often
LEGEND_MARGIN = 10
AUTOSAVE_TICK_MS = 500  # Autosaver.tick() polls: it saves a few seconds after the last edit
FLY_MARGIN = 1.6  # fly-to: the lesion's box fills 1 / FLY_MARGIN of the view
FLY_MIN_SIDE_UM = 400.0  # fly-to never zooms closer than this much tissue: an ITC needs context


class SlideTab(QWidget):
    """Owns the ``SlideSession`` of one slide and its heatmap layer; ``close_slide()`` stops
    every thread (the heatmap's first, since it reads through the session's reader)."""

    heatmapChanged = Signal()  # started, stopped, ready, new results, idle: status may change
    autosaveFailed = Signal(str)  # the annotations could not be saved (edits stay pending)

    def __init__(self, path: str | os.PathLike[str], cache: ByteBoundedCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.view = SlideView(self)
        # Opening may raise SlideOpenError before any widget state depends on it.
        self.session = SlideSession(
            path, cache, convert=rgb_to_qimage,
            on_loaded=self.view.on_tile_loaded, on_failed=self.view.on_tile_failed,
            on_thumbnail=self.view.on_thumbnail,
        )
        self.minimap = Minimap(self.view)
        w, h = self.session.info.dimensions
        # The thumbnail is read after the first frame's tiles; the overview shows a
        # placeholder until then.
        self.minimap.set_slide(None, w, h)
        self.minimap.centerRequested.connect(self.view.center_on)
        self.view.viewportChanged.connect(self.minimap.set_viewport)
        self.view.thumbnailReady.connect(self._on_thumbnail)
        self.legend = HeatmapLegend(self.view)
        self.legend.hide()
        self.legend.heightChanged.connect(self._place_overlays)
        self.heatmap: HeatmapLayer | None = None
        self.heatmap_error: str | None = None
        self.heatmap_failure: str | None = None
        # the uncertainty map's grid while one is shown (qt/uncertainty_controller): the lesions carry it
        self.uncertainty_grid = None
        self._active = True
        self._overview_timer = QTimer(self)
        self._overview_timer.setSingleShot(True)
        self._overview_timer.setInterval(OVERVIEW_HEATMAP_MS)
        self._overview_timer.timeout.connect(self.minimap.invalidate_overlay)
        self.view.viewportChanged.connect(self._on_viewport)
        self.view.interactingChanged.connect(self._on_interacting)
        self.view.set_session(self.session)
        self._init_annotations()
        self._init_lesions()

    def _on_thumbnail(self) -> None:
        if (thumb := self.session.thumbnail) is not None:
            self.minimap.set_thumbnail(thumb.payload)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.view.setGeometry(self.rect())
        self._place_overlays()
        super().resizeEvent(event)

    def _place_overlays(self) -> None:
        self.minimap.move(self.view.width() - self.minimap.width() - MINIMAP_MARGIN, MINIMAP_MARGIN)
        self.legend.move(self.view.width() - self.legend.width() - LEGEND_MARGIN,
                         self.view.height() - self.legend.height() - LEGEND_MARGIN)
        self.autosave_banner.place(self.minimap.width() + 2 * MINIMAP_MARGIN)

    # -- AI overlay -----------------------------------------------------------------------------
    def start_heatmap(self, options: LiveOptions, style: HeatmapStyle, show: bool = True) -> None:
        """(Re)start the overlay with another model, device or stride; cached results for
        that combination appear at once."""
        self.stop_heatmap()
        self.heatmap_error = self.heatmap_failure = None
        layer = HeatmapLayer(self.path, self.session, options, style, self)
        layer.visible = show
        layer.ready.connect(self._on_heatmap_ready)
        layer.updated.connect(self._on_heatmap_updated)
        layer.failed.connect(self._on_heatmap_failed)
        layer.error.connect(self._on_heatmap_error)
        layer.idle.connect(self.heatmapChanged)
        self.heatmap = layer
        self.view.layers.insert(0, layer)  # under every other layer (lesions, annotations)
        self.minimap.overlay = layer
        self.legend.set_style(style)
        self.legend.set_text("starting the AI overlay\u2026")
        self.legend.setVisible(show)
        self._apply_pause()
        self._on_viewport(self.view.viewport)
        self.heatmapChanged.emit()

    def stop_heatmap(self) -> None:
        layer, self.heatmap = self.heatmap, None
        if layer is None:
            return
        self.view.layers.remove(layer)
        self.minimap.overlay = None
        self.minimap.invalidate_overlay()
        layer.close()
        layer.deleteLater()
        self.legend.hide()
        self.view.update()
        self.heatmapChanged.emit()

    def set_heatmap_style(self, style: HeatmapStyle, show: bool) -> None:
        if self.heatmap is None:
            return
        self.heatmap.visible = show
        self.heatmap.live.set_style(style)
        self.legend.set_style(style)
        self.legend.setVisible(show)
        self.view.update()
        self.minimap.invalidate_overlay()

    def set_active(self, active: bool) -> None:
        """Only the tab on screen classifies; hidden tabs keep their results and wait."""
        self._active = active
        self._apply_pause()
        if not active and self.heatmap is not None:
            self.heatmap.live.release_tiles()  # its pass waits: the decoded tiles it kept go

    def _apply_pause(self) -> None:
        if self.heatmap is not None:
            self.heatmap.live.set_interactive(self.view.interacting or not self._active)

    def _on_interacting(self, _moving: bool) -> None:
        self._apply_pause()
        if not _moving:
            self._on_viewport(self.view.viewport)

    def _on_viewport(self, viewport: Viewport) -> None:
        # While the view moves the worker waits anyway; the final view is sent when it stops.
        if self.heatmap is not None and not self.view.interacting:
            self.heatmap.live.submit_view(viewport.l0_xywh, viewport.l0_per_screen_px)

    # The layer's signals come only from the running layer: a layer emits nothing once
    # ``close()`` (in ``stop_heatmap``) returned, even for results already queued.
    def _on_heatmap_ready(self) -> None:
        self._update_legend_text(out_of_domain=False)
        self.heatmapChanged.emit()

    def _update_legend_text(self, out_of_domain: bool) -> None:
        """The legend names the model with its caution (a demonstration warning, else what it
        was trained on), or says the result is unreliable on tissue unlike its training data."""
        live = self.heatmap.live if self.heatmap is not None else None
        if live is None or live.model is None:
            return
        info = live.model.info
        caution = "DEMONSTRATION MODEL \u2013 not for diagnosis" if info.demonstration else info.caution
        if out_of_domain:
            caution = "AI result unreliable here: tissue unlike the model's training data"
        self.legend.set_text(f"{info.name} ({info.kind})", caution, alarm=out_of_domain)

    def _on_heatmap_updated(self, l0_rect) -> None:
        layer = self.heatmap
        if layer.visible:
            rect = layer.screen_rect(self.view.viewport, l0_rect).intersected(self.view.rect())
            if not rect.isEmpty():
                self.view.update(rect)
            if not self._overview_timer.isActive():
                self._overview_timer.start()
        self.heatmapChanged.emit()

    def _on_heatmap_failed(self, message: str) -> None:
        self.heatmap_failure = message
        self.heatmapChanged.emit()

    def _on_heatmap_error(self, message: str) -> None:
        self.heatmap_error = message
        self.legend.set_text("AI overlay unavailable", message, alarm=True, available=False)
        self.heatmapChanged.emit()

    def heatmap_coverage(self) -> tuple[float, float] | None:
        """(fraction of tissue in view classified, fraction of the slide's tissue), or None."""
        if self.heatmap is None or self.heatmap.live.grid is None:
            return None
        live = self.heatmap.live
        return live.coverage(self.view.viewport.l0_xywh), live.coverage()

    def close_slide(self) -> None:
        self._close_annotations()
        self.lesions.close()
        self.stop_heatmap()
        self.view.session = None
        self.session.close()

    # -- annotations ----------------------------------------------------------------------------
    def _init_annotations(self) -> None:
        """The slide's annotations (restored from their autosave), their layer, tools and
        autosaver. ``annotation_recovery`` says what was restored; ``annotation_error`` why
        a damaged autosave was set aside (it is renamed, never overwritten)."""
        mpp = self.session.info.mpp
        self.annotation_recovery = None
        self.annotation_error: str | None = None
        self.annotation_label = None  # the last SlideLabel recomputed from the annotations
        try:
            self.annotations, self.annotation_recovery = open_document(self.path, mpp)
        except HistoViewerError as exc:
            self.annotations = AnnotationDocument(mpp=mpp)
            self.annotation_error = f"{exc}{self._set_aside_damaged_autosave()}"
        self.annotation_tools = AnnotationTools(self.view, self.annotations, self)
        self.annotation_layer = AnnotationLayer(self.view, self.annotations, self.annotation_tools)
        self.annotation_tools.layer = self.annotation_layer
        self.view.layers.append(self.annotation_layer)
        self.view.input_handler = self.annotation_tools
        self.autosaver = Autosaver(self.annotations, self.path)
        self.autosave_error: str | None = None
        self.autosave_banner = AutosaveBanner(self.view)  # failures named in the window, not a dialog
        self.autosave_banner.retryRequested.connect(self.flush_annotations)
        self.ask_close_unsaved = ask_close_unsaved  # replaceable (tests answer for the user)
        self._shown_replacements: tuple[str, ...] = ()
        self._discard_unsaved = False
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setInterval(AUTOSAVE_TICK_MS)
        self._autosave_timer.timeout.connect(self._autosave_tick)
        self._autosave_timer.start()
        # The heatmap layer is added after this one; annotations must stay on top of it.
        self.heatmapChanged.connect(self._keep_annotations_on_top)

    def _set_aside_damaged_autosave(self) -> str:
        found = [p for p in autosave_candidates(self.path) if p.is_file()]
        if not found:
            return ""
        damaged = max(found, key=lambda p: p.stat().st_mtime_ns)
        aside = damaged.with_name(damaged.name + ".damaged")
        try:
            damaged.replace(aside)
        except OSError as exc:
            return f" (could not set it aside: {exc.strerror or exc})"
        return f" It was renamed to {aside.name}; new edits are saved afresh."

    def _keep_annotations_on_top(self) -> None:
        layers = self.view.layers
        if self.annotation_layer in layers and layers[-1] is not self.annotation_layer:
            layers.remove(self.annotation_layer)
            layers.append(self.annotation_layer)
            self.view.update()

    def _autosave_tick(self) -> None:
        try:
            path = self.autosaver.tick()
        except HistoViewerError as exc:
            self._autosave_failed(str(exc))
            return
        if path is not None:
            self._autosave_done(path)

    def _autosave_failed(self, message: str) -> None:
        if message != self.autosave_error:  # once per problem, not at every retry
            self.autosave_error = message
            self.autosave_banner.show_failure(message)
            self.autosaveFailed.emit(message)

    def _autosave_done(self, path) -> None:
        self.autosave_error = None
        self.autosave_banner.clear_failure()
        replaced = self.autosaver.last_replacements
        if replaced and replaced != self._shown_replacements:
            self.autosave_banner.show_replacements(str(path), replaced)
        self._shown_replacements = replaced

    def flush_annotations(self) -> bool:
        """Save pending edits now (the slide closes, the user pressed Retry); False when
        they could not be saved (the banner says why)."""
        try:
            path = self.autosaver.flush()
        except HistoViewerError as exc:
            self.autosave_error = None  # report again, even if it is the same problem
            self._autosave_failed(str(exc))
            return False
        if path is not None:
            self._autosave_done(path)
        return True

    def confirm_close(self) -> bool:
        """Before the tab closes: save pending edits; when that fails, ask whether to close
        anyway (True) or keep the slide open (False), so no edit is lost unasked."""
        if self.flush_annotations():
            return True
        if self.ask_close_unsaved(self, self.autosave_error or "unknown error"):
            self._discard_unsaved = True
            return True
        return False

    def _close_annotations(self) -> None:
        self._autosave_timer.stop()
        self.annotation_tools.cancel()
        if self._discard_unsaved:
            self.autosaver.discard()  # the user chose to close without them
        else:
            self.flush_annotations()
            try:
                self.autosaver.close()
            except HistoViewerError:
                pass  # already reported by flush_annotations; the edits cannot be saved
        self.annotation_tools.close()
        self.annotation_layer.close()
        self.view.input_handler = None

    # -- lesions (summary panel, lesion layer, fly-to) ------------------------------------------
    def _init_lesions(self) -> None:
        """Lesions follow the heatmap through ``heatmapChanged``: nothing above needs to know."""
        self.lesion_layer = LesionLayer()
        self.view.layers.append(self.lesion_layer)
        self.lesions = LiveLesions(self, parent=self)
        self.lesions.changed.connect(self._on_lesions_changed)
        self.lesion_clicks = LesionClickFilter(self.view, self.lesion_layer, self)  # .picked(index)
        self.lesion_clicks.picked.connect(self.select_lesion)

    def _on_lesions_changed(self, snapshot) -> None:
        ood = snapshot is not None and snapshot.domain.out_of_domain
        self.lesion_layer.set_lesions(snapshot.result.lesions if snapshot is not None else (), classed=not ood)
        self._update_legend_text(ood)
        if self.lesion_layer.visible:
            self.view.update()

    def set_lesions_visible(self, visible: bool) -> None:
        self.lesion_layer.visible = visible
        self.view.update()

    def select_lesion(self, index: int | None) -> None:
        """Outline ``index`` (a lesion index, 1 = largest) as the selected lesion."""
        layer = self.lesion_layer
        for old_or_new in (layer.lesion(layer.selected), layer.lesion(index)):
            if old_or_new is not None:
                self.view.update(layer.screen_rect(self.view.viewport, old_or_new))
        layer.selected = index if layer.lesion(index) is not None else None

    def fly_to_lesion(self, index: int) -> bool:
        """Centre the view on lesion ``index``, zoomed to fit its box with a margin (never closer
        than ``FLY_MIN_SIDE_UM`` of tissue), and select it. False if there is no such lesion."""
        lesion = self.lesion_layer.lesion(index)
        if lesion is None:
            return False
        x, y, w, h = lesion.l0_bbox
        mpp = self.session.info.mpp
        l0_min_side = um_to_l0_px(FLY_MIN_SIDE_UM, mpp) or 0.0  # unknown scale: no minimum
        side_w, side_h = max(w, l0_min_side, 1.0) * FLY_MARGIN, max(h, l0_min_side, 1.0) * FLY_MARGIN
        view = self.view
        view.set_scale(min(view.width() / side_w, view.height() / side_h, MAX_SCALE))  # no longer "fitted"
        self.lesion_layer.selected = index
        view.set_viewport(Viewport(x + w / 2, y + h / 2, view.viewport.scale, view.width(), view.height()))
        view.update()
        return True
