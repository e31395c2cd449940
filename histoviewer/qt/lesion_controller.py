"""The AI's lesions in the main window: the summary panel, the lesion actions, fly-to.

``LesionController`` owns the lesions and node label panel (a dock), the AI menu's lesion
actions (``menu_actions``, which the window places) and keeps the panel on the current
slide's lesions. The panel is only shown while the AI overlay runs (``set_overlay_enabled``):
without a map there are no lesions to list. It sees the window only through ``TabHost``.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from histoviewer.qt.slide_tab import SlideTab
from histoviewer.qt.summary_panel import SummaryPanel
from histoviewer.qt.window_host import TabHost


class LesionController(QObject):
    def __init__(self, host: TabHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.panel = SummaryPanel(parent)
        self.panel.lesionActivated.connect(self.fly_to_lesion)
        self.lesions_action = QAction("Show &lesions", self)
        self.lesions_action.setCheckable(True)
        self.lesions_action.setChecked(True)
        self.lesions_action.triggered.connect(self._toggle_lesions)
        self.next_action = QAction("&Next lesion", self)
        self.next_action.setShortcut(QKeySequence("Ctrl+L"))
        self.next_action.triggered.connect(lambda: self.panel.step(+1))
        self.previous_action = QAction("Pre&vious lesion", self)
        self.previous_action.setShortcut(QKeySequence("Ctrl+Shift+L"))
        self.previous_action.triggered.connect(lambda: self.panel.step(-1))
        self.panel_action = self.panel.toggleViewAction()
        self.panel_action.setText("Lesions and node &label panel")
        host.currentTabChanged.connect(lambda _tab: self.show_summary())

    @property
    def menu_actions(self) -> tuple[QAction, ...]:
        """In the AI menu, in this order."""
        return self.lesions_action, self.next_action, self.previous_action, self.panel_action

    def attach(self, tab: SlideTab) -> None:
        """A slide was opened: its lesion layer follows the action, the panel its lesions."""
        tab.lesion_layer.visible = self.lesions_action.isChecked()
        tab.lesions.changed.connect(lambda _snap, t=tab: self.show_summary() if t is self.host.current_tab() else None)
        # a lesion clicked on the slide is selected in the table too
        tab.lesion_clicks.picked.connect(self.panel.select_lesion)
        # until the first lesions arrive the panel says what the overlay is doing
        tab.heatmapChanged.connect(
            lambda t=tab: self.show_summary() if t is self.host.current_tab() and t.lesions.snapshot is None else None)

    def set_overlay_enabled(self, enabled: bool) -> None:
        """The panel is shown while the AI overlay runs (``AiController.enabledChanged``), and
        in front when the overlay is turned on: the AI's findings are what the user asked for."""
        self.panel.setVisible(enabled)
        if enabled:
            self.panel.raise_()

    def _toggle_lesions(self, checked: bool) -> None:
        for tab in self.host.slide_tabs():
            tab.set_lesions_visible(checked)

    def show_summary(self) -> None:
        """Show the current tab's lesions in the summary panel (or why there are none)."""
        tab = self.host.current_tab()
        panel = self.panel
        if tab is None:
            panel.show_snapshot(None, "No slide open.")
            return
        snapshot = tab.lesions.snapshot
        if tab.heatmap is None:
            panel.show_snapshot(None, "AI overlay off: no lesions. Turn it on in the AI menu.")
        elif tab.heatmap_error:
            panel.show_snapshot(None, f"AI overlay unavailable: {tab.heatmap_error}")
        elif snapshot is None:
            panel.show_snapshot(None, tab.lesions.error or "Classifying\u2026 lesions appear as the map fills in.")
        else:
            panel.show_snapshot(snapshot, tab.lesions.error or "")
            panel.select_lesion(tab.lesion_layer.selected)

    def fly_to_lesion(self, index: int) -> None:
        if (tab := self.host.current_tab()) is not None and tab.fly_to_lesion(index):
            self.panel.select_lesion(index)
