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
from histoviewer.qt.about_dialog import AboutDialog, application_icon
from histoviewer.qt.actions import make_action
from histoviewer.qt.ai_controller import AiController
from histoviewer.qt.ai_panel import AiSettings
from histoviewer.qt.annotation_actions import AnnotationActions
from histoviewer.qt.case_controller import CaseController
from histoviewer.qt.compare_dialog import CompareDialog
from histoviewer.qt.export_dialog import ExportDialog, open_export_dialog
from histoviewer.qt.lesion_controller import LesionController
from histoviewer.qt.patch_inspector import PatchInspector
from histoviewer.qt.pixel_size_dialog import PixelSizeDialog
from histoviewer.qt.properties_dialog import PropertiesDialog
from histoviewer.qt.review_controller import ReviewController
from histoviewer.qt.slide_tab import SlideTab
from histoviewer.qt.smoke import arm_smoke_test
from histoviewer.qt.uncertainty_controller import UncertaintyController
from histoviewer.qt.view_controller import ViewController

DEFAULT_CACHE_MB = 512
SLIDE_FILTER = (
    "Slides and images (*.svs *.tif *.tiff *.ndpi *.vms *.vmu *.scn *.mrxs *.svslide *.bif *.dcm "
    "*.png *.jpg *.jpeg *.bmp);;All files (*)"
)


class MainWindow(QMainWindow):
    """Tabs of slides, the File menu, the status bar, drag and drop.

    The View menu (``view_controls``), the AI overlay (``ai``), the lesions (``lesions``), the
    case view (``cases``) and the annotations (``annotation_actions``) are controllers that
    own their widgets, actions and menus. The window places them (menu bar, docks, status
    bar), tells them of each new slide (``attach``) and of the slide in front
    (``currentTabChanged``), and is their host (``window_host.py``): they need nothing else."""

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
        self.uncertainty = UncertaintyController(self, parent=self)  # AI > Uncertainty map
        self.lesions = LesionController(self, parent=self)
        self.ai.enabledChanged.connect(self.lesions.set_overlay_enabled)
        self.cases = CaseController(self, lambda: self.ai.settings, parent=self)
        self.inspector = PatchInspector(self, lambda: self.ai.settings, parent=self)
        self.annotation_actions = AnnotationActions(self, parent=self)
        self.view_controls = ViewController(self, parent=self)
        self.review = ReviewController(self, parent=self)  # the review queue (Review menu, its dock)
        self.review.queueChanged.connect(self.cases.refresh_review)  # the case view's review column
        self.cases.live_review = self.review.live_queue
        self.review.queueChanged.connect(lambda: self.lesions.panel.show_reviewed(*self.review.reviewed_summary()))
        # The review follows into the inspector only when the user has it in sight (floated or
        # beside the queue): inspecting raises its dock, which would cover a tabified queue.
        # hotspots rank by the lesion's mean TTA uncertainty once an uncertainty map covers it
        self.review.uncertainty_of = lambda tab, lesion: lesion.tta_uncertainty_mean
        self.review.inspector = lambda tab, hotspot: (
            self.inspector.inspect(tab, hotspot.lesion.l0_centroid)
            if self.inspector.panel.isVisible() and not self.inspector.panel.visibleRegion().isEmpty()
            else None
        )
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
        self.addDockWidget(area, self.annotation_actions.panel)
        self.tabifyDockWidget(self.ai.panel, self.annotation_actions.panel)
        self.addDockWidget(area, self.inspector.panel)  # hidden until the first Ctrl+click
        self.tabifyDockWidget(self.ai.panel, self.inspector.panel)
        self.addDockWidget(area, self.review.panel)
        self.tabifyDockWidget(self.ai.panel, self.review.panel)
        self.review.panel.hide()  # shown by the Review menu and its keys: a fourth tab widens the docks
        self.lesions.set_overlay_enabled(overlay_enabled)  # shown and in front while the AI runs

    def _build_status_bar(self) -> None:
        view = self.view_controls
        # Permanent widgets: showMessage() would hide ordinary ones while a message shows.
        for label in (view.load_label, self.ai.status_label, self.ai.hover_label, view.pos_label, view.mag_label,
                      self.annotation_actions.label_status, self.review.status_label):
            self.statusBar().addPermanentWidget(label)
        for widget in self.uncertainty.status_widgets:
            self.statusBar().addPermanentWidget(widget)

    def _action(self, menu: QMenu, text: str, slot, shortcut=None) -> QAction:
        return make_action(self, text, slot, shortcut=shortcut, menu=menu)

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
        self.pixel_size_action = self._action(file_menu, "Set pi&xel size\u2026", self.set_pixel_size)
        self.export_action = self._action(file_menu, "&Export heatmap, overlay or report\u2026", self.show_export,
                                          "Ctrl+E")
        file_menu.addSeparator()
        file_menu.addActions(list(self.annotation_actions.file_actions))
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        bar.addMenu(self.annotation_actions.edit_menu)
        bar.addMenu(self.view_controls.menu)
        ai_menu = self.ai.menu
        ai_menu.addSeparator()
        ai_menu.addActions(list(self.lesions.menu_actions))
        ai_menu.addAction(self.inspector.panel_action)
        self.compare_action = self._action(ai_menu, "&Compare with model\u2026", self.show_compare)
        self.improve_action = self._action(ai_menu, "&Improve the model from my corrections\u2026", self.improve_model)
        ai_menu.addSeparator()
        ai_menu.addMenu(self.uncertainty.menu)
        bar.addMenu(ai_menu)
        bar.addMenu(self.annotation_actions.annotation_menu)
        bar.addMenu(self.review.menu)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About HistoViewer\u2026", self.show_about)
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
        self.view_controls.attach(tab)
        self.lesions.attach(tab)
        self.ai.attach(tab)  # starts the overlay when it is on
        self.inspector.attach(tab)
        self.uncertainty.attach(tab)
        info = tab.session.info
        index = self.tabs.addTab(tab, Path(path).name)
        self.tabs.setTabToolTip(index, str(path))
        self.tabs.setCurrentIndex(index)
        self.recent.add(path)
        # A thumbnail that cannot be read is reported when its read fails (view.tileFailed).
        if info.mpp is None:
            self.show_message(f"{Path(path).name}: physical scale unknown ({info.mpp_note}); "
                              "if you know it: File > Set pixel size\u2026", 12000)
        elif info.mpp_user_set:
            self.show_message(f"{Path(path).name}: pixel size {info.mpp:g} \u00b5m/px, user-set", 8000)
        self.annotation_actions.attach(tab)  # restored autosave, tool, class
        self.review.attach(tab)
        self._update_actions()
        return tab

    def slide_tabs(self) -> list[SlideTab]:
        return [t for t in (self.tabs.widget(i) for i in range(self.tabs.count())) if isinstance(t, SlideTab)]

    def close_tab(self, index: int) -> bool:
        """Close a slide; False when the user kept it open (its annotations could not be saved)."""
        tab = self.tabs.widget(index)
        if not isinstance(tab, SlideTab):
            return True
        if not tab.confirm_close():
            return False
        self.tabs.removeTab(index)
        tab.close_slide()
        tab.deleteLater()
        self._update_actions()
        return True

    def current_tab(self) -> SlideTab | None:
        tab = self.tabs.currentWidget() if self.centralWidget() is self.tabs else None
        return tab if isinstance(tab, SlideTab) else None

    def show_slide(self, path: str | os.PathLike[str]) -> None:
        for tab in self.slide_tabs():
            if Path(tab.path) == Path(path):
                self.tabs.setCurrentWidget(tab)
                return

    def show_compare(self) -> CompareDialog | None:
        """AI > Compare with model: the overlay's model against another on this slide."""
        if (tab := self.current_tab()) is None:
            return None
        dialog = CompareDialog(tab, self.ai.settings.model, self.ai.settings.device, self)
        dialog.show()
        return dialog

    def show_properties(self) -> PropertiesDialog | None:
        if (tab := self.current_tab()) is None:
            return None
        dialog = PropertiesDialog(tab.session.reader, self)
        dialog.pixelSizeRequested.connect(lambda: (dialog.close(), self.set_pixel_size()))
        dialog.open()
        return dialog

    def set_pixel_size(self) -> PixelSizeDialog | None:
        """Ask for the pixel size of the current slide (one that states none); when set,
        save it and reopen the slide so everything (sizes, AI, annotations) uses it."""
        tab = self.current_tab()
        if tab is None:
            return None
        info = tab.session.info
        if info.mpp is not None and not info.mpp_user_set:
            self.show_message(f"{Path(tab.path).name} states its own pixel size ({info.mpp:g} \u00b5m/px)", 8000)
            return None
        dialog = PixelSizeDialog(info, self)

        def done(result: int) -> None:
            if result != PixelSizeDialog.DialogCode.Accepted:
                return
            if (error := dialog.save()) is not None:
                self.report_error("Cannot save the pixel size", error)
                return
            index, path = self.tabs.indexOf(tab), tab.path
            self.close_tab(index)  # flushes the annotations' autosave
            self.open_slide(path)

        dialog.finished.connect(done)
        dialog.open()
        return dialog

    def show_export(self) -> ExportDialog | None:
        """The export dialog for the current slide (heatmap, overlay, pyramid, raw, report)."""
        if (tab := self.current_tab()) is None:
            return None
        return open_export_dialog(self, tab)

    def improve_model(self):
        """Fine-tune the current model on the open slides' corrections (their edits saved first)."""
        # lazy: the dialog imports torch (start-up of the viewer stays without it)
        from histoviewer.qt.finetune_dialog import FinetuneDialog

        tabs = self.slide_tabs()
        for tab in tabs:
            tab.flush_annotations()  # the labels are read from the saved annotations
        dialog = FinetuneDialog([str(t.path) for t in tabs], self.ai.settings.model,
                                device=self.ai.settings.device, parent=self)
        dialog.switchRequested.connect(self.ai.panel.use_model)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.finetune_dialog = dialog
        return dialog

    def show_about(self) -> AboutDialog:
        dialog = AboutDialog(self)
        dialog.show()
        return dialog

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
        self.pixel_size_action.setEnabled(tab is not None and (tab.session.info.mpp is None
                                                               or tab.session.info.mpp_user_set))
        self.export_action.setEnabled(tab is not None)
        self.setWindowTitle(f"HistoViewer \u2013 {tab.session.info.path.name}" if tab else "HistoViewer")

    def _on_tab_changed(self, _index: int) -> None:
        self._update_actions()
        current = self.current_tab()
        for tab in self.slide_tabs():
            tab.set_active(tab is current)
        self.currentTabChanged.emit(current)

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

    def close_all(self) -> bool:
        """Close every slide; False when the user kept one open (unsaved annotations)."""
        index = 0
        while index < self.tabs.count():
            if not self.close_tab(index):
                index += 1
        return self.tabs.count() == 0

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if not self.close_all():
            event.ignore()  # a slide whose annotations could not be saved stays open
            return
        self.cases.shutdown()
        self.ai.close()
        self.inspector.close()
        self.uncertainty.close()
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
    app.setDesktopFileName("histoviewer")  # the installed menu entry: its icon on Wayland task bars
    app.setWindowIcon(application_icon())
    window = MainWindow(cache_mb=cache_mb, ai=ai, remember_ai=True)
    # Stop every slide's loader threads before Qt tears the widgets down.
    app.aboutToQuit.connect(window.close_all)
    window.show()
    for path in paths:
        window.open_slide(path)
    arm_smoke_test(app, window)  # only when HISTOVIEWER_SMOKE_TEST is set (packaging checks)
    return app.exec()
