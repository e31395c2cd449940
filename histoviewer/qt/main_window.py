"""The main window: tabs of slides, menus, status bar, drag and drop, recent files."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QMainWindow, QMenu, QMessageBox, QTabWidget

from histoviewer.core.errors import HistoViewerError
from histoviewer.core.recent import RecentFiles
from histoviewer.core.tiles.cache import ByteBoundedCache
from histoviewer.core.tiles.viewport import Viewport, magnification_scale
from histoviewer.qt.ai_controller import AiController
from histoviewer.qt.ai_panel import AiSettings
from histoviewer.qt.annotation_actions import AnnotationActions
from histoviewer.qt.case_controller import CaseController
from histoviewer.qt.export_dialog import ExportDialog, open_export_dialog
from histoviewer.qt.lesion_controller import LesionController
from histoviewer.qt.properties_dialog import PropertiesDialog
from histoviewer.qt.slide_tab import SlideTab

DEFAULT_CACHE_MB = 512
MAGNIFICATIONS = (1, 5, 10, 20, 40)
SLIDE_FILTER = (
    "Slides and images (*.svs *.tif *.tiff *.ndpi *.vms *.vmu *.scn *.mrxs *.svslide *.bif *.dcm "
    "*.png *.jpg *.jpeg *.bmp);;All files (*)"
)


class MainWindow(QMainWindow):
    """Tabs of slides, menus, status bar. The AI overlay (``ai``), the lesions (``lesions``),
    the case view (``cases``) and the annotations (``annotation_actions``) are controllers
    that own their widgets and actions; the window places them, tells them of each new slide
    (``attach``) and serves them as their ``window_host`` protocol."""

    currentTabChanged = Signal(object)  # SlideTab | None, after the window's own updates

    def __init__(self, cache_mb: int = DEFAULT_CACHE_MB, recent: RecentFiles | None = None,
                 ai: AiSettings | None = None, remember_ai: bool = False) -> None:
        """``ai``: the overlay's settings (defaults when None); ``remember_ai``: save every
        change for the next start (the application does, tests do not)."""
        super().__init__()
        self.setWindowTitle("HistoViewer")
        self.resize(1400, 900)
        self.cache = ByteBoundedCache(cache_mb * 1024 * 1024)
        self.recent = recent or RecentFiles()
        self.last_error: str | None = None
        self.tabs = QTabWidget(self)
        self.tabs.setTabsClosable(True)
        self.tabs.setDocumentMode(True)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.placeholder = QLabel("Open a slide: File \u203a Open (Ctrl+O), or drop a slide file here.", self)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: #666; font-size: 15px;")
        self.setCentralWidget(self.placeholder)
        self.setAcceptDrops(True)
        settings = ai or AiSettings()
        self.ai = AiController(self, settings, remember=remember_ai, parent=self)
        self.lesions = LesionController(self, parent=self)
        self.ai.enabledChanged.connect(self.lesions.set_overlay_enabled)
        self.cases = CaseController(self, lambda: self.ai.settings, parent=self)
        self.annotation_actions = AnnotationActions(self, parent=self)
        self._place_docks(settings.enabled)
        self._build_status_bar()
        self._build_menus()
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.annotation_actions.toolbar)

    # -- construction ----------------------------------------------------------------------
    def _place_docks(self, overlay_enabled: bool) -> None:
        """The three panels share the right-hand dock area, tabbed; the lesions panel is only
        shown while the AI overlay runs, and then in front: open on the AI's findings."""
        area = Qt.DockWidgetArea.RightDockWidgetArea
        self.addDockWidget(area, self.ai.panel)
        self.addDockWidget(area, self.lesions.panel)
        self.tabifyDockWidget(self.ai.panel, self.lesions.panel)
        self.lesions.panel.raise_()
        self.lesions.set_overlay_enabled(overlay_enabled)
        self.addDockWidget(area, self.annotation_actions.panel)
        self.tabifyDockWidget(self.ai.panel, self.annotation_actions.panel)
        if overlay_enabled:
            self.lesions.panel.raise_()

    def _build_status_bar(self) -> None:
        self.mag_label = QLabel("")
        self.pos_label = QLabel("")
        self.load_label = QLabel("")
        self.load_label.setStyleSheet("color: #a01010;")
        bar = self.statusBar()
        # Permanent widgets: showMessage() would hide ordinary ones while a message shows.
        for label in (self.load_label, self.ai.status_label, self.ai.hover_label, self.pos_label, self.mag_label,
                      self.annotation_actions.label_status):
            bar.addPermanentWidget(label)

    def _action(self, menu: QMenu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        self.file_menu = file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open\u2026", self.open_dialog, QKeySequence.StandardKey.Open)
        file_menu.addAction(self.cases.case_action)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._action(file_menu, "&Close slide", lambda: self.close_tab(self.tabs.currentIndex()), QKeySequence.StandardKey.Close)
        file_menu.addSeparator()
        self.properties_action = self._action(file_menu, "Slide &properties\u2026", self.show_properties, "Ctrl+I")
        self.export_action = self._action(file_menu, "&Export heatmap, overlay or report\u2026", self.show_export,
                                          "Ctrl+E")
        file_menu.addSeparator()
        file_menu.addActions(list(self.annotation_actions.file_actions))
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        bar.addMenu(self.annotation_actions.edit_menu)
        self.view_menu = view_menu = bar.addMenu("&View")
        self._action(view_menu, "&Fit to window", lambda: self._with_view(lambda v: v.fit()), "F")
        self._action(view_menu, "Zoom &in", lambda: self._with_view(lambda v: v.zoom_by(1.25)), QKeySequence.StandardKey.ZoomIn)
        self._action(view_menu, "Zoom &out", lambda: self._with_view(lambda v: v.zoom_by(0.8)), QKeySequence.StandardKey.ZoomOut)
        view_menu.addSeparator()
        self.mag_actions = {}
        for i, mag in enumerate(MAGNIFICATIONS, start=1):
            self.mag_actions[mag] = self._action(view_menu, f"{mag}x", lambda _=False, m=mag: self.jump_to_magnification(m), f"Ctrl+{i}")
        view_menu.addSeparator()
        self.minimap_action = self._action(view_menu, "Show &overview", self._toggle_minimap, "O")
        self.minimap_action.setCheckable(True)
        self.minimap_action.setChecked(True)
        self.scale_bar_action = self._action(view_menu, "Show &scale bar", self._toggle_scale_bar)
        self.scale_bar_action.setCheckable(True)
        self.scale_bar_action.setChecked(True)

        ai_menu = self.ai.menu
        ai_menu.addSeparator()
        ai_menu.addActions(list(self.lesions.menu_actions))
        bar.addMenu(ai_menu)
        bar.addMenu(self.annotation_actions.annotation_menu)
        self._update_actions()

    # -- slides ----------------------------------------------------------------------------
    def open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open slide", "", SLIDE_FILTER)
        for path in paths:
            self.open_slide(path)

    def open_slide(self, path: str | os.PathLike[str]) -> SlideTab | None:
        """Open a slide in a new tab; on failure say why and keep everything else as it was.

        A slide already open is shown, not opened again: two tabs would each autosave their
        own annotations over the other's.
        """
        for open_tab in self.slide_tabs():
            if _same_file(open_tab.path, path):
                self.tabs.setCurrentIndex(self.tabs.indexOf(open_tab))
                return open_tab
        try:
            tab = SlideTab(path, self.cache)
        except HistoViewerError as exc:
            self.report_error("Cannot open slide", str(exc))
            return None
        if self.centralWidget() is self.placeholder:
            self.placeholder.setParent(None)
            self.setCentralWidget(self.tabs)
        tab.view.viewportChanged.connect(self._on_viewport_changed)
        tab.view.cursorMoved.connect(self._on_cursor_moved)
        tab.view.tileFailed.connect(self._on_tile_failed)
        self.lesions.attach(tab)
        self.ai.attach(tab)  # starts the overlay when it is on
        tab.minimap.setVisible(self.minimap_action.isChecked())
        tab.view.show_scale_bar = self.scale_bar_action.isChecked()
        info = tab.session.info
        index = self.tabs.addTab(tab, Path(path).name)
        self.tabs.setTabToolTip(index, str(path))
        self.tabs.setCurrentIndex(index)
        self.recent.add(path)
        self._on_viewport_changed(tab.view.viewport)
        # A thumbnail that cannot be read is reported when its read fails (view.tileFailed).
        if info.mpp is None:
            self.show_message(f"{Path(path).name}: no microns-per-pixel in the file; physical scale unknown", 8000)
        self.annotation_actions.attach(tab)  # restored autosave, tool, class
        self._update_actions()
        return tab

    def slide_tabs(self) -> list[SlideTab]:
        return [t for t in (self.tabs.widget(i) for i in range(self.tabs.count())) if isinstance(t, SlideTab)]

    def close_tab(self, index: int) -> None:
        tab = self.tabs.widget(index)
        if not isinstance(tab, SlideTab):
            return
        self.tabs.removeTab(index)
        tab.close_slide()
        tab.deleteLater()
        self._update_actions()

    def current_tab(self) -> SlideTab | None:
        tab = self.tabs.currentWidget() if self.centralWidget() is self.tabs else None
        return tab if isinstance(tab, SlideTab) else None

    def show_slide(self, path: str | os.PathLike[str]) -> None:
        for tab in self.slide_tabs():
            if Path(tab.path) == Path(path):
                self.tabs.setCurrentWidget(tab)
                return

    def _with_view(self, fn) -> None:
        if (tab := self.current_tab()) is not None:
            fn(tab.view)

    def jump_to_magnification(self, magnification: float) -> None:
        tab = self.current_tab()
        if tab is None:
            return
        base = tab.session.info.base_magnification
        if base is None:
            self.report_error("Magnification unknown", "This slide states neither objective power nor microns per pixel.")
            return
        tab.view.set_scale(magnification_scale(magnification, base))

    def show_properties(self) -> PropertiesDialog | None:
        if (tab := self.current_tab()) is None:
            return None
        dialog = PropertiesDialog(tab.session.reader, self)
        dialog.open()
        return dialog

    def show_export(self) -> ExportDialog | None:
        """The export dialog for the current slide (heatmap, overlay, pyramid, raw, report)."""
        if (tab := self.current_tab()) is None:
            return None
        return open_export_dialog(self, tab)

    def show_message(self, text: str, timeout_ms: int) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def current_message(self) -> str:
        return self.statusBar().currentMessage()

    def report_error(self, title: str, message: str) -> None:
        """Tell the user without blocking (tests and the event loop keep running)."""
        self.last_error = message
        self.show_message(message, 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # -- status ----------------------------------------------------------------------------
    def _update_actions(self) -> None:
        tab = self.current_tab()
        self.properties_action.setEnabled(tab is not None)
        self.export_action.setEnabled(tab is not None)
        base = tab.session.info.base_magnification if tab else None
        for action in self.mag_actions.values():
            action.setEnabled(base is not None)
        title = f"HistoViewer \u2013 {tab.session.info.path.name}" if tab else "HistoViewer"
        self.setWindowTitle(title)
        if tab is None:
            self.mag_label.setText("")
            self.pos_label.setText("")
            self.load_label.setText("")

    def _on_tab_changed(self, _index: int) -> None:
        self._update_actions()
        current = self.current_tab()
        for tab in self.slide_tabs():
            tab.set_active(tab is current)
        if current is not None:
            self._on_viewport_changed(current.view.viewport)
        self.currentTabChanged.emit(current)

    def _on_viewport_changed(self, viewport: Viewport) -> None:
        tab = self.current_tab()
        if tab is None or self.sender() not in (None, tab.view):
            return
        base = tab.session.info.base_magnification
        if base is not None:
            self.mag_label.setText(f"{base * viewport.scale:.1f}x")
        else:
            self.mag_label.setText(f"zoom {viewport.scale:.3g} (magnification unknown)")

    def _on_cursor_moved(self, l0_pos) -> None:
        tab = self.current_tab()
        if tab is None or l0_pos is None:
            self.pos_label.setText("")
            return
        x, y = l0_pos
        text = f"x {x:,.0f}  y {y:,.0f} px"
        mpp = tab.session.info.mpp
        text += f"   ({x * mpp / 1000:.3f}, {y * mpp / 1000:.3f}) mm" if mpp else "   (mm unknown: no \u00b5m/px)"
        self.pos_label.setText(text)

    def _on_tile_failed(self, message: str) -> None:
        self.load_label.setText("Some tiles could not be read (outlined in red)")
        self.load_label.setToolTip(message)
        self.show_message(message, 10000)

    def _toggle_minimap(self, checked: bool) -> None:
        for tab in self.slide_tabs():
            tab.minimap.setVisible(checked)

    def _toggle_scale_bar(self, checked: bool) -> None:
        for tab in self.slide_tabs():
            tab.view.show_scale_bar = checked
            tab.view.update()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        items = self.recent.load()
        if not items:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for path in items:
            self.recent_menu.addAction(path, lambda p=path: self.open_slide(p))

    # -- drag and drop ---------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_slide(url.toLocalFile())
        event.acceptProposedAction()

    def close_all(self) -> None:
        while self.tabs.count():
            self.close_tab(0)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.cases.shutdown()
        self.close_all()
        super().closeEvent(event)


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def run_gui(paths: list[str], cache_mb: int = DEFAULT_CACHE_MB, ai: AiSettings | None = None) -> int:
    """Start the application window with ``paths`` open."""
    app = QApplication.instance() or QApplication([])
    app.setApplicationName("HistoViewer")
    window = MainWindow(cache_mb=cache_mb, ai=ai, remember_ai=True)
    # Stop every slide's loader threads before Qt tears the widgets down.
    app.aboutToQuit.connect(window.close_all)
    window.show()
    for path in paths:
        window.open_slide(path)
    return app.exec()
