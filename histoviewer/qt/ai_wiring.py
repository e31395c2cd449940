"""The main window's AI overlay wiring: start/stop per tab, settings changes, the status line.

A mixin of ``MainWindow`` (``main_window.py``), which owns the widgets it uses: ``ai_panel``,
``ai_label``, ``hover_label``, the AI menu's actions and ``_ai_status_timer``.
"""

from __future__ import annotations

from dataclasses import replace

from histoviewer.qt.ai_panel import AiSettings, save_ai_settings
from histoviewer.qt.slide_tab import SlideTab


class AiOverlayWiring:
    def _start_ai(self, tab: SlideTab) -> None:
        settings = self.ai_panel.settings
        if settings.enabled:
            tab.start_heatmap(settings.live_options(), settings.style(), settings.show)
        else:
            tab.stop_heatmap()

    def _on_ai_settings(self, new: AiSettings, old: AiSettings) -> None:
        if self.remember_ai:
            save_ai_settings(new)
        if not new.show or not new.enabled:
            self.hover_label.setText("")  # it described the heatmap that is gone
        for action, on in ((self.ai_run_action, new.enabled), (self.heatmap_action, new.show),
                           (self.ai_background_action, new.background)):
            action.setChecked(on)
        if new.enabled != old.enabled:
            self.summary_panel.setVisible(new.enabled)
        for tab in self._tabs():
            if new.restart_needed(old):
                self._start_ai(tab)
                continue
            if (new.colormap, new.opacity, new.threshold, new.show) != (old.colormap, old.opacity, old.threshold, old.show):
                tab.set_heatmap_style(new.style(), new.show)
            if new.background != old.background and tab.heatmap is not None:
                tab.heatmap.live.set_background(new.background)
        self._schedule_ai_status()

    def _toggle_ai_enabled(self, checked: bool) -> None:
        self.ai_panel.set_settings(replace(self.ai_panel.settings, enabled=checked))

    def _toggle_heatmap(self, checked: bool) -> None:
        self.ai_panel.set_settings(replace(self.ai_panel.settings, show=checked))

    def _toggle_ai_background(self, checked: bool) -> None:
        self.ai_panel.set_settings(replace(self.ai_panel.settings, background=checked))

    def _schedule_ai_status(self, *_args) -> None:
        if not self._ai_status_timer.isActive():
            self._ai_status_timer.start()

    def update_ai_status(self) -> None:
        """The status-bar line and the panel's progress: coverage of the view and the slide.

        Coverage is always shown while anything is missing, so a half-finished map is never
        mistaken for a negative slide.
        """
        tab = self.current_tab()
        layer = tab.heatmap if tab is not None else None
        if tab is None or layer is None:
            text = "" if tab is None else "AI overlay off"
            self.ai_label.setText(text)
            self.ai_label.setStyleSheet("")
            self.ai_panel.show_progress(text)
            return
        if tab.heatmap_error:
            self.ai_label.setText("AI overlay unavailable")
            self.ai_label.setToolTip(tab.heatmap_error)
            self.ai_label.setStyleSheet("color: #a01010;")
            self.ai_panel.show_progress(f"AI overlay unavailable: {tab.heatmap_error}")
            return
        live = layer.live
        if live.model is not None:
            self.ai_panel.show_model(live.model.info.display_name(), live.device_reason,
                                     live.model.info.demonstration)
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
            detail = text
            if live.restored_from_cache:
                detail += "\nEarlier results restored from the heatmap cache."
            if whole < 1.0:
                detail += "\nUntil the slide is 100% classified, a clean map is not a negative slide."
        if tab.heatmap_failure:
            detail += f"\nSome patches failed: {tab.heatmap_failure}"
            text += " – some patches failed"
        self.ai_label.setText(text)
        self.ai_label.setToolTip(detail)
        self.ai_label.setStyleSheet(f"color: {colour};")
        self.ai_panel.show_progress(detail)
