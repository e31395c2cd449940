"""The main window's lesion wiring: summary panel, lesion layer actions, fly-to, case view.

A mixin of ``MainWindow`` (``main_window.py``); it creates ``summary_panel`` and
``case_dialog`` and uses the window's tabs, menus and status bar.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from histoviewer.qt.case_dialog import CaseDialog, case_slides_in
from histoviewer.qt.slide_tab import SlideTab
from histoviewer.qt.summary_panel import SummaryPanel


class LesionWiring:
    def _init_summary(self) -> None:
        """The summary panel shares the AI panel's dock area (tabbed, in front); it is only
        shown while the AI overlay runs: without a map there are no lesions to list."""
        self.summary_panel = SummaryPanel(self)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.summary_panel)
        self.tabifyDockWidget(self.ai_panel, self.summary_panel)
        self.summary_panel.raise_()
        self.summary_panel.setVisible(self.ai_panel.settings.enabled)
        self.summary_panel.lesionActivated.connect(self.fly_to_lesion)
        self.case_dialog = None

    def _add_lesion_actions(self, ai_menu) -> None:
        ai_menu.addSeparator()
        self.lesions_action = self._action(ai_menu, "Show &lesions", self._toggle_lesions)
        self.lesions_action.setCheckable(True)
        self.lesions_action.setChecked(True)
        self._action(ai_menu, "&Next lesion", lambda: self.summary_panel.step(+1), "Ctrl+L")
        self._action(ai_menu, "Pre&vious lesion", lambda: self.summary_panel.step(-1), "Ctrl+Shift+L")
        summary_action = self.summary_panel.toggleViewAction()
        summary_action.setText("Lesions and node &label panel")
        ai_menu.addAction(summary_action)

    def _add_case_actions(self, file_menu) -> None:
        case_action = QAction("Open &case (a patient's nodes)\u2026", self)
        case_action.triggered.connect(self.open_case_dialog)
        # after "Open Recent", with the other ways of opening slides
        file_menu.insertAction(self.recent_menu.menuAction(), case_action)

    def _wire_lesions(self, tab: SlideTab) -> None:
        tab.lesion_layer.visible = self.lesions_action.isChecked()
        tab.lesions.changed.connect(lambda _snap, t=tab: self._show_summary() if t is self.current_tab() else None)
        # a lesion clicked on the slide is selected in the table too
        tab.lesion_clicks.picked.connect(self.summary_panel.select_lesion)
        # until the first lesions arrive the panel says what the overlay is doing
        tab.heatmapChanged.connect(
            lambda t=tab: self._show_summary() if t is self.current_tab() and t.lesions.snapshot is None else None)

    def _toggle_lesions(self, checked: bool) -> None:
        for tab in self._tabs():
            tab.set_lesions_visible(checked)

    def _show_summary(self) -> None:
        """Show the current tab's lesions in the summary panel (or why there are none)."""
        tab = self.current_tab()
        if tab is None:
            self.summary_panel.show_snapshot(None, "No slide open.")
            return
        snapshot = tab.lesions.snapshot
        if tab.heatmap is None:
            self.summary_panel.show_snapshot(None, "AI overlay off: no lesions. Turn it on in the AI menu.")
        elif tab.heatmap_error:
            self.summary_panel.show_snapshot(None, f"AI overlay unavailable: {tab.heatmap_error}")
        elif snapshot is None:
            self.summary_panel.show_snapshot(None, tab.lesions.error or "Classifying\u2026 lesions appear as the map fills in.")
        else:
            self.summary_panel.show_snapshot(snapshot, tab.lesions.error or "")
            self.summary_panel.select_lesion(tab.lesion_layer.selected)

    def fly_to_lesion(self, index: int) -> None:
        if (tab := self.current_tab()) is not None and tab.fly_to_lesion(index):
            self.summary_panel.select_lesion(index)

    def _show_slide_tab(self, path: str) -> None:
        for i in range(self.tabs.count()):
            tab = self.tabs.widget(i)
            if isinstance(tab, SlideTab) and Path(tab.path) == Path(path):
                self.tabs.setCurrentIndex(i)
                return

    def _annotation_label_of(self, path: Path):
        """The slide label from the open slide's annotations, or None when the slide has no
        annotations at all (or is not open). A slide annotated without any tumour-class area
        (the pathologist removed the AI's false positives and marked, say, a Normal region)
        is negative."""
        from histoviewer.core.annotations.labels import slide_label

        for tab in self._tabs():
            doc = getattr(tab, "annotations", None)
            if Path(tab.path) == Path(path) and doc is not None:
                return slide_label(doc) if doc.annotations() else None
        return None

    def open_case_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a case: the folder of one patient's node slides")
        if folder:
            self.open_case(case_slides_in(folder))

    def open_case(self, paths) -> CaseDialog | None:
        """Open a patient's node slides in tabs and the case view over them."""
        paths = [str(p) for p in paths]
        if not paths:
            self.report_error("No slides", "The folder holds no slide files.")
            return None
        for path in paths:
            self.open_slide(path)  # a node open before stays in its tab (see open_slide)
        if self.case_dialog is not None:
            self.case_dialog.close()
        self.case_dialog = CaseDialog(paths, self.ai_panel.settings.model, self.ai_panel.settings.device, self)
        self.case_dialog.nodeActivated.connect(self._show_slide_tab)
        self.case_dialog.annotation_labels = self._annotation_label_of
        self.case_dialog.show()
        return self.case_dialog
