"""The AI overlay's controls in the main window: its panel, its menu, its status-bar line.

``AiController`` owns the AI panel (a dock), the AI menu and its actions, the status-bar
labels for the overlay's coverage and for the probability under the cursor, and the
throttle that recomputes the coverage line. It starts and stops each slide's overlay
(``attach``) and applies settings changes to every open slide. It sees the window only
through ``TabHost`` (``window_host.py``); the window places its widgets.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QFileDialog, QLabel, QMenu, QWidget
from superqt.utils import qthrottled

from histoviewer.qt.actions import make_action
from histoviewer.qt.ai_panel import AiPanel, AiSettings, save_ai_settings
from histoviewer.qt.node_classifier_choice import (
    NODE_CLASSIFIER_CHOICES,
    node_classifier_text,
)
from histoviewer.qt.slide_tab import SlideTab
from histoviewer.qt.window_host import TabHost

STATUS_INTERVAL_MS = 200  # the coverage line is recomputed at most this often


class AiController(QObject):
    """The overlay's settings, actions and status for every open slide.

    ``enabledChanged(bool)``: the overlay was turned on or off (the lesion panel follows it).
    ``remember``: save every settings change for the next start (the application does,
    tests do not)."""

    enabledChanged = Signal(bool)

    def __init__(self, host: TabHost, settings: AiSettings, remember: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.remember = remember
        self.panel = AiPanel(settings, parent)
        self.panel.settingsChanged.connect(self._on_settings)
        self.status_label = QLabel("", parent)  # coverage of the view and of the slide
        self.hover_label = QLabel("", parent)  # P(tumour) of the patch under the cursor
        self._build_menu(parent)
        host.currentTabChanged.connect(lambda _tab: self._schedule_status())

    @property
    def settings(self) -> AiSettings:
        return self.panel.settings

    def _build_menu(self, parent: QWidget | None) -> None:
        self.menu = QMenu("&AI", parent)
        settings = self.settings
        self.run_action = self._checkable("&Classify tissue in view", settings.enabled, self._toggle_enabled)
        self.heatmap_action = self._checkable("Show &heatmap", settings.show, self._toggle_heatmap, "H")
        self.background_action = self._checkable("Go on with the &whole slide when idle", settings.background,
                                                 self._toggle_background)
        # the learned node classifier shown beside the rule-based label (the panel has the same choice)
        self.node_classifier_menu = self.menu.addMenu("&Node classifier")
        self.node_classifier_menu.aboutToShow.connect(self._fill_node_classifier_menu)
        self._fill_node_classifier_menu()
        self.menu.addSeparator()
        self.panel_action = self.panel.toggleViewAction()
        self.panel_action.setText("AI &panel")
        self.menu.addAction(self.panel_action)

    def _fill_node_classifier_menu(self) -> None:
        """Shipped / none / the chosen file (ticked: the one in use) / another file..."""
        menu = self.node_classifier_menu
        menu.clear()
        group = QActionGroup(menu)
        spec = self.settings.node_classifier
        choices = list(NODE_CLASSIFIER_CHOICES)
        if spec not in dict(choices):
            choices.append((spec, node_classifier_text(spec)))
        for key, text in choices:
            action = menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(key == spec)
            action.setToolTip(key)
            action.setActionGroup(group)
            action.triggered.connect(lambda _checked=False, k=key: self.panel.choose_node_classifier(k))
        menu.addSeparator()
        other = menu.addAction("Other node classifier &file\u2026")
        other.triggered.connect(self._choose_node_classifier_file)

    def _choose_node_classifier_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.panel, "Open node classifier file", "",
                                              "Node classifiers (*.safetensors)")
        if path:
            self.panel.choose_node_classifier(path)

    def _checkable(self, text: str, checked: bool, slot, shortcut: str | None = None) -> QAction:
        return make_action(self.menu, text, slot, shortcut=shortcut, checked=checked, menu=self.menu)

    # -- slides ---------------------------------------------------------------------------------
    def attach(self, tab: SlideTab) -> None:
        """A slide was opened: start its overlay if the AI is on, follow its status."""
        tab.lesions.set_node_classifier(self.settings.node_classifier)
        tab.heatmapChanged.connect(self._schedule_status)
        tab.lesions.changed.connect(lambda _snapshot: self._schedule_status())  # the tissue check
        tab.view.viewportChanged.connect(lambda _viewport: self._schedule_status())
        tab.view.cursorMoved.connect(lambda l0_pos, t=tab: self._on_cursor_moved(t, l0_pos))
        self._start(tab)

    def _start(self, tab: SlideTab) -> None:
        settings = self.settings
        if settings.enabled:
            # the model is not loaded yet: its operating point is applied once it is (update_status)
            tab.start_heatmap(settings.live_options(), settings.style(), settings.show)
        else:
            tab.stop_heatmap()

    def _on_cursor_moved(self, tab: SlideTab, l0_pos) -> None:
        layer = tab.heatmap
        if l0_pos is None or tab is not self.host.current_tab() or layer is None or not layer.visible:
            self.hover_label.setText("")
        else:
            self.hover_label.setText(layer.describe_at(*l0_pos))

    # -- settings -------------------------------------------------------------------------------
    def _on_settings(self, new: AiSettings, old: AiSettings) -> None:
        if self.remember:
            save_ai_settings(new)
        if not new.show or not new.enabled:
            self.hover_label.setText("")  # it described the heatmap that is gone
        for action, on in ((self.run_action, new.enabled), (self.heatmap_action, new.show),
                           (self.background_action, new.background)):
            action.setChecked(on)
        if new.enabled != old.enabled:
            self.enabledChanged.emit(new.enabled)
        if new.node_classifier != old.node_classifier:
            self._fill_node_classifier_menu()
        for tab in self.host.slide_tabs():
            tab.lesions.set_node_classifier(new.node_classifier)  # re-analysed only when it changed
            if new.restart_needed(old):
                self._start(tab)
                continue
            looks = (new.colormap, new.opacity, new.threshold, new.threshold_from_model, new.show)
            if looks != (old.colormap, old.opacity, old.threshold, old.threshold_from_model, old.show):
                tab.set_heatmap_style(new.style(_model_threshold(tab)), new.show)
            if new.background != old.background and tab.heatmap is not None:
                tab.heatmap.live.set_background(new.background)
        self._schedule_status()

    def _toggle_enabled(self, checked: bool) -> None:
        self.panel.set_settings(replace(self.settings, enabled=checked))

    def _toggle_heatmap(self, checked: bool) -> None:
        self.panel.set_settings(replace(self.settings, show=checked))

    def _toggle_background(self, checked: bool) -> None:
        self.panel.set_settings(replace(self.settings, background=checked))

    # -- status ---------------------------------------------------------------------------------
    @qthrottled(timeout=STATUS_INTERVAL_MS, leading=False)
    def _schedule_status(self) -> None:
        self.update_status()

    def close(self) -> None:
        """The window closes: drop a pending status update and stop its timer."""
        self._schedule_status.cancel()
        self._schedule_status.flush(restart_timer=False)

    def update_status(self) -> None:
        """The status-bar line and the panel's progress: coverage of the view and the slide.

        Coverage is always shown while anything is missing, so a half-finished map is never
        mistaken for a negative slide.
        """
        tab = self.host.current_tab()
        layer = tab.heatmap if tab is not None else None
        label = self.status_label
        if tab is None or layer is None:
            text = "" if tab is None else "AI overlay off"
            label.setText(text)
            label.setStyleSheet("")
            self.panel.show_progress(text)
            return
        if tab.heatmap_error:
            label.setText("AI overlay unavailable")
            label.setToolTip(tab.heatmap_error)
            label.setStyleSheet("color: #a01010;")
            self.panel.show_progress(f"AI overlay unavailable: {tab.heatmap_error}")
            return
        live = layer.live
        if live.model is not None:
            self.panel.show_model(live.model.info, live.device_reason)
            style = self.settings.style(_model_threshold(tab))
            if style.threshold != live.style.threshold:  # the model just loaded: its operating point
                tab.set_heatmap_style(style, self.settings.show)
        coverage = tab.heatmap_coverage()
        if coverage is None:
            text, detail = "AI: starting…", "Loading the model and finding the tissue…"
            colour = "#555"
        else:
            in_view, whole = coverage
            text = f"AI: view {in_view:.0%} · slide {whole:.0%} classified"
            busy = not live.is_idle
            if whole >= 1.0:
                text = "AI: whole slide classified"
            elif busy:
                text += " (working)"
            colour = "#1a6e1a" if whole >= 1.0 else ("#555" if in_view >= 1.0 else "#a05a00")
            # "done" counts failed cells; green only when the tissue was in fact classified
            counts = tab.lesions.snapshot.result.counts if tab.lesions.snapshot is not None else None
            if whole >= 1.0 and counts is not None:
                if counts.tissue == 0:
                    text, colour = "AI: no tissue found on the slide – nothing classified", "#a05a00"
                elif counts.failed > 0:
                    text = (f"AI: whole slide done, {counts.failed} of {counts.tissue} tissue patches "
                            "failed")
                    colour = "#a05a00"
            detail = text
            if live.restored_from_cache:
                detail += "\nEarlier results restored from the heatmap cache."
            screened = live.screened_fraction()
            if screened > 0:  # screened-negative tissue is not classified: say so beside the coverage
                text += f" · {screened:.0%} screened negative (not classified)"
                detail += (f"\n{screened:.0%} of the tissue was screened negative: a low-magnification screen "
                           "found nothing there, so the full model did not classify it (a view at 2.5x or "
                           "finer is classified in full; zoom in to classify what you look at). A screen can miss tiny tumour clusters; "
                           "AI > Go on with the whole slide when idle uses screening.")
            if whole < 1.0:
                detail += "\nUntil the slide is 100% classified, a clean map is not a negative slide."
        if tab.heatmap_failure:
            detail += f"\nSome patches failed: {tab.heatmap_failure}"
            if "failed" not in text:
                text += " – some patches failed"
            if colour == "#1a6e1a":
                colour = "#a05a00"
        snapshot = tab.lesions.snapshot
        if snapshot is not None and snapshot.domain.out_of_domain:
            text += " – AI result unreliable: tissue unlike the model's training data"
            detail += f"\n{snapshot.domain.describe()}"
            colour = "#a01010"
        label.setText(text)
        label.setToolTip(detail)
        label.setStyleSheet(f"color: {colour};")
        self.panel.show_progress(detail)


def _model_threshold(tab: SlideTab) -> float | None:
    """The operating point of the model running on ``tab``, None before it loaded or when
    its file states none."""
    live = tab.heatmap.live if tab.heatmap is not None else None
    info = live.model.info if live is not None and live.model is not None else None
    point = None if info is None else info.operating_point
    return None if point is None else float(point.threshold)
