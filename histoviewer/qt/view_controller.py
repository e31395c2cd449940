"""The View menu and the status bar's view labels, for the slide in front.

``ViewController`` owns the View menu (fit, zoom, magnifications, overview, scale bar) and
the status-bar labels for the magnification, the cursor's position and tiles that could not
be read. It sees the window only through ``TabHost`` (``window_host.py``); the window places
the menu and the labels, and calls ``attach`` for each new slide.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QMenu, QWidget

from histoviewer.core.tiles.viewport import Viewport, magnification_scale
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
        tab.view.viewportChanged.connect(lambda viewport, t=tab: self._on_viewport_changed(t, viewport))
        tab.view.cursorMoved.connect(lambda l0_pos, t=tab: self._on_cursor_moved(t, l0_pos))
        tab.view.tileFailed.connect(self._on_tile_failed)
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
        if tab is None:
            self.mag_label.setText("")
            self.pos_label.setText("")
            self.load_label.setText("")
        else:
            self._on_viewport_changed(tab, tab.view.viewport)

    def _on_viewport_changed(self, tab: SlideTab, viewport: Viewport) -> None:
        if tab is not self.host.current_tab():
            return
        base = tab.session.info.base_magnification
        if base is not None:
            user = " (user-set scale)" if tab.session.info.mpp_user_set else ""
            self.mag_label.setText(f"{base * viewport.scale:.1f}x{user}")
        else:
            self.mag_label.setText(f"zoom {viewport.scale:.3g} (magnification unknown)")

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

    def _on_tile_failed(self, message: str) -> None:
        self.load_label.setText("Some tiles could not be read (outlined in red)")
        self.load_label.setToolTip(message)
        self.host.show_message(message, TILE_FAILURE_MS)
