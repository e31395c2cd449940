"""The slide view: paints a ``FramePlan``, turns mouse and keys into viewport changes."""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor, QFont, QFontMetricsF, QKeyEvent, QMouseEvent, QPainter, QPen, QRegion, QStaticText, QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from histoviewer.core.tiles.frame import FramePlan
from histoviewer.core.tiles.geometry import TileKey
from histoviewer.core.tiles.session import PLACEHOLDER_GREY, SlideSession
from histoviewer.core.tiles.viewport import Viewport, fit_scale, fit_viewport
from histoviewer.core.units import format_length_um, scale_bar_length_um
from histoviewer.qt.threads import gui_thread

WHEEL_STEP = 1.25  # zoom factor per wheel notch (120 eighths of a degree)
KEY_PAN_FRACTION = 0.125  # arrow keys move the view by this fraction of its size
BACKGROUND = QColor(238, 238, 238)
PLACEHOLDER = QColor(PLACEHOLDER_GREY, PLACEHOLDER_GREY, PLACEHOLDER_GREY)  # slide area, no pixels yet
SCALE_BAR_MAX_PX = 200.0
SCALE_BAR_MARGIN = 16  # screen px from the bottom-left corner to the bar
SCALE_BAR_HEIGHT = 6
# Scaled tiles are drawn with nearest-neighbour sampling while the view moves (a third
# of the cost of smooth scaling) and repainted smoothly once input has paused this long.
SMOOTH_AFTER_IDLE_MS = 150


class SlideView(QWidget):
    """Shows one ``SlideSession``. Viewport state lives in a core ``Viewport``."""

    viewportChanged = Signal(object)  # Viewport
    cursorMoved = Signal(object)  # (l0_x, l0_y) or None when the cursor leaves the slide
    tileFailed = Signal(str)
    frameComplete = Signal()
    thumbnailReady = Signal()  # the session's thumbnail arrived (or its stand-in, on error)
    # True when input starts moving the view, False once it pauses (SMOOTH_AFTER_IDLE_MS) or
    # the mouse button is released: background work yields the CPU in between.
    interactingChanged = Signal(bool)
    inspectRequested = Signal(object)  # (l0_x, l0_y): Ctrl+click, the patch inspector's gesture

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session: SlideSession | None = None
        self.viewport = Viewport(0.0, 0.0, 1.0, 1, 1)
        # Why the last tile of this slide could not be read (None: every tile so far was).
        # Kept per view, so the status bar says it for this slide only, and it goes with it.
        self.tile_failure: str | None = None
        self.last_plan: FramePlan | None = None
        self.show_scale_bar = True
        # False: always draw scaled tiles smoothly (the X11 scroll test compares like with like).
        self.rough_while_moving = True
        # What the last paint did, for tests and benchmarks.
        self.last_paint_region = QRegion()
        self.last_ops_drawn = 0
        self.last_paint_smooth = True
        # Drawn over the tiles in order: objects with paint(painter, viewport, region).
        self.layers: list = []
        # Consulted before the view's own panning (the annotation tools): an object with
        # mouse_press/mouse_move/mouse_release/mouse_double_click/key_press/key_release
        # (QEvent) -> bool, True when it used the event, and mouse_hover(QMouseEvent).
        # A press it takes sends the moves and the release to it too (a grab).
        self.input_handler = None
        self._handler_grab = False
        self._drag_from: QPointF | None = None
        self._drag_button = Qt.MouseButton.LeftButton
        self._pan_remainder = (0.0, 0.0)
        self._fitted = False
        self._moving = False
        self._drew_rough = False
        self._idle_timer = QTimer(self)
        self._idle_timer.setSingleShot(True)
        self._idle_timer.setInterval(SMOOTH_AFTER_IDLE_MS)
        self._idle_timer.timeout.connect(self._on_idle)
        self._bar_font: QFont | None = None
        self._bar_layout: tuple[tuple[str, float, int], QStaticText, QRectF, QPointF] | None = None
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(200, 150)

    # -- session ---------------------------------------------------------------------------
    def set_session(self, session: SlideSession) -> None:
        self.session = session
        self._fitted = False
        self.fit()

    # The SlideSession's callbacks: called on loader threads, run on the GUI thread (dropped
    # once the view is deleted, ignored once its slide closed: ``session`` is None then).
    @gui_thread
    def on_tile_loaded(self, key: TileKey) -> None:
        if self.session is None or key.slide_id != self.session.slide_id:
            return
        rect = self._dirty_rect_for_tile(key)
        if not rect.isEmpty():
            self.update(rect)

    def _dirty_rect_for_tile(self, key: TileKey) -> QRect:
        """Where a newly loaded tile can change the picture: its own screen rectangle.

        A tile finer than the level drawn changes nothing. A coarser one only stands in
        for missing tiles of the drawn level, and a missing tile's fallback switches from
        the thumbnail once every coarse tile under it is there, so its rectangle grows to
        the drawn level's tile grid. Repainting just this, not the whole window, keeps a
        burst of arriving tiles from costing a full frame each.
        """
        plan = self.last_plan
        if plan is None:
            return self.rect()
        if key.level < plan.level or (key.level > plan.level and plan.complete):
            return QRect()
        tiling, info = self.session.tiling, self.session.info
        tile = tiling.tile_rect(key.level, key.t_x, key.t_y)
        ds = info.level_downsamples[key.level]
        x0, y0 = tile.l0_x, tile.l0_y
        x1, y1 = x0 + tile.lv_width * ds, y0 + tile.lv_height * ds
        if key.level > plan.level:
            span = tiling.tile_size * info.level_downsamples[plan.level]
            x0, y0 = math.floor(x0 / span) * span, math.floor(y0 / span) * span
            x1, y1 = math.ceil(x1 / span) * span, math.ceil(y1 / span) * span
        sx0, sy0 = self.viewport.l0_to_screen(x0, y0)
        sx1, sy1 = self.viewport.l0_to_screen(x1, y1)
        return QRectF(QPointF(sx0, sy0), QPointF(sx1, sy1)).toAlignedRect().intersected(self.rect())

    @gui_thread
    def on_thumbnail(self) -> None:
        if self.session is None:
            return
        if self.session.thumbnail_error:
            self.tile_failure = self.session.thumbnail_error
            self.tileFailed.emit(self.session.thumbnail_error)
        self.thumbnailReady.emit()
        self.update()  # every fallback op may change

    @gui_thread
    def on_tile_failed(self, key: TileKey, message: str) -> None:
        if self.session is None:
            return
        self.tile_failure = message
        self.tileFailed.emit(message)
        self.update()

    # -- viewport --------------------------------------------------------------------------
    @property
    def min_scale(self) -> float:
        if self.session is None:
            return 1e-6
        w, h = self.session.info.dimensions
        return fit_scale(w, h, max(self.width(), 1), max(self.height(), 1)) / 4

    @property
    def interacting(self) -> bool:
        return self._moving

    def _mark_moving(self) -> None:
        """Input is moving the view: draw rough until it pauses (see SMOOTH_AFTER_IDLE_MS)."""
        if not self._moving:
            self._moving = True
            self.interactingChanged.emit(True)
        self._idle_timer.start()

    def _on_idle(self) -> None:
        if not self._moving:
            return
        self._moving = False
        self.interactingChanged.emit(False)
        if self._drew_rough:
            self._drew_rough = False
            self.update()  # once, smoothly

    def set_viewport(self, viewport: Viewport) -> None:
        if self.session is not None:
            viewport = viewport.clamped(*self.session.info.dimensions)
        if viewport != self.viewport:
            self.viewport = viewport
            self.viewportChanged.emit(viewport)
            self.update()

    def fit(self) -> None:
        if self.session is None:
            return
        w, h = self.session.info.dimensions
        self._fitted = True
        self.set_viewport(fit_viewport(w, h, max(self.width(), 1), max(self.height(), 1)))

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        if anchor is None:
            anchor = QPointF(self.width() / 2, self.height() / 2)
        self._fitted = False
        self._mark_moving()
        self.set_viewport(self.viewport.zoomed(factor, anchor.x(), anchor.y(), self.min_scale))

    def set_scale(self, scale: float) -> None:
        self._fitted = False
        self.set_viewport(self.viewport.with_scale(max(scale, self.min_scale)))

    def center_on(self, l0_x: float, l0_y: float) -> None:
        self._mark_moving()  # the overview is dragged like the view
        self.set_viewport(Viewport(l0_x, l0_y, self.viewport.scale, self.viewport.screen_w, self.viewport.screen_h))

    def pan_by(self, screen_dx: float, screen_dy: float) -> None:
        """Pan by whole screen pixels, scrolling what is already painted.

        Only the strip that scrolls into view is repainted (plus the scale bar), so a
        pan frame costs a fraction of a full repaint at any zoom. Sub-pixel remainders
        are carried to the next call so slow drags do not drift.
        """
        self._fitted = False
        rx, ry = self._pan_remainder
        dx, dy = screen_dx + rx, screen_dy + ry
        ix, iy = round(dx), round(dy)
        self._pan_remainder = (dx - ix, dy - iy)
        if ix == 0 and iy == 0:
            return
        self._mark_moving()
        old = self.viewport
        new = old.panned(ix, iy)
        if self.session is not None:
            new = new.clamped(*self.session.info.dimensions)
        shift_x, shift_y = (old.l0_cx - new.l0_cx) * old.scale, (old.l0_cy - new.l0_cy) * old.scale
        scrollable = (
            self.session is not None
            and math.isclose(shift_x, round(shift_x), abs_tol=1e-6)
            and math.isclose(shift_y, round(shift_y), abs_tol=1e-6)
            and abs(shift_x) < self.width() and abs(shift_y) < self.height()
        )
        if not scrollable:
            self.set_viewport(new)
            return
        if new == old:
            return
        self.viewport = new
        self.viewportChanged.emit(new)
        sx, sy = round(shift_x), round(shift_y)
        self.scroll(sx, sy, self.rect())
        # Scrolling copies pixels, including those of the scale bar and of overlay children
        # (the overview): repaint where their stale copies landed, and where they belong
        # (an opaque child repaints itself there; the tiles beneath it are not drawn).
        bar = self._scale_bar_rect()
        self.update(bar)
        self.update(bar.translated(sx, sy))
        for child in self.findChildren(QWidget):
            if child.isVisible() and child.parentWidget() is self:
                self.update(child.geometry())
                self.update(child.geometry().translated(sx, sy))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._fitted:
            self.fit()
        else:
            self.set_viewport(self.viewport.resized(self.width(), self.height()))
        super().resizeEvent(event)

    # -- painting --------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        region = event.region()
        self.last_paint_region = QRegion(region)
        plan = None
        try:
            if self.session is None:
                painter.fillRect(event.rect(), BACKGROUND)
                return
            # Background only beside the slide: within it every pixel gets a tile, the
            # thumbnail or the placeholder (a 1 px ring stays, for fractional edges).
            w, h = self.session.info.dimensions
            x0, y0 = self.viewport.l0_to_screen(0, 0)
            x1, y1 = self.viewport.l0_to_screen(w, h)
            inside = QRectF(QPointF(x0, y0), QPointF(x1, y1)).toAlignedRect().adjusted(1, 1, -1, -1)
            for rect in region.subtracted(QRegion(inside)):
                painter.fillRect(rect, BACKGROUND)
            plan = self.session.plan(self.viewport)
            self.last_plan = plan
            self._draw_plan(painter, plan, region)
            for layer in self.layers:
                layer.paint(painter, self.viewport, region)
            if self.show_scale_bar:
                self._draw_scale_bar(painter, region)
        finally:
            painter.end()
        if plan is not None and plan.complete:
            self.frameComplete.emit()

    def _draw_plan(self, painter: QPainter, plan: FramePlan, region: QRegion) -> None:
        session = self.session
        scaled = not math.isclose(self.viewport.scale * session.info.level_downsamples[plan.level], 1.0)
        rough = scaled and self._moving and self.rough_while_moving
        smooth = scaled and not rough
        self._drew_rough |= rough
        self.last_paint_smooth = smooth
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        drawn = 0
        for op in plan.ops:
            dst = QRectF(*op.dst)
            # The region, not its bounding rectangle: after a scroll the dirty parts (a
            # strip, the scale bar, the overview's old place) span the whole window.
            if not region.intersects(dst.toAlignedRect()):
                continue
            image = session.payload(op.key)
            if image is not None:
                painter.drawImage(dst, image, QRectF(*op.src))
            else:  # the thumbnail op before the thumbnail arrived: "slide here"
                painter.fillRect(dst, PLACEHOLDER)
            drawn += 1
        self.last_ops_drawn = drawn
        if plan.failed:
            painter.setPen(QPen(QColor(200, 30, 30), 2, Qt.PenStyle.DashLine))
            painter.setBrush(QColor(200, 30, 30, 40))
            for rect in plan.failed:
                painter.drawRect(QRectF(*rect))
                if rect[2] > 120 and rect[3] > 30:
                    painter.drawText(QRectF(*rect), Qt.AlignmentFlag.AlignCenter, "tile unreadable")

    def _scale_bar_text(self) -> tuple[str, float]:
        """The scale bar's label and its length in screen pixels (0 when the scale is unknown)."""
        mpp = self.session.info.mpp if self.session is not None else None
        if mpp is None:
            return "scale unknown (File > Set pixel size\u2026)", 0.0
        screen_mpp = mpp / self.viewport.scale  # um per screen px
        length_um = scale_bar_length_um(screen_mpp, min(SCALE_BAR_MAX_PX, self.width() / 3))
        user = " (user-set scale)" if self.session.info.mpp_user_set else ""
        return format_length_um(length_um) + user, length_um / screen_mpp

    def _scale_bar_layout(self) -> tuple[QStaticText, QRectF, QPointF, float]:
        """(label, box, label position, bar length px), cached until label, length or height change.

        A pan frame repaints the bar twice (it is scrolled away with the tiles); building a
        font and measuring text each time cost more than drawing it.
        """
        text, bar_px = self._scale_bar_text()
        key = (text, bar_px, self.height())
        if self._bar_layout is None or self._bar_layout[0] != key:
            if self._bar_font is None:
                self._bar_font = QFont(self.font())
                self._bar_font.setPointSizeF(9)
            metrics = QFontMetricsF(self._bar_font)
            static = QStaticText(text)
            static.setTextFormat(Qt.TextFormat.PlainText)
            static.prepare(font=self._bar_font)
            margin, height = SCALE_BAR_MARGIN, SCALE_BAR_HEIGHT
            box = QRectF(margin - 6, self.height() - margin - height - 24,
                         max(bar_px, metrics.horizontalAdvance(text)) + 12, height + 28)
            text_top_left = QPointF(margin, self.height() - margin - height - 6 - metrics.ascent())
            self._bar_layout = (key, static, box, text_top_left)
        _, static, box, text_top_left = self._bar_layout
        return static, box, text_top_left, bar_px

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.FontChange:
            self._bar_font, self._bar_layout = None, None
        super().changeEvent(event)

    def _scale_bar_rect(self) -> QRect:
        """Screen area the scale bar covers (to repaint it when scrolling)."""
        if not self.show_scale_bar:
            return QRect()
        return self._scale_bar_layout()[1].toAlignedRect().adjusted(-1, -1, 1, 1)

    def _draw_scale_bar(self, painter: QPainter, region: QRegion) -> None:
        static, box, text_top_left, bar_px = self._scale_bar_layout()
        if not region.intersects(box.toAlignedRect()):
            return
        painter.setFont(self._bar_font)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(255, 255, 255, 200))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor(20, 20, 20))
        painter.drawStaticText(text_top_left, static)
        if bar_px:
            painter.fillRect(QRectF(SCALE_BAR_MARGIN, self.height() - SCALE_BAR_MARGIN - SCALE_BAR_HEIGHT,
                                    bar_px, SCALE_BAR_HEIGHT), QColor(20, 20, 20))

    # -- input -----------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        notches = event.angleDelta().y() / 120.0
        if notches:
            self.zoom_by(WHEEL_STEP**notches, event.position())
        event.accept()

    def _drop_stale_grabs(self, buttons) -> None:
        """Forget a drag or a tool grab whose release never came (a popup, such as a tool's
        context menu, took it): else the next moves would go to a stale handler or pan with
        no button held."""
        if buttons == Qt.MouseButton.NoButton or self._drag_from is not None and not buttons & self._drag_button:
            if self._drag_from is not None:
                self._drag_from = None
                self.unsetCursor()
        if buttons == Qt.MouseButton.NoButton:
            self._handler_grab = False

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        # Only this button down: any earlier press sequence is over, whatever happened to it.
        self._drop_stale_grabs(event.buttons() & ~event.button())
        # Ctrl+click inspects a patch whatever tool is active (no tool uses Ctrl; Alt is the
        # select tool's vertex delete and, on many desktops, the window manager's drag).
        if (event.button() == Qt.MouseButton.LeftButton and self.session is not None
                and event.modifiers() & Qt.KeyboardModifier.ControlModifier):
            self.inspectRequested.emit(self.viewport.screen_to_l0(event.position().x(), event.position().y()))
            return
        handler = self.input_handler
        if handler is not None and handler.mouse_press(event):
            self._handler_grab = True
            return
        # Left drags pan (unless a tool took the press); a middle drag always pans, so the
        # view moves while a drawing tool is active.
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton) and self._drag_from is None:
            self._drag_from = event.position()
            self._drag_button = event.button()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        pos = event.position()
        self._drop_stale_grabs(event.buttons())
        if self._handler_grab:
            self.input_handler.mouse_move(event)
        elif self._drag_from is not None:
            delta = pos - self._drag_from
            self._drag_from = pos
            self.pan_by(delta.x(), delta.y())
        elif self.input_handler is not None:
            self.input_handler.mouse_hover(event)
        self._emit_cursor(pos)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._handler_grab:
            self.input_handler.mouse_release(event)
            if event.buttons() == Qt.MouseButton.NoButton:
                self._handler_grab = False
            return
        if self._drag_from is not None and event.button() == self._drag_button:
            self._drag_from = None
            self.unsetCursor()
            if self.input_handler is not None:
                self.input_handler.mouse_hover(event)  # the tool's cursor again
            # The pan is over: smooth repaint and background work start now, not 150 ms later.
            self._idle_timer.stop()
            self._on_idle()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        handler = self.input_handler
        if handler is not None and handler.mouse_double_click(event):
            return
        self.zoom_by(2.0, event.position())

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.cursorMoved.emit(None)

    def _emit_cursor(self, pos: QPointF) -> None:
        if self.session is None:
            return
        l0_x, l0_y = self.viewport.screen_to_l0(pos.x(), pos.y())
        w, h = self.session.info.dimensions
        self.cursorMoved.emit((l0_x, l0_y) if 0 <= l0_x < w and 0 <= l0_y < h else None)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if self.input_handler is not None and self.input_handler.key_press(event):
            return
        key = event.key()
        step_x, step_y = self.width() * KEY_PAN_FRACTION, self.height() * KEY_PAN_FRACTION
        pans = {
            Qt.Key.Key_Left: (step_x, 0), Qt.Key.Key_Right: (-step_x, 0),
            Qt.Key.Key_Up: (0, step_y), Qt.Key.Key_Down: (0, -step_y),
        }
        if key in pans:
            self.pan_by(*pans[key])
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_by(WHEEL_STEP)
        elif key == Qt.Key.Key_Minus:
            self.zoom_by(1 / WHEEL_STEP)
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if self.input_handler is not None and self.input_handler.key_release(event):
            return
        super().keyReleaseEvent(event)
