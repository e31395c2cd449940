"""The View menu and the status bar's view labels, for the slide in front.

``ViewController`` owns the View menu (fit, zoom, magnifications, overview, scale bar) and
the status-bar labels for the magnification, the cursor's position and tiles that could not
be read. It sees the window only through ``TabHost`` (``window_host.py``); the window places
the menu and the labels, and calls ``attach`` for each new slide.

The labels describe the slide in front and nothing else: they are always recomputed from
the current tab's own state (its viewport, its ``tile_failure``), never carried over from
whichever view spoke last, so switching or closing tabs cannot leave another slide's
magnification or tile warning on screen.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QMenu, QWidget

from histoviewer.core.tiles.viewport import magnification_scale
from histoviewer.core.units import l0_px_to_mm
from histoviewer.qt.actions import make_action
from histoviewer.qt.slide_tab import SlideTab
from histoviewer.qt.slide_view import SlideView
from histoviewer.qt.window_host import TabHost

MAGNIFICATIONS = (1, 5, 10, 20, 40)
TILE_FAILURE_MS = 10000  # how long the status bar shows why a tile could not be read


class ViewController(QObject):
    def __init__(self, host: TabHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.mag_label = QLabel("", parent)  # the current magnification (or zoom, when unknown)
        self.pos_label = QLabel("", parent)  # the cursor's level-0 position, in px and mm
        self.load_label = QLabel("", parent)  # says that some tiles could not be read
        self.load_label.setStyleSheet("color: #a01010;")
        self._tile_message = ""  # the status-bar message this controller last showed for a tile
        self.menu = QMenu("&View", parent)
        self._add("&Fit to window", lambda: self._with_view(SlideView.fit), "F")
        self._add("Zoom &in", lambda: self._with_view(lambda v: v.zoom_by(1.25)), QKeySequence.StandardKey.ZoomIn)
        self._add("Zoom &out", lambda: self._with_view(lambda v: v.zoom_by(0.8)), QKeySequence.StandardKey.ZoomOut)
        self.menu.addSeparator()
        self.mag_actions: dict[int, QAction] = {}
        for i, mag in enumerate(MAGNIFICATIONS, start=1):
            self.mag_actions[mag] = self._add(f"{mag}x", lambda _=False, m=mag: self.jump_to_magnification(m),
                                              f"Ctrl+{i}")
        self.menu.addSeparator()
        self.minimap_action = self._add("Show &overview", self._toggle_minimap, "O", checked=True)
        self.scale_bar_action = self._add("Show &scale bar", self._toggle_scale_bar, checked=True)
        host.currentTabChanged.connect(self._on_tab_changed)
        self._on_tab_changed(host.current_tab())

    def _add(self, text: str, slot, shortcut=None, checked: bool | None = None) -> QAction:
        return make_action(self.menu, text, slot, shortcut=shortcut, checked=checked, menu=self.menu)

    def attach(self, tab: SlideTab) -> None:
        """A slide was opened: it follows the overview and scale-bar actions, its view the labels."""
        tab.view.viewportChanged.connect(lambda _viewport, t=tab: self._on_viewport_changed(t))
        tab.view.cursorMoved.connect(lambda l0_pos, t=tab: self._on_cursor_moved(t, l0_pos))
        tab.view.tileFailed.connect(lambda message, t=tab: self._on_tile_failed(t, message))
        tab.minimap.setVisible(self.minimap_action.isChecked())
        tab.view.show_scale_bar = self.scale_bar_action.isChecked()

    def _with_view(self, fn) -> None:
        if (tab := self.host.current_tab()) is not None:
            fn(tab.view)

    def jump_to_magnification(self, magnification: float) -> None:
        tab = self.host.current_tab()
        if tab is None:
            return
        base = tab.session.info.base_magnification
        if base is None:
            self.host.report_error("Magnification unknown",
                                   "This slide states neither objective power nor microns per pixel.")
            return
        tab.view.set_scale(magnification_scale(magnification, base))

    def _toggle_minimap(self, checked: bool) -> None:
        for tab in self.host.slide_tabs():
            tab.minimap.setVisible(checked)

    def _toggle_scale_bar(self, checked: bool) -> None:
        for tab in self.host.slide_tabs():
            tab.view.show_scale_bar = checked
            tab.view.update()

    # -- status labels --------------------------------------------------------------------------
    def _on_tab_changed(self, tab: SlideTab | None) -> None:
        base = tab.session.info.base_magnification if tab is not None else None
        for action in self.mag_actions.values():
            action.setEnabled(base is not None)
        self.pos_label.setText("")  # the cursor is over another slide now
        if self._tile_message and self.host.current_message() == self._tile_message:
            self.host.show_message("", 0)  # it named a tile of the slide that left the front
        self._tile_message = ""
        self.refresh_labels()

    def refresh_labels(self) -> None:
        """The magnification and tile-warning labels, from the current tab's own state."""
        tab = self.host.current_tab()
        self.mag_label.setText("" if tab is None else magnification_text(tab))
        failure = None if tab is None else tab.view.tile_failure
        self.load_label.setText("" if failure is None else "Some tiles could not be read (outlined in red)")
        self.load_label.setToolTip(failure or "")

    def _on_viewport_changed(self, tab: SlideTab) -> None:
        if tab is self.host.current_tab():
            self.mag_label.setText(magnification_text(tab))

    def _on_cursor_moved(self, tab: SlideTab, l0_pos: tuple[float, float] | None) -> None:
        if l0_pos is None or tab is not self.host.current_tab():
            self.pos_label.setText("")
            return
        x, y = l0_pos
        text = f"x {x:,.0f}  y {y:,.0f} px"
        mpp = tab.session.info.mpp
        if mpp is not None:
            text += f"   ({l0_px_to_mm(x, mpp):.3f}, {l0_px_to_mm(y, mpp):.3f}) mm"
            text += " (user-set scale)" if tab.session.info.mpp_user_set else ""
        else:
            text += "   (mm unknown: no \u00b5m/px)"
        self.pos_label.setText(text)

    def _on_tile_failed(self, tab: SlideTab, message: str) -> None:
        if tab is not self.host.current_tab():
            return  # said when its tab comes to the front (refresh_labels)
        self.refresh_labels()
        self._tile_message = message
        self.host.show_message(message, TILE_FAILURE_MS)


def magnification_text(tab: SlideTab) -> str:
    """The status bar's magnification of ``tab``'s view (its zoom when the scale is unknown)."""
    scale = tab.view.viewport.scale
    base = tab.session.info.base_magnification
    if base is None:
        return f"zoom {scale:.3g} (magnification unknown)"
    user = " (user-set scale)" if tab.session.info.mpp_user_set else ""
    return f"{base * scale:.1f}x{user}"
